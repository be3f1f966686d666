"""
Title: A denoising convolutional autoencoder
Author: François Chollet (the 2016 blog post); the keras-autoencoders authors
(this lesson)
Date created: 2016/05/14
Last modified: 2026/12/01
Description: Train on noisy digits to reproduce the clean ones.

    python image_denoising.py                     # our recipe
    python image_denoising.py --recipe tutorial   # the tutorial's, exactly

Outputs go to features/ (docs/scripts.md, "Outputs"): the (7, 7, 32) codes of the noisy test
digits as denoise_autoe_features.pickle, their labels and (clean) images, a metrics
file, figures of noisy / denoised / clean digits, of the codes and of the learning
curves, the trained encoder and decoder, and TensorBoard's logs in features/logs/.
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the `options` cell below as you would type them:
two epochs in float32 are `options = "--epochs 2 --precision float32"`.
"""

options = ""

"""
## Training recipes

The tutorial trains for 100 epochs in batches of 128, with Adadelta in its 2016
text (at Keras 2's rate of 1.0) and Adam since. This is the slowest model of the
collection, so ours trades a little of the last epochs' polish for time: Adam at
three times its usual rate, decaying along a cosine, gets close to where 100 epochs
at the usual rate end, in 30 (results/tuning.md).
"""

RECIPES = {
    "ours": dict(epochs=10, batch_size=128, optimizer="adam", learning_rate=0.003,
                 schedule="cosine", warmup=0, mixed_precision_on_cpu=True),
    "tutorial": dict(epochs=100, batch_size=128, optimizer="adadelta",
                     learning_rate=1.0, schedule="constant", warmup=0,
                     mixed_precision_on_cpu=True),
}

NOISE_FACTOR = 0.5

"""
Options first, before Keras loads. As for the convolutional autoencoder, `auto`
precision asks for bfloat16 on CPUs that have bfloat16 instructions, where these
models ran no slower (results/tuning.md): the recipes say so
(`mixed_precision_on_cpu`). `training.Run` fills in the recipe, seeds the random
number generators, picks the precision, and later times, guards and saves the run.
"""

import math

from plumbing import cli

args = cli.training_parser(__doc__, RECIPES).parse_options(options)

from plumbing import data, figures, training  # loads Keras, quietly

import keras
import numpy as np
from keras import layers

run = training.Run(args, RECIPES, prefix="denoise_autoe")

"""
## The data

Clean digits, 28x28 with one (grey) channel, values in [0, 1], and noisy copies of
them.
"""

(x_train, _), (x_test, y_test), data_info = data.load_mnist(
    args.data, args.limit, shape=(28, 28, 1))

"""
### Noisy digits

Gaussian noise, clipped back to [0, 1]: clip(x + 0.5 * N(0, 1), 0, 1). The noise is
drawn once, as in the tutorial, from --seed, so a run is repeatable.
"""


def add_noise(images, seed):
    # Built in place: each temporary copy of 60,000 noisy digits would cost 188 MB.
    noisy = np.random.default_rng(seed).standard_normal(images.shape, dtype=np.float32)
    noisy *= np.float32(NOISE_FACTOR)
    noisy += images
    return np.clip(noisy, 0.0, 1.0, out=noisy)


noisy_train = add_noise(x_train, seed=args.seed)
noisy_test = add_noise(x_test, seed=args.seed + 1)

"""
## The model

Wider than the plain convolutional autoencoder (32 filters per layer, two poolings,
a 7x7x32 code): removing noise needs more capacity than copying the digit.
"""


def build_autoencoder():
    noisy = keras.Input(shape=(28, 28, 1), name="noisy_digit")
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(noisy)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    code = layers.MaxPooling2D(2, padding="same", name="code")(x)
    encoder = keras.Model(noisy, code, name="encoder")

    code_input = keras.Input(shape=(7, 7, 32), name="code")
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(code_input)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.UpSampling2D(2)(x)
    pixels = layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="pixels")(x)
    decoder = keras.Model(code_input, pixels, name="decoder")

    autoencoder = keras.Model(noisy, decoder(encoder(noisy)), name="autoencoder")
    return encoder, decoder, autoencoder


encoder, decoder, autoencoder = build_autoencoder()

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

Noisy digits in, clean digits as targets, scored pixel by pixel with binary
cross-entropy.
"""

autoencoder.compile(optimizer=optimizer, loss="binary_crossentropy")

"""
## Training

As in the blog, with the TensorBoard callback: `tensorboard --logdir features/logs`
shows the curves, one run folder per run.
"""

callbacks = [run.timer, run.divergence_guard(noisy_test, x_test)]
if args.logs:
    callbacks.append(keras.callbacks.TensorBoard(log_dir=run.make_log_dir()))
history = autoencoder.fit(
    noisy_train, x_train,
    epochs=args.epochs,
    batch_size=args.batch_size,
    shuffle=True,
    validation_data=(noisy_test, x_test),
    callbacks=callbacks,
    verbose=run.verbose,
)

"""
## What it learned

The model is shown the NOISY test digits (the original script denoised the clean
ones, which proves nothing); their codes are the saved features. The learning
curves, the noisy / denoised / clean digits, and the codes as 32 maps of 7x7.
"""

codes = encoder.predict(noisy_test, batch_size=args.batch_size, verbose=0)
denoised = decoder.predict(codes[:10], verbose=0)
plots = {
    "history": figures.learning_curves(history.history,
                                       title="Denoising autoencoder: learning"),
    "reconstructions": figures.digit_rows(
        [("noisy input", noisy_test[:10]), ("denoised", denoised),
         ("clean", x_test[:10])],
        title="Denoising autoencoder: test digits"),
    "codes": figures.code_maps(
        codes[:10], title="Codes of the first 10 noisy test digits (32 maps of 7x7)"),
}

"""
## Saving

Everything is written to `features/` as one set: an interrupted run leaves the
previous set as it was.
"""

run.save(encoder=encoder, decoder=decoder, codes=codes, labels=y_test, images=x_test,
         data_info=data_info, history=history, plots=plots)
run.show_figures()
