"""
Title: A denoising convolutional autoencoder
Based on: "Building Autoencoders in Keras", Francois Chollet, Keras blog (2016)
Description: Train on noisy digits to reproduce the clean ones.

    python image_denoising.py

Outputs go to features/ (see README): the (7, 7, 32) codes of the noisy test
digits as denoise_autoe_features.pickle, their labels, a metrics file, figures of
noisy / denoised / clean digits and of the codes, and the trained encoder and
decoder.
"""

"""
## Setup

`common` holds the plumbing shared by all scripts (command line, data, saving,
figures); everything about the model is in this file.
"""

import common
import keras
from keras import layers

NOISE_FACTOR = 0.5

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


"""
## Training recipes

The tutorial trains for 100 epochs in batches of 128, with Adadelta in its 2016
text and Adam since. Ours is Adam, its learning rate decaying along a cosine.
"""

TUTORIAL = common.Recipe(epochs=100, batch_size=128, optimizer="adadelta")
OURS = TUTORIAL._replace(optimizer="adam", schedule="cosine")


def main():
    parser = common.make_parser(__doc__, tutorial=TUTORIAL, ours=OURS)
    args = common.parse_args(parser)

    # ## The data: clean digits, and copies corrupted with Gaussian noise
    # (clip(x + 0.5 * N(0, 1), 0, 1)). The noise is drawn once, as in the tutorial,
    # from --seed, so a run is repeatable.
    (x_train, _), (x_test, y_test), data_info = common.load_mnist(
        args.data, args.limit, shape=(28, 28, 1))
    noisy_train = common.add_noise(x_train, NOISE_FACTOR, seed=args.seed)
    noisy_test = common.add_noise(x_test, NOISE_FACTOR, seed=args.seed + 1)

    # ## Training: noisy digits in, clean digits as targets.
    encoder, decoder, autoencoder = build_autoencoder()
    autoencoder.compile(
        optimizer=common.make_optimizer(args, len(x_train)),
        loss="binary_crossentropy",
    )
    result = common.fit(autoencoder, noisy_train, x_train, args=args,
                        test=(noisy_test, x_test))

    # ## What it learned: the model is shown the NOISY test digits (the original
    # script denoised the clean ones, which proves nothing), and their codes are the
    # saved features.
    codes = common.finish(args, "denoise_autoe", title="Denoising autoencoder",
                          encoder=encoder, decoder=decoder, x_test=x_test,
                          y_test=y_test, data_info=data_info, result=result,
                          noisy_test=noisy_test)
    common.plot_feature_maps(codes[:10], f"{args.out_dir}/denoise_autoe_codes.png",
                             title="Codes of the first 10 noisy test digits "
                                   "(32 maps of 7x7)",
                             show=args.show)
    common.show_figures(args.show)


if __name__ == "__main__":
    common.main_guard(main)
