"""
Title: A convolutional autoencoder
Based on: "Building Autoencoders in Keras", Francois Chollet, Keras blog (2016)
Description: Convolutions and pooling squeeze each digit into a 4x4x8 code.

    python convolutional_autoencoder.py

Outputs go to features/ (see README): the test set's (4, 4, 8) codes as
conv_autoe_features.pickle, their labels, a metrics file, figures of the
reconstructions and of the codes, and the trained encoder and decoder.
"""

"""
## Setup

`common` holds the plumbing shared by all scripts (command line, data, saving,
figures); everything about the model is in this file.
"""

import common
import keras
from keras import layers

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


"""
## Training recipes

The tutorial trains for 50 epochs in batches of 128, with Adadelta in its 2016 text
and Adam at its usual 0.001 since. That rate is too timid for this small network:
the test loss was still falling at 0.0949 when the epochs ran out. Ours raises it to
0.003 and lets it decay along a cosine: 0.0887 in the same 50 epochs (0.01 learned
more slowly again; see README, "Results").
"""

TUTORIAL = common.Recipe(epochs=50, batch_size=128, optimizer="adadelta")
OURS = TUTORIAL._replace(optimizer="adam", learning_rate=3e-3, schedule="cosine")


def main():
    parser = common.make_parser(__doc__, tutorial=TUTORIAL, ours=OURS)
    args = common.parse_args(parser)

    # ## The data: 28x28 images with one (grey) channel, values in [0, 1].
    (x_train, _), (x_test, y_test), data_info = common.load_mnist(
        args.data, args.limit, shape=(28, 28, 1))

    # ## Training: reconstruct the input, pixel by pixel binary cross-entropy.
    encoder, decoder, autoencoder = build_autoencoder()
    autoencoder.compile(
        optimizer=common.make_optimizer(args, len(x_train)),
        loss="binary_crossentropy",
    )
    result = common.fit(autoencoder, x_train, x_train, args=args, test=(x_test, x_test))

    # ## What it learned: reconstructions, the codes themselves (each 4x4x8 code drawn
    # as its 8 maps side by side), and the codes saved as features.
    codes = common.finish(args, "conv_autoe", title="Convolutional autoencoder",
                          encoder=encoder, decoder=decoder, x_test=x_test,
                          y_test=y_test, data_info=data_info, result=result)
    common.plot_feature_maps(codes[:10], f"{args.out_dir}/conv_autoe_codes.png",
                             title="Codes of the first 10 test digits (8 maps of 4x4)",
                             show=args.show)
    common.show_figures(args.show)


if __name__ == "__main__":
    common.main_guard(main)
