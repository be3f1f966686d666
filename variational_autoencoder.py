"""
Title: A variational autoencoder (VAE) with a 2-d latent space
Author: François Chollet (the 2016 blog post); the keras-autoencoders authors
(this lesson)
Date created: 2016/05/14
Last modified: 2026/12/01
Description: Learn a smooth 2-d map of MNIST that can be decoded anywhere.

    python variational_autoencoder.py                     # our recipe
    python variational_autoencoder.py --recipe tutorial   # the tutorial's, exactly

Outputs go to features/ (docs/scripts.md, "Outputs"): the test set's 2-d latent means as
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
them). In a notebook, write them in the `options` cell below as you would type them:
grey digits instead of coin flips, for 20 epochs, are `options = "--no-coin-flips
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
loads, so that `--help` answers at once. `training.Run` fills in the recipe, seeds
every random number generator (the sampling layer's too), picks the precision, and
later times, guards and saves the run.
"""

import argparse
import math

from plumbing import cli

parser = cli.training_parser(__doc__, RECIPES, likelihood=True)
parser.add_argument("--coin-flips", action=argparse.BooleanOptionalAction,
                    help="in training, show the encoder each digit as coin flips, "
                         "every pixel inked with the probability its grey level "
                         "gives (default: on with our recipe, off with the "
                         "tutorial's)")
args = parser.parse_options(options)

from plumbing import data, figures, likelihood, training  # loads Keras, quietly

import keras
from keras import layers, ops

run = training.Run(args, RECIPES, prefix="variational_autoe")
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

The loss is the negative evidence lower bound, in nats per image: the compiled
reconstruction loss plus the KL term that `Sampling` adds.
"""

vae.compile(
    optimizer=optimizer,
    loss=reconstruction_loss,
    metrics=[keras.metrics.MeanMetricWrapper(reconstruction_loss,
                                             name="reconstruction")],
    # XLA fuses the Dense layers' work (on TensorFlow), but draws coin flips slowly.
    jit_compile=run.jit_compile(draws_random_numbers=args.coin_flips),
    # Keras' Python work per call outweighs a step this small: several per call.
    steps_per_execution=run.steps_per_execution(steps_per_epoch),
)

"""
## Training

`LogKLTerm` comes before TensorBoard in the callbacks, so that TensorBoard logs the
KL term too: `tensorboard --logdir features/logs` shows the loss, both terms and
the learning rate, for training and test digits. A KL term that falls to zero would
mean the codes carry nothing (a collapsed posterior).
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

The test loss is measured once more after training, with its two terms: their sum
is the loss. The learning curves show both terms epoch by epoch. Drawn by digit,
the latent means show how the VAE organised MNIST; decoding a grid of latent points
(the manifold) shows what each region of the plane means. The grid is spaced by
evenly spaced probabilities of the N(0, I) prior, so it sits where the codes live.
The latent means of the test digits are the features to visualise.
"""

test = vae.evaluate(x_test, x_test, batch_size=args.batch_size, verbose=0,
                    return_dict=True)
test["kl"] = test["loss"] - test["reconstruction"]
# As printed (rounded), the two terms add up to the loss.
print(f"Test loss {figures.format_terms(test['reconstruction'], test['kl'])} "
      "(nats per digit)")
z_mean, _ = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(z_mean[:10], verbose=0)
plots = figures.vae_figures("VAE", history, x_test, reconstructed, z_mean, y_test,
                            decoder, data_name=data_info["name"])

"""
## The likelihood the loss bounds

The test loss is the negative evidence lower bound: an upper bound on the negative
log-likelihood -log p(x), where p(x) averages the decoder's p(x|z) over the prior.
The bound is loose by how far the encoder's Gaussian misses the true posterior. In
a 2-d latent space the integral itself is cheap: decode a fine grid of the plane
once, score every test digit against every grid point, and sum with the prior's
weights. The difference is the price of the encoder's approximation.
`--no-likelihood` skips it, for a quicker run.
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
         data_info=data_info, history=history, plots=plots, coin_flips=args.coin_flips,
         **{f"test_{name}": value for name, value in test.items()}, **nll)
run.show_figures()
