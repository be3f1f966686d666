"""
Title: A convolutional variational autoencoder with transposed convolutions
Based on: "Building Autoencoders in Keras", Francois Chollet, Keras blog (2016), and
Keras' 2017 example variational_autoencoder_deconv.py
Description: The 2-d VAE again, with a convolutional encoder and a decoder of
transposed ("deconvolution") layers.

    python variational_autoencoder_deconv.py                     # our recipe
    python variational_autoencoder_deconv.py --recipe tutorial   # the 2017 example's

Outputs go to features/ (see README): the test set's 2-d latent means as
variational_autoe_deconv_features.pickle, their labels and images, a metrics file,
figures of the latent space, of a 15x15 manifold and of reconstructions, and the
trained encoder and decoder.
"""

"""
## Setup

The loss, its KL term, the sampling layer and the figures are those of
variational_autoencoder.py (read that one first): only the encoder and the decoder
change here.
"""

from plumbing import data, figures, training  # first: it imports Keras quietly

import keras
from keras import layers
from variational_autoencoder import (LATENT_DIM, LogKLTerm, Sampling,
                                     evaluate_terms, reconstruction_loss, vae_figures)

FILTERS = 64

"""
## Training recipes

The 2017 Keras example this follows trains for 5 epochs in batches of 100 with
RMSprop, and its test loss is still falling at the end. Ours trains 7 epochs, the
learning rate decaying along a cosine, and gets below 145 nats (README, "Results").
Adam did worse than RMSprop on this model (results/tuning.md).
"""

RECIPES = {
    "ours": dict(epochs=7, batch_size=100, optimizer="rmsprop", learning_rate=0.001,
                 schedule="cosine", warmup=0),
    "tutorial": dict(epochs=5, batch_size=100, optimizer="rmsprop", learning_rate=0.001,
                     schedule="constant", warmup=0),
}

"""
## The model

Encoder: a 2x2 convolution, a strided one that halves 28x28 to 14x14, two 3x3 ones,
then Dense(128) -> (z_mean, z_log_var).
Decoder: Dense(128) -> Dense(64*14*14) reshaped to 14x14x64, two 3x3 transposed
convolutions, a strided 'valid' one that grows 14x14 to 29x29, and a 2x2 'valid'
convolution that trims it to the 28x28 digit.
"""


def build_vae(seed=None):
    digit = keras.Input(shape=(28, 28, 1), name="digit")
    x = layers.Conv2D(1, 2, padding="same", activation="relu")(digit)
    x = layers.Conv2D(FILTERS, 2, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(FILTERS, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(FILTERS, 3, padding="same", activation="relu")(x)
    h = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    z_mean = layers.Dense(LATENT_DIM, name="z_mean")(h)
    z_log_var = layers.Dense(LATENT_DIM, name="z_log_var")(h)
    encoder = keras.Model(digit, [z_mean, z_log_var], name="encoder")

    z = keras.Input(shape=(LATENT_DIM,), name="z")
    h = layers.Dense(128, activation="relu")(z)
    x = layers.Dense(FILTERS * 14 * 14, activation="relu")(h)
    x = layers.Reshape((14, 14, FILTERS))(x)
    x = layers.Conv2DTranspose(FILTERS, 3, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(FILTERS, 3, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(FILTERS, 3, strides=2, padding="valid",
                               activation="relu")(x)
    pixels = layers.Conv2D(1, 2, padding="valid", activation="sigmoid",
                           name="pixels")(x)
    decoder = keras.Model(z, pixels, name="decoder")

    sampled_z = Sampling(seed, name="sampling")(encoder(digit))
    vae = keras.Model(digit, decoder(sampled_z), name="vae")
    return encoder, decoder, vae


def main():
    # On CPUs with bfloat16 instructions, mixed precision was never slower for the
    # convolutional models and often faster; the dense ones lost (results/tuning.md).
    parser = training.make_parser(__doc__, RECIPES, mixed_precision_on_cpu=True)
    args = training.setup(parser.parse_args(), RECIPES)

    # ## The data: 28x28 images with one (grey) channel, values in [0, 1].
    (x_train, _), (x_test, y_test), data_info = data.load_mnist(
        args.data, args.limit, shape=(28, 28, 1))

    # ## Training: negative evidence lower bound, nats per image, both terms logged.
    encoder, decoder, vae = build_vae(args.seed)
    vae.compile(
        optimizer=keras.optimizers.get({
            "class_name": args.optimizer,
            "config": {"learning_rate": training.learning_rate(args, len(x_train))}}),
        loss=reconstruction_loss,
        metrics=[keras.metrics.MeanMetricWrapper(reconstruction_loss,
                                                 name="reconstruction")],
    )
    timer = training.EpochTimer()
    guard = training.DivergenceGuard((x_test, x_test), args.batch_size)
    history = vae.fit(
        x_train, x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        validation_data=(x_test, x_test),
        callbacks=[LogKLTerm(), timer, guard],
        verbose=training.VERBOSE,
    )

    # ## What it learned: as in variational_autoencoder.py.
    test = evaluate_terms(vae, x_test, args.batch_size)
    z_mean, _ = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
    reconstructed = decoder.predict(z_mean[:10], verbose=0)
    plots = vae_figures("Deconvolutional VAE", x_test, y_test, z_mean, reconstructed,
                        decoder)
    training.save_outputs(
        args, "variational_autoe_deconv", encoder=encoder, decoder=decoder, codes=z_mean,
        labels=y_test, images=x_test, data_info=data_info, history=history,
        timer=timer, guard=guard, plots=plots,
        **{f"test_{name}": value for name, value in test.items()})
    figures.show_figures(args.show)


if __name__ == "__main__":
    training.cli.main_guard(main)
