"""
Title: A variational autoencoder (VAE) with a 2-d latent space
Author: François Chollet (the 2016 blog post); the keras-autoencoders authors
(this lesson)
Date created: 2016/05/14
Last modified: 2026/12/01
Description: Learn a smooth 2-d map of MNIST that can be decoded anywhere.

    python variational_autoencoder.py                     # our recipe
    python variational_autoencoder.py --recipe tutorial   # the tutorial's, exactly

Outputs go to features/ (see README): the test set's 2-d latent means as
variational_autoe_features.pickle, their labels and images, a metrics file, figures
of the latent space, of a 15x15 manifold of decoded digits, of reconstructions and
of the learning curves, the trained encoder and decoder, and TensorBoard's logs in
features/logs/.

Written with `keras` and `keras.ops` only, so it runs on the TensorFlow, JAX and
PyTorch backends (set KERAS_BACKEND).
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the next cell as you would type them: grey
digits instead of coin flips, for 20 epochs, are `options = "--no-coin-flips
--epochs 20"`.
"""

options = ""

"""
## Training recipes

The blog trains for 50 epochs in batches of 100 with RMSprop at 0.001. Adam at 0.003,
decaying along a cosine, does better in 100 epochs, but by then the model fits the
training digits several nats better than the test digits, and training longer only
widens that gap. With coin flips (below) the gap stays small, and our recipe (Adam
at 0.003, coin flips, 200 epochs) goes further (results/tuning.md;
docs/results.md).
"""

RECIPES = {
    "ours": dict(epochs=200, batch_size=100, optimizer="adam", learning_rate=0.003,
                 schedule="cosine", warmup=0),
    "tutorial": dict(epochs=50, batch_size=100, optimizer="rmsprop",
                     learning_rate=0.001, schedule="constant", warmup=0),
}

PIXELS = 28 * 28
LATENT_DIM = 2  # two numbers per digit, so the latent space can be drawn as is

"""
The options, one of them this lesson's own (`--coin-flips`), are read before Keras
loads, so that `--help` answers at once. `setup` fills in the recipe, seeds every
random number generator (the sampling layer's too) and picks the precision.
"""

import argparse

from plumbing import cli

parser = cli.training_parser(__doc__, RECIPES)
parser.add_argument("--coin-flips", action=argparse.BooleanOptionalAction,
                    help="in training, show the encoder each digit as coin flips, "
                         "every pixel inked with the probability its grey level "
                         "gives (default: on with our recipe, off with the "
                         "tutorial's)")
args = parser.parse_options(options)

from plumbing import data, figures, likelihood, training  # noqa: E402  (loads Keras, quietly)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from scipy.stats import norm  # noqa: E402

args = training.setup(args, RECIPES)
if args.coin_flips is None:
    args.coin_flips = args.recipe == "ours"
print(f"Coin flips: {'on' if args.coin_flips else 'off'}")

"""
## The data

Each 28x28 image flattened to 784 values in [0, 1].
"""

(x_train, _), (x_test, y_test), data_info = data.load_mnist(
    args.data, args.limit, shape=(PIXELS,))

"""
## The loss: reconstruction plus KL

A VAE's loss per image (the negative evidence lower bound, in nats) has two terms:

* the **reconstruction** term: binary cross-entropy summed over the 784 pixels, how
  badly the decoder redraws the digit from a code drawn for it;
* the **KL** term: how far the encoder's Gaussian over codes is from the prior
  N(0, I). It keeps the codes packed around the origin, so that any point near it
  decodes to a plausible digit.

The first is the compiled loss; `Sampling` adds the second with `add_loss`. Keras
logs their sum as `loss`; the reconstruction term is logged too, as a metric, and
`LogKLTerm` logs the rest, so that each epoch's line shows both terms and they add
up.
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

The encoder does not output a code but a Gaussian over codes: a mean and a log
variance per latent dimension. Training draws z = mean + sigma * eps with eps from
N(0, 1) (the reparameterisation trick: the randomness is an input, so gradients flow
through mean and sigma). sigma = exp(0.5 * log_var), the square root of the
variance. The same layer adds the KL divergence between that Gaussian and the prior,
summed over latent dimensions.
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
## Coin-flip digits

Binary cross-entropy reads each grey level as the probability that the pixel is
inked. We can take that literally when training: show the encoder each digit as a
fresh draw of coin flips, every pixel inked with the probability its grey level
gives, and still score the reconstruction against the grey digit. On average the
input is the digit itself, but the encoder can no longer learn the exact grey levels
of the 60,000 training digits by heart. It is the denoising autoencoder's idea
applied to the VAE, and a common trick for VAEs on MNIST ("dynamic binarisation").
At test time, and in the saved encoder, the digits go in as they are.
"""


class CoinFlips(layers.Layer):
    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, digits, training=False):
        if not training:
            return digits
        uniform = keras.random.uniform(ops.shape(digits), dtype=digits.dtype,
                                       seed=self.seed_generator)
        return ops.cast(uniform < digits, digits.dtype)


"""
## The model

Encoder: 784 -> 256 (relu) -> (z_mean, z_log_var), 2 numbers each.
Decoder: z -> 256 (relu) -> 784 (sigmoid).
The VAE chains encoder, Sampling and decoder, with CoinFlips first when asked.
"""


def build_vae(seed=None, coin_flips=False):
    digit = keras.Input(shape=(PIXELS,), name="digit")
    h = layers.Dense(256, activation="relu")(digit)
    z_mean = layers.Dense(LATENT_DIM, name="z_mean")(h)
    z_log_var = layers.Dense(LATENT_DIM, name="z_log_var")(h)
    encoder = keras.Model(digit, [z_mean, z_log_var], name="encoder")

    z = keras.Input(shape=(LATENT_DIM,), name="z")
    h = layers.Dense(256, activation="relu")(z)
    pixels = layers.Dense(PIXELS, activation="sigmoid", name="pixels")(h)
    decoder = keras.Model(z, pixels, name="decoder")

    seen = digit
    if coin_flips:  # in training only; the encoder itself stays the tutorial's
        seen = CoinFlips(None if seed is None else seed + 1, name="coin_flips")(digit)
    sampled_z = Sampling(seed, name="sampling")(encoder(seen))
    vae = keras.Model(digit, decoder(sampled_z), name="vae")
    return encoder, decoder, vae


encoder, decoder, vae = build_vae(args.seed, coin_flips=args.coin_flips)

"""
## Compiling

The loss is the negative evidence lower bound, in nats per image: the compiled
reconstruction loss plus the KL term that `Sampling` adds.
"""

vae.compile(
    optimizer=keras.optimizers.get({
        "class_name": args.optimizer,
        "config": {"learning_rate": training.learning_rate(args, len(x_train))}}),
    loss=reconstruction_loss,
    metrics=[keras.metrics.MeanMetricWrapper(reconstruction_loss,
                                             name="reconstruction")],
    # TensorFlow's XLA makes the coin flips' random numbers slowly on a CPU.
    **training.dense_model_speedups(xla=not args.coin_flips),
)

"""
## Training

`LogKLTerm` comes before TensorBoard in the callbacks, so that TensorBoard logs the
KL term too: `tensorboard --logdir features/logs` shows the loss, both terms and
the learning rate, for training and test digits. A KL term that falls to zero would
mean the codes carry nothing (a collapsed posterior).
"""

timer = training.EpochTimer()
guard = training.DivergenceGuard((x_test, x_test), args.batch_size)
callbacks = [LogKLTerm(), timer, guard]
if args.logs:
    callbacks.append(keras.callbacks.TensorBoard(
        training.log_dir(args, "variational_autoe")))
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
## The manifold

Decoding a grid of latent points shows what each region of the latent space means.
The prior is N(0, I), so the grid is spaced by evenly spaced probabilities (Gaussian
quantiles), not evenly spaced z: it then sits where the codes actually live.
"""


def decode_manifold(decoder, title, n=15):
    quantiles = norm.ppf(np.linspace(0.05, 0.95, n)).astype(np.float32)
    zx, zy = np.meshgrid(quantiles, quantiles[::-1])  # z[1] grows upwards
    grid = np.stack([zx.ravel(), zy.ravel()], axis=1)
    digits = decoder.predict(grid, batch_size=len(grid), verbose=0)
    extent = (quantiles[0], quantiles[-1], quantiles[0], quantiles[-1])
    return figures.digit_canvas(np.reshape(digits, (n, n, 28, 28)), extent, title)


"""
## What it learned

The test loss is measured once more after training, with its two terms: their sum
is the loss. The learning curves show both terms epoch by epoch. Drawn by digit,
the latent means show how the VAE organised MNIST, and the manifold what each
region of the plane decodes to. The latent means of the test digits are the
features to visualise.
"""


def evaluate_terms(vae, x_test, batch_size):
    test = vae.evaluate(x_test, x_test, batch_size=batch_size, verbose=0,
                        return_dict=True)
    test["kl"] = test["loss"] - test["reconstruction"]
    # As printed (rounded), the two terms add up to the loss.
    print(f"Test loss {figures.format_terms(test['reconstruction'], test['kl'])} "
          "(nats per digit)")
    return test


def vae_figures(name, history, x_test, y_test, z_mean, reconstructed, decoder,
                data_name):
    return {
        "history": figures.learning_curves(history.history, title=f"{name}: learning"),
        "reconstructions": figures.digit_rows(
            [("original", x_test[:10]), ("reconstructed", reconstructed)],
            title=f"{name}: test digits"),
        "latent": figures.latent_scatter(
            z_mean, y_test, title=f"{name}: latent means of the test images",
            data_name=data_name),
        "manifold": decode_manifold(
            decoder, title=f"{name}: digits decoded across the latent space"),
    }


"""
The deconvolutional VAE reuses these two functions; here they measure and draw the
MLP VAE.
"""

test = evaluate_terms(vae, x_test, args.batch_size)
z_mean, _ = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(z_mean[:10], verbose=0)
nll = likelihood.exact_nll(decoder, x_test)  # the likelihood the loss bounds
print(f"Test NLL {nll['test_nll']:.1f} nats per digit (exact, by quadrature over "
      f"the latent plane): the loss is {test['loss'] - nll['test_nll']:.1f} above it")
plots = vae_figures("VAE", history, x_test, y_test, z_mean, reconstructed, decoder,
                    data_info["name"])

"""
## Saving

Everything is written to `features/` as one set: an interrupted run leaves the
previous set as it was.
"""

training.save_outputs(
    args, "variational_autoe", encoder=encoder, decoder=decoder, codes=z_mean,
    labels=y_test, images=x_test, data_info=data_info, history=history,
    timer=timer, guard=guard, plots=plots, coin_flips=args.coin_flips,
    **{f"test_{name}": value for name, value in test.items()}, **nll)
figures.show_figures(args.show)
