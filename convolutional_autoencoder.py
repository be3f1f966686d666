"""
Title: A convolutional autoencoder
Author: François Chollet (the 2016 blog post); the keras-autoencoders authors
(this lesson)
Date created: 2016/05/14
Last modified: 2026/12/01
Description: Convolutions and pooling squeeze each digit into a 4x4x8 code.

    python convolutional_autoencoder.py                     # our recipe
    python convolutional_autoencoder.py --recipe tutorial   # the tutorial's, exactly

Outputs go to features/ (docs/scripts.md, "Outputs"): the test set's (4, 4, 8) codes as
conv_autoe_features.pickle, their labels and images, a metrics file, figures of the
reconstructions, of the codes and of the learning curves, the trained encoder and
decoder, and TensorBoard's logs in features/logs/ (the blog's
`tensorboard --logdir=/tmp/autoencoder`, in our folder).
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the `options` cell below as you would type them: the
tutorial's recipe, cut to three epochs, is `options = "--recipe tutorial --epochs
3"`.
"""

options = ""

"""
## Training recipes

The tutorial trains for 50 epochs in batches of 128, with Adadelta in its 2016 text
(at Keras 2's rate of 1.0) and Adam at its usual 0.001 since. That rate is too timid
for this small network: the test loss is still falling when the epochs run out. Ours
raises it to 0.003 and lets it decay along a cosine (a higher rate still learned more
slowly again; results/tuning.md).
"""

RECIPES = {
    "ours": dict(epochs=50, batch_size=128, optimizer="adam", learning_rate=0.003,
                 schedule="cosine", warmup=0, mixed_precision_on_cpu=True),
    "tutorial": dict(epochs=50, batch_size=128, optimizer="adadelta", learning_rate=1.0,
                     schedule="constant", warmup=0, mixed_precision_on_cpu=True),
}

"""
The options are read before Keras loads, so that `--help` and a mistyped option
answer at once. On CPUs with bfloat16 instructions, mixed precision was never slower
for the convolutional models and often faster, while the dense ones lost
(results/tuning.md): so the recipes ask `auto` precision for it
(`mixed_precision_on_cpu`). `training.Run` fills in the recipe, seeds the random
number generators, picks the precision, and later times, guards and saves the run.
"""

import math

from plumbing import cli

args = cli.training_parser(__doc__, RECIPES).parse_options(options)

from plumbing import data, figures, training  # loads Keras, quietly

import keras
from keras import layers

run = training.Run(args, RECIPES, prefix="conv_autoe")

"""
## The data

28x28 images with one (grey) channel, values in [0, 1].
"""

(x_train, _), (x_test, y_test), data_info = data.load_mnist(
    args.data, args.limit, shape=(28, 28, 1))

"""
## The model

Images keep their 2-D shape. The encoder alternates 3x3 convolutions with 2x2
max-pooling: 28x28 -> 14x14 -> 7x7 -> 4x4 (the last pooling pads 7 to 8), ending
in 8 feature maps of 4x4, a 128-number code. The decoder mirrors it with
upsampling; its third convolution is 'valid' so that 16x16 shrinks to 14x14 and the
last upsampling lands exactly on 28x28.
"""


def build_autoencoder():
    digit = keras.Input(shape=(28, 28, 1), name="digit")
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(digit)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    code = layers.MaxPooling2D(2, padding="same", name="code")(x)
    encoder = keras.Model(digit, code, name="encoder")

    code_input = keras.Input(shape=(4, 4, 8), name="code")
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(code_input)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(16, 3, activation="relu", padding="valid")(x)
    x = layers.UpSampling2D(2)(x)
    pixels = layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="pixels")(x)
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

Reconstruct the input, scored pixel by pixel with binary cross-entropy. (XLA made
these convolutions slower on a CPU, so this model keeps Keras' defaults: one step
per call, XLA where Keras picks it.)
"""

autoencoder.compile(optimizer=optimizer, loss="binary_crossentropy")

"""
## Training

The blog trains this model with the TensorBoard callback, to watch the curves while
it runs: `tensorboard --logdir features/logs` shows them, one run folder per run.
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

The learning curves; the reconstructions; and the codes themselves, each 4x4x8 code
drawn as its 8 maps side by side. The codes are the features to visualise.
"""

codes = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(codes[:10], verbose=0)
plots = {
    "history": figures.learning_curves(history.history,
                                       title="Convolutional autoencoder: learning"),
    "reconstructions": figures.digit_rows(
        [("original", x_test[:10]), ("reconstructed", reconstructed)],
        title="Convolutional autoencoder: test digits"),
    "codes": figures.code_maps(
        codes[:10], title="Codes of the first 10 test digits (8 maps of 4x4)"),
}

"""
## Saving

Everything is written to `features/` as one set: an interrupted run leaves the
previous set as it was.
"""

run.save(encoder=encoder, decoder=decoder, codes=codes, labels=y_test, images=x_test,
         data_info=data_info, history=history, plots=plots)
run.show_figures()
