"""
Title: A deep autoencoder
Author: François Chollet (the 2016 blog post); the keras-autoencoders authors
(this lesson)
Date created: 2016/05/14
Last modified: 2026/12/01
Description: Three Dense layers down to a 32-number code, three back up.

    python deep_autoencoder.py                     # our recipe
    python deep_autoencoder.py --recipe tutorial   # the tutorial's, exactly

Outputs go to features/ (docs/scripts.md, "Outputs"): the test set's 32-d codes as
deep_autoe_features.pickle, their labels and images, a metrics file, figures of
reconstructions and of the learning curves, the trained encoder and decoder, and
TensorBoard's logs in features/logs/.
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the `options` cell below as you would type them: five
epochs on 10,000 digits are `options = "--epochs 5 --limit 10000"`.
"""

options = ""

"""
## Training recipes

The tutorial trains for 100 epochs in batches of 256, with Adadelta in its 2016 text
(at Keras 2's rate of 1.0) and Adam since, which ends short of its "~0.08". Ours
keeps the batches of 256 and trains half as long again at a higher rate: Adam at
0.003, warmed up from zero over 5 epochs (started at full rate, a high rate switches
off code units for good in the first steps, as in the simple autoencoder), then
decaying along a cosine. Batches of 64 also reach the target in 100 epochs, through
four times as many noisier steps, but each of those epochs is slower
(results/tuning.md; docs/results.md and docs/speed.md).
"""

RECIPES = {
    "ours": dict(epochs=150, batch_size=256, optimizer="adam", learning_rate=0.003,
                 schedule="cosine", warmup=5),
    "tutorial": dict(epochs=100, batch_size=256, optimizer="adadelta",
                     learning_rate=1.0, schedule="constant", warmup=0),
}

PIXELS = 28 * 28

"""
Reading the options before Keras loads lets `--help` and a mistyped option answer at
once. `training.Run` then fills in the chosen recipe, seeds the random number
generators, picks the precision, and later times, guards and saves the run.
"""

import math

from plumbing import cli

args = cli.training_parser(__doc__, RECIPES).parse_options(options)

from plumbing import data, figures, training  # loads Keras, quietly

import keras
from keras import layers

run = training.Run(args, RECIPES, prefix="deep_autoe")

"""
## The data

Each 28x28 image flattened to 784 values in [0, 1].
"""

(x_train, _), (x_test, y_test), data_info = data.load_mnist(
    args.data, args.limit, shape=(PIXELS,))

"""
## The model

The same 32-d bottleneck as the simple autoencoder, reached in steps of
784 -> 128 -> 64 -> 32 and mirrored back. The extra layers let the code be a
non-linear function of the pixels, so the same 32 numbers reconstruct better.
"""


def build_autoencoder():
    digit = keras.Input(shape=(PIXELS,), name="digit")
    x = layers.Dense(128, activation="relu")(digit)
    x = layers.Dense(64, activation="relu")(x)
    code = layers.Dense(32, activation="relu", name="code")(x)
    encoder = keras.Model(digit, code, name="encoder")

    code_input = keras.Input(shape=(32,), name="code")
    x = layers.Dense(64, activation="relu")(code_input)
    x = layers.Dense(128, activation="relu")(x)
    pixels = layers.Dense(PIXELS, activation="sigmoid", name="pixels")(x)
    decoder = keras.Model(code_input, pixels, name="decoder")

    autoencoder = keras.Model(digit, decoder(encoder(digit)), name="autoencoder")
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

The input is its own target, scored pixel by pixel with binary cross-entropy (each
grey level read as the probability of ink). XLA and several steps per call make
this small model train faster, as in the simple autoencoder.
"""

autoencoder.compile(
    optimizer=optimizer,
    loss="binary_crossentropy",
    # XLA fuses each Dense layer's matmul, bias and activation (on TensorFlow).
    jit_compile=run.jit_compile(),
    # Keras' Python work per call outweighs a step this small: several per call.
    steps_per_execution=run.steps_per_execution(steps_per_epoch),
)

"""
## Training

Each epoch ends with a pass over the test digits. TensorBoard logs every epoch's
losses and learning rate (`tensorboard --logdir features/logs`); the warm-up shows
there as a ramp.
"""

callbacks = [run.timer, run.divergence_guard(x_test, x_test)]
if args.logs:
    callbacks.append(keras.callbacks.TensorBoard(log_dir=run.make_log_dir()))
history = autoencoder.fit(
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

The learning curves, then the test set's codes (the features to visualise) and the
first ten decoded back into digits.
"""

codes = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(codes[:10], verbose=0)
plots = {
    "history": figures.learning_curves(history.history,
                                       title="Deep autoencoder: learning"),
    "reconstructions": figures.digit_rows(
        [("original", x_test[:10]), ("reconstructed", reconstructed)],
        title="Deep autoencoder: test digits"),
}

"""
## Saving

Everything is written to `features/` as one set: an interrupted run leaves the
previous set as it was.
"""

run.save(encoder=encoder, decoder=decoder, codes=codes, labels=y_test, images=x_test,
         data_info=data_info, history=history, plots=plots)
run.show_figures()
