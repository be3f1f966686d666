"""
Title: A simple autoencoder, and its sparse variant
Author: François Chollet (the 2016 blog post); the keras-autoencoders authors
(this lesson)
Date created: 2016/05/14
Last modified: 2026/12/01
Description: Squeeze each 784-pixel MNIST digit through a 32-number code and back,
with one Dense layer each way.

    python simple_autoencoder.py                     # our recipe
    python simple_autoencoder.py --recipe tutorial   # the tutorial's, exactly
    python simple_autoencoder.py --sparse            # the sparse autoencoder

Outputs go to features/ (docs/scripts.md, "Outputs"): the test set's 32-d codes as
simple_autoe_features.pickle (sparse_autoe_... with --sparse), their labels and
images, a metrics file, figures of reconstructions and of the learning curves, the
trained encoder and decoder, and TensorBoard's logs in features/logs/.
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the `options` cell below as you would type them:
the sparse model for 20 quick epochs is `options = "--sparse --epochs 20"`.
"""

options = ""

"""
## Training recipes

The tutorial trains for 50 epochs (the sparse model for 100: its penalty slows
learning) in batches of 256, with Adadelta in its 2016 text (at Keras 2's rate of
1.0) and Adam since. Adam at its usual 0.001 is still creeping down when the epochs
run out. A higher rate learns faster but, from random weights, kills code units in
the first steps: a ReLU unit pushed below zero for every digit gets no gradient and
stays dead. So ours warms the rate up from zero to 0.02 over 10 epochs, which kills
none, then lets it decay along a cosine over 200 epochs, so that the last steps are
small and careful. The sparse model trains with it too. results/tuning.md has the
runs behind these choices; docs/results.md, what they reach.
"""

RECIPES = {
    "ours": dict(epochs=200, batch_size=256, optimizer="adam", learning_rate=0.02,
                 schedule="cosine", warmup=10),
    "tutorial": dict(epochs=50, batch_size=256, optimizer="adadelta", learning_rate=1.0,
                     schedule="constant", warmup=0),
}
SPARSE_RECIPES = {**RECIPES, "tutorial": {**RECIPES["tutorial"], "epochs": 100}}

PIXELS = 28 * 28
CODE_SIZE = 32  # 784 / 32: a compression factor of 24.5

# The L1 activity penalty of the sparse model: the blog's 1e-4 (written 10e-5).
DEFAULT_SPARSITY = 1e-4

"""
The options, two of them this lesson's own (for the sparse model), are read before
Keras loads: `--help` and a mistyped option answer at once. Then `training.Run`
takes care of the run's chores: it fills in the recipe, seeds every random number
generator, picks the precision, and later times, guards and saves the run.
"""

import math

from plumbing import cli

parser = cli.training_parser(__doc__, RECIPES)
parser.add_argument("--sparse", action="store_true",
                    help="add an L1 activity penalty on the code: the sparse "
                         "autoencoder (the tutorial trains it for "
                         f"{SPARSE_RECIPES['tutorial']['epochs']} epochs)")
parser.add_argument("--sparsity", type=cli.positive_float, default=DEFAULT_SPARSITY,
                    help="strength of the L1 penalty used with --sparse "
                         "(default: %(default)s)")
args = parser.parse_options(options)

from plumbing import data, figures, training  # loads Keras, quietly

import keras
from keras import layers

run = training.Run(args, SPARSE_RECIPES if args.sparse else RECIPES,
                   prefix="sparse_autoe" if args.sparse else "simple_autoe")

"""
## The data

Each 28x28 image becomes a vector of 784 values in [0, 1]. The labels are not used
for training, only to colour the plots later.
"""

(x_train, _), (x_test, y_test), data_info = data.load_mnist(
    args.data, args.limit, shape=(PIXELS,))

"""
## The model

One Dense layer encodes, one decodes. The encoder and decoder are separate models so
that we can save them and use them on their own; the autoencoder chains them.
"""


def build_autoencoder(sparsity=0.0):
    digit = keras.Input(shape=(PIXELS,), name="digit")
    code = layers.Dense(
        CODE_SIZE,
        activation="relu",
        # Penalising large activations pushes most code units to zero for any one
        # digit: a sparse code.
        activity_regularizer=keras.regularizers.L1(sparsity) if sparsity else None,
        # The penalty joins the float32 loss; under mixed precision a 16-bit layer
        # would hand Keras a 16-bit penalty it cannot add, so this one stays float32.
        dtype="float32" if sparsity else None,
        name="code",
    )(digit)
    encoder = keras.Model(digit, code, name="encoder")

    code_input = keras.Input(shape=(CODE_SIZE,), name="code")
    pixels = layers.Dense(PIXELS, activation="sigmoid", name="pixels")(code_input)
    decoder = keras.Model(code_input, pixels, name="decoder")

    autoencoder = keras.Model(digit, decoder(encoder(digit)), name="autoencoder")
    return encoder, decoder, autoencoder


encoder, decoder, autoencoder = build_autoencoder(args.sparsity if args.sparse else 0)

"""
## The optimizer and its learning rate

The recipe's rate, as a schedule of the step: `CosineDecay` climbs linearly from
zero to the peak over the warm-up steps, then falls along a cosine to zero at the
last step (with `alpha=1.0`, the fraction of the peak it ends at, it stays level).
Without a warm-up or a decay the rate is a plain number.
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

The input is its own target. Per-pixel binary cross-entropy reads each grey level
as the probability of ink: it suits the sigmoid output and trains faster than
squared error. Two options make this small model train faster: XLA compiles each
step into a few fused kernels, and Keras runs several steps per call.
"""

autoencoder.compile(
    optimizer=optimizer,
    loss="binary_crossentropy",
    # With --sparse the loss includes the penalty; this metric is the reconstruction
    # error alone, comparable with the plain model's.
    metrics=[keras.metrics.BinaryCrossentropy(name="reconstruction")],
    # XLA fuses each Dense layer's matmul, bias and activation (on TensorFlow).
    jit_compile=run.jit_compile(),
    # Keras' Python work per call outweighs a step this small: several per call.
    steps_per_execution=run.steps_per_execution(steps_per_epoch),
)

"""
## Training

Each epoch ends with a pass over the test digits (`validation_data`). Beside the
progress bar, three callbacks watch: a timer measures the epochs, a guard stops a
run that diverges, and TensorBoard logs every epoch's losses and learning rate
(`tensorboard --logdir features/logs`).
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

The learning curves first: is the test loss still falling, and does it follow the
training loss? Then the test set's codes, which become the features to visualise,
and the first ten of them decoded back into digits.
"""

codes = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
reconstructed = decoder.predict(codes[:10], verbose=0)
title = "Sparse autoencoder" if args.sparse else "Simple autoencoder"
plots = {
    "history": figures.learning_curves(history.history, title=f"{title}: learning"),
    "reconstructions": figures.digit_rows(
        [("original", x_test[:10]), ("reconstructed", reconstructed)],
        title=f"{title}: test digits"),
}

"""
## Saving

The codes, their labels and images, the figures, the encoder and decoder and a
metrics record are written to `features/` as one set: an interrupted run leaves the
previous set as it was. The mean activation shows what the sparsity penalty did:
compare it with the other model's, if that one has been trained.
"""

metrics = run.save(encoder=encoder, decoder=decoder, codes=codes, labels=y_test,
                   images=x_test, data_info=data_info, history=history, plots=plots,
                   **({"sparsity": args.sparsity} if args.sparse else {}))
print(f"Mean code activation {codes.mean():.3f}, test reconstruction loss "
      f"{metrics['test_reconstruction']:.4f}")
run.compare_with("simple_autoe" if args.sparse else "sparse_autoe")
run.show_figures()
