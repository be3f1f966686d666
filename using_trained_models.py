"""
Title: Using trained models: reload, encode, interpolate, sample, and the VAE's
likelihood
Author: the keras-autoencoders authors
Date created: 2026/12/03
Last modified: 2026/12/03
Description: Reload the encoders and decoders the training scripts saved, run
digits through them, walk from one digit to another, draw new digits from the VAE,
and measure the VAE's exact likelihood.

    python using_trained_models.py                  # the models saved in features/
    python using_trained_models.py --out-dir DIR    # the models saved in DIR

Run it after any training script: it uses every model it finds, and names the
script that trains each one it does not find. Beside the models it writes
<prefix>_interpolation.png for each, <prefix>_samples.png for each VAE and
denoise_autoe_cleaned.png for the denoiser.
"""

"""
## Setup

Run as a script, the lesson reads its options from the command line (`--help` lists
them). In a notebook, write them in the `options` cell below as you would type
them: models saved in another folder are `options = "--out-dir my_models"`.
"""

options = ""

"""
The option is read before Keras loads, so that `--help` answers at once.
"""

import argparse

from plumbing import cli

parser = cli.ArgumentParser(description=__doc__.split("Description:")[-1].strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out-dir", default="features", metavar="DIR",
                    help="the folder where the training scripts saved their models "
                         "(their --out-dir); the figures are written there too "
                         "(default: %(default)s)")
args = parser.parse_options(options)

from plumbing import figures, likelihood, trained  # loads Keras, quietly

import keras
import numpy as np

SEED = 1337  # for the fresh noise and the VAE's samples
rng = np.random.default_rng(SEED)
print(f"Keras {keras.__version__} on the {keras.backend.backend()} backend")

"""
## Which models are there

Every training script saves its encoder and decoder as `.keras` files in its
`--out-dir`, with the codes of the test digits and a metrics record.
`trained.find` lists the models saved in `--out-dir` with the paths of their
encoder and decoder, and names the script that trains each one that is missing.
It checks each file (a regular file, of a sensible size, a zip archive as Keras
writes it, of the same run as the rest of its set) before Keras reads it.
"""

saved_models = trained.find(args.out_dir)

"""
## Reloading

`keras.models.load_model` rebuilds a model from its `.keras` file: a zip archive of
the architecture (as JSON) and the weights. With `safe_mode=True` (the default,
written out here) it refuses to run Python code stored in the file, such as a
`Lambda` layer's function: a model file from elsewhere could use one to run
anything. Our saved models need none. They are built from Keras' own layers only:
the VAEs' `Sampling` layer and their KL term belong to the training model, which is
not saved, so the saved encoder and decoder need no custom objects either. Nor do
they depend on the backend that trained them: the weights are plain arrays, so a
model trained on TensorFlow loads on JAX or PyTorch.
"""


def load(prefix):
    return [keras.models.load_model(saved_models[prefix][part], safe_mode=True)
            for part in ("encoder", "decoder")]


def encode(encoder, digits):
    """The codes of ``digits``. A VAE's encoder gives a mean and a log variance per
    latent dimension; its code for a digit is the mean."""
    x = np.reshape(digits, (-1, *encoder.input_shape[1:]))
    codes = encoder.predict(x, batch_size=256, verbose=0)
    return codes[0] if isinstance(codes, list) else codes


"""
The denoiser's saved codes are those of the noisy test digits. Its noise is drawn
as image_denoising.py draws it, from the run's seed plus one, so the same noisy
digits come back.
"""

NOISE_FACTOR = 0.5


def add_noise(images, seed):
    noisy = np.random.default_rng(seed).standard_normal(images.shape, dtype=np.float32)
    return np.clip(images + np.float32(NOISE_FACTOR) * noisy, 0.0, 1.0)


"""
Each model's test digits are loaded as its run loaded them (the metrics record
names the data), encoded by the reloaded encoder, and compared with the codes the
run saved. Models that computed in float32 agree to rounding; those trained in
mixed precision computed their saved codes in 16 bits, so they differ in the third
significant digit.
"""

models = {}
for prefix in saved_models:
    digits, labels, saved, record = trained.test_set(args.out_dir, prefix)
    encoder, decoder = load(prefix)
    if prefix == "denoise_autoe":
        seed = record.get("seed", SEED)
        seen = add_noise(np.reshape(digits, (-1, 28, 28, 1)), seed + 1)
    else:
        seen = digits
    codes = encode(encoder, seen)
    difference = float(np.abs(np.reshape(codes, saved.shape) - saved).max())
    print(f"{prefix}: trained on {record.get('backend')}, reloaded on "
          f"{keras.backend.backend()}; the codes of its {len(digits):,} test digits "
          f"are within {difference:.1e} of the saved ones")
    models[prefix] = dict(encoder=encoder, decoder=decoder, digits=digits,
                          labels=labels, codes=codes, record=record)

"""
## Encoding and decoding

A few test digits through each model, scored as the models were trained: binary
cross-entropy per pixel between each digit and its reconstruction.
"""


def decode(decoder, codes):
    return np.reshape(decoder.predict(np.asarray(codes), batch_size=256, verbose=0),
                      (-1, 28, 28))


def bce(digits, decoded):
    p = np.clip(decoded, 1e-7, 1 - 1e-7)
    return float(-np.mean(digits * np.log(p) + (1 - digits) * np.log(1 - p)))


"""
Each model's encoder gives the codes of eight test digits, and its decoder turns
them back into pictures.
"""

for prefix, model in models.items():
    few = model["digits"][:8]
    decoded = model["decoder"].predict(encode(model["encoder"], few), verbose=0)
    decoded = np.reshape(decoded, few.shape)
    print(f"{prefix}: 8 test digits encoded to {model['codes'].shape[1:]} and "
          f"decoded, {bce(few, decoded):.4f} per pixel")

"""
The denoiser is trained to clean digits it has never seen noisy: here is fresh
noise, drawn from a seed its run never used.
"""

if "denoise_autoe" in models:
    model = models["denoise_autoe"]
    clean = model["digits"][:8]
    noisy = add_noise(np.reshape(clean, (-1, 28, 28, 1)), SEED)
    cleaned = decode(model["decoder"], encode(model["encoder"], noisy))
    print(f"denoise_autoe: freshly noised digits, {bce(clean, noisy[..., 0]):.4f} per "
          f"pixel from the clean ones; cleaned, {bce(clean, cleaned):.4f}")
    figures.save_figure(figures.digit_rows(
        [("fresh noise", noisy), ("cleaned", cleaned), ("clean", clean)],
        title="Denoising autoencoder, reloaded: new noise, cleaned"),
        f"{args.out_dir}/denoise_autoe_cleaned.png")

"""
## Walking from one digit to another

Take two test digits, a 0 and a 1, and walk in ten steps from one to the other:

* in **pixel space**, each step is a weighted average of the two pictures: the 0
  fades out while the 1 fades in, and the pictures between are neither;
* in a model's **code space**, each step is the same average of the two codes,
  decoded.

A plain autoencoder is only trained to decode the codes of real digits. Between
two of them its code space may hold nothing it was trained on, and the path can
decode to blurs or to both digits at once. A VAE is trained to decode any code its
encoder's Gaussian may draw around each digit, and its KL term packs those Gaussians
together around the origin, so the plane between two digits is covered by codes of
other digits: the path walks from one digit to the next, each step a plausible
digit, and in two dimensions it may pass through other digits on its way.
"""

STEPS = 10
weights = np.linspace(0.0, 1.0, STEPS, dtype=np.float32)[:, None]


def pair(labels):
    """The first test 0 and the first test 1, or the first two test digits."""
    first = [np.flatnonzero(labels == digit) for digit in (0, 1)]
    return tuple(int(f[0]) for f in first) if all(len(f) for f in first) else (0, 1)


for prefix, model in models.items():
    a, b = pair(model["labels"])
    digits = np.reshape(model["digits"], (len(model["digits"]), -1))
    pixels = (1 - weights) * digits[a] + weights * digits[b]
    codes = np.reshape(model["codes"], (len(digits), -1))
    path = (1 - weights) * codes[a] + weights * codes[b]
    walked = decode(model["decoder"],
                    np.reshape(path, (STEPS, *model["codes"].shape[1:])))
    figures.save_figure(figures.digit_rows(
        [("pixel space", pixels), (f"{prefix}'s code space", walked)],
        title=f"From test digit {a} to test digit {b}"),
        f"{args.out_dir}/{prefix}_interpolation.png")
    print(f"{prefix}: wrote {prefix}_interpolation.png")

"""
## New digits from the VAE

A VAE's prior is N(0, I): codes drawn from it decode to new digits, none of them
in the training set.
"""

vaes = [prefix for prefix in models if prefix.startswith("variational_autoe")]
for prefix in vaes:
    drawn = decode(models[prefix]["decoder"], rng.standard_normal((40, 2)))
    figures.save_figure(figures.digit_rows(
        [("", drawn[row * 10:(row + 1) * 10]) for row in range(4)],
        title=f"{prefix}: 40 codes drawn from the prior, decoded"),
        f"{args.out_dir}/{prefix}_samples.png")
    print(f"{prefix}: wrote {prefix}_samples.png")

"""
## The VAE's likelihood

A VAE's loss is the negative evidence lower bound (ELBO): an upper bound on the
negative log-likelihood -log p(x), where p(x) is the integral of p(x|z) p(z) over
all codes z. With a 2-d code the integral is a sum over a fine grid of the plane:
decode every grid point once, score every test digit against every point (one
matrix product), weight by the prior, and add up (`likelihood.exact_nll`).

The gap between the two figures is what the encoder's Gaussian costs: the KL
divergence from it to the true posterior over codes. On grey digits the figure is
the likelihood the loss uses (binary cross-entropy), not a normalised density over
grey levels; on coin-flip digits (each pixel inked with the probability its grey
level gives) it is a true likelihood. The VAE lessons record both in their metrics
files (`test_nll`, `test_nll_binarised`).
"""

for prefix in vaes:
    model = models[prefix]
    nll = likelihood.exact_nll(model["decoder"], model["digits"], with_binarised=False)
    bound = float(model["record"]["test_loss"])
    print(f"{prefix}: exact test NLL {nll['test_nll']:.2f} nats per digit, negative "
          f"ELBO {bound:.2f}, gap {bound - nll['test_nll']:.2f} "
          f"({nll['nll_seconds']:.0f} s)")
