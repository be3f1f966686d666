"""
Title: A deep autoencoder
Based on: "Building Autoencoders in Keras", Francois Chollet, Keras blog (2016)
Description: Three Dense layers down to a 32-number code, three back up.

    python deep_autoencoder.py                     # our recipe
    python deep_autoencoder.py --recipe tutorial   # the tutorial's, exactly

Outputs go to features/ (see README): the test set's 32-d codes as
deep_autoe_features.pickle, their labels and images, a metrics file, a figure of
reconstructions and the trained encoder and decoder.
"""

"""
## Setup

`plumbing` does the chores (command line, data, saving); everything about the model
and its training is in this file.
"""

from plumbing import data, figures, training  # first: it imports Keras quietly

import keras
from keras import layers

PIXELS = 28 * 28

"""
## Training recipes

The tutorial trains for 100 epochs in batches of 256, with Adadelta in its 2016 text
(at Keras 2's rate of 1.0) and Adam since, which ends short of its "~0.08". Ours keeps
the batches of 256 and trains half as long again at a higher rate: Adam at 0.003,
warmed up from zero over 5 epochs (started at full rate, a high rate switches off code
units for good in the first steps, as in the simple autoencoder), then decaying along
a cosine. Batches of 64 also reach the target in 100 epochs, through four times as
many noisier steps, but each of those epochs is slower (results/tuning.md; README,
"Results" and "Speed").
"""

RECIPES = {
    "ours": dict(epochs=150, batch_size=256, optimizer="adam", learning_rate=0.003,
                 schedule="cosine", warmup=5),
    "tutorial": dict(epochs=100, batch_size=256, optimizer="adadelta",
                     learning_rate=1.0, schedule="constant", warmup=0),
}

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


def main():
    args = training.setup(training.make_parser(__doc__, RECIPES).parse_args(), RECIPES)

    # ## The data: each 28x28 image flattened to 784 values in [0, 1].
    (x_train, _), (x_test, y_test), data_info = data.load_mnist(
        args.data, args.limit, shape=(PIXELS,))

    # ## Training: the input is its own target, scored pixel by pixel with binary
    # cross-entropy (each grey level read as the probability of ink).
    encoder, decoder, autoencoder = build_autoencoder()
    autoencoder.compile(
        optimizer=keras.optimizers.get({
            "class_name": args.optimizer,
            "config": {"learning_rate": training.learning_rate(args, len(x_train))}}),
        loss="binary_crossentropy",
        **training.dense_model_speedups(),
    )
    timer = training.EpochTimer()
    guard = training.DivergenceGuard((x_test, x_test), args.batch_size)
    history = autoencoder.fit(
        x_train, x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        validation_data=(x_test, x_test),
        callbacks=[timer, guard],
        verbose=training.VERBOSE,
    )

    # ## What it learned: the test set's codes become the features to visualise, and
    # the decoder turns the first ten back into digits.
    codes = encoder.predict(x_test, batch_size=args.batch_size, verbose=0)
    reconstructed = decoder.predict(codes[:10], verbose=0)
    plot = figures.digit_rows([("original", x_test[:10]),
                               ("reconstructed", reconstructed)],
                              title="Deep autoencoder: test digits")
    training.save_outputs(
        args, "deep_autoe", encoder=encoder, decoder=decoder, codes=codes,
        labels=y_test, images=x_test, data_info=data_info, history=history,
        timer=timer, guard=guard, plots={"reconstructions": plot})
    figures.show_figures(args.show)


if __name__ == "__main__":
    training.cli.main_guard(main)
