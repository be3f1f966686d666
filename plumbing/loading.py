"""Loading saved arrays safely: pickles that may only hold numpy arrays, read with
the bounded readers of ``files`` and checked for what each array should be.

The visualiser reads every training run's features, labels and test images through
here, and the benchmarks read labels the same way. Nothing here imports matplotlib,
scikit-learn or a deep-learning backend.
"""

import functools
import io
import math
import os
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np

from plumbing import cli, files
from plumbing.data import IMAGE_SHAPE

# The largest files the visualiser reads, by what they hold (docs/reliability.md):
# each fits the whole of MNIST's 70,000 digits with room to spare, and refuses in a
# moment a file that could only exhaust the memory. Features: 70,000 codes of the
# widest model (7x7x32 = 1,568 float32) take 439 MB.
MiB = files.MiB
FEATURES_MAX_BYTES = 512 * MiB
LABELS_MAX_BYTES = 16 * MiB    # 70,000 int64 digits: 0.6 MB
IMAGES_MAX_BYTES = 64 * MiB    # 70,000 uint8 28x28 digits: 55 MB
# Our VAEs' decoders take under 1 MB; a decoder this large is not one of them.
DECODER_MAX_BYTES = 64 * MiB
# A pickle of one numpy array takes a few dozen instructions; refusing long ones
# bounds the time an unpickler written in Python can spend.
MAX_PICKLE_OPS = 10_000
# Labels are one of ten classes: MNIST's digits, or Fashion-MNIST's clothes.
CLASS_COUNT = 10


"""
## Pickles that may hold only numpy arrays

`pickle.load` runs whatever a pickle tells it to: a file can call `os.system` as it
loads. Our files are only ever numpy arrays, so this unpickler admits the handful of
numpy functions that rebuild an array and refuses every other import before it
happens. Plain numbers, lists, tuples and strings need no import and load as usual.
"""

ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),  # protocols 0-4
    ("numpy._core.numeric", "_frombuffer"),      # protocol 5
    ("numpy._core.multiarray", "scalar"),        # numpy scalars such as np.float32(1)
    ("_codecs", "encode"),                       # bytes in protocol 2 pickles
}

"""
A pickle can also ask numpy for an array far larger than itself: a 100-byte file can
declare a shape of billions of elements. Each array's data is in the file, so no
array may be larger than the bytes the file holds, all arrays together neither; the
unpickler checks every shape and dtype against that budget before numpy allocates
anything. (It is Python's own pure-Python unpickler, whose steps can be checked; the
stream is first walked by `pickletools`, which refuses any instruction declaring
more bytes than follow it.)
"""


class RefusedPickle(pickle.UnpicklingError):
    pass


class _NdarrayName:
    """What ``numpy.ndarray`` unpickles as: a name that ``_reconstruct`` accepts,
    but which cannot itself be called to allocate an array of any size."""

    def __new__(cls, *args, **kwargs):
        raise RefusedPickle("the pickle calls numpy.ndarray itself, which no saved "
                            "array needs")


class ArrayUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.size = self.budget = len(data)

    # The allowed numpy functions, each behind a check of what it would allocate.
    GUARDS = {"dtype": "_dtype", "_reconstruct": "_reconstruct",
              "_frombuffer": "_frombuffer", "scalar": "_scalar", "encode": "_encode"}

    def find_class(self, module, name):
        # numpy 2 renamed numpy.core to numpy._core; older files use the old name.
        key = (module.replace("numpy.core.", "numpy._core."), name)
        if key not in ARRAY_GLOBALS:
            raise RefusedPickle(f"the pickle would import {module}.{name}, and only "
                                "numpy arrays are allowed (a pickle can run code as "
                                "it loads)")
        if key == ("numpy", "ndarray"):
            return _NdarrayName
        return functools.partial(getattr(self, self.GUARDS[name]),
                                 super().find_class(*key))

    def _reserve(self, shape, dtype):
        """Count an array of ``shape`` and ``dtype`` against the file's bytes."""
        dtype = dtype if isinstance(dtype, np.dtype) else self._dtype(np.dtype, dtype)
        if dtype.hasobject:
            raise RefusedPickle("the pickle holds an array of Python objects, and only "
                                "arrays of numbers are allowed")
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(shape, tuple) or \
                not all(isinstance(n, int) and n >= 0 for n in shape):
            raise RefusedPickle(f"the pickle declares an array of shape {shape!r}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.budget:
            raise RefusedPickle(f"the pickle declares a {shape} array of {dtype} "
                                f"({nbytes:,} bytes), more than its {self.size:,} "
                                "bytes can hold")
        self.budget -= nbytes

    def _dtype(self, real, *args):
        dtype = real(*args)
        if dtype.hasobject:
            raise RefusedPickle("the pickle holds an array of Python objects, and only "
                                "arrays of numbers are allowed")
        return dtype

    def _reconstruct(self, real, subtype, shape, dtype):
        if subtype is not _NdarrayName:
            raise RefusedPickle("the pickle rebuilds an array of another class")
        self._reserve(shape, dtype)
        return real(np.ndarray, shape, dtype)

    def _frombuffer(self, real, buffer, dtype, shape, order):
        self._reserve(shape, dtype)
        return real(buffer, dtype, shape, order)

    def _scalar(self, real, dtype, *args):
        self._reserve((), dtype)
        return real(dtype, *args)

    def _encode(self, real, text, encoding="utf-8", *args):
        # Protocol 2 stores bytes as latin-1 text: no other codec is needed.
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise RefusedPickle(f"the pickle encodes bytes as {encoding!r}")
        return real(text, encoding)

    def load_build(self):
        # An array's data arrives in its state (shape, dtype, bytes): check first.
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            if not isinstance(state, tuple) or len(state) not in (4, 5) or \
                    not isinstance(state[-1], (bytes, bytearray)):
                raise RefusedPickle("the pickle sets an array's state to something "
                                    "other than its numbers")
            self._reserve(state[-4], state[-3])
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build


def _check_stream(data):
    """Walk the pickle's instructions without running them: every length must fit
    in what follows, and there must be no more of them than an array pickle needs."""
    for count, _ in enumerate(pickletools.genops(io.BytesIO(data)), 1):
        if count > MAX_PICKLE_OPS:
            raise RefusedPickle(f"more than {MAX_PICKLE_OPS:,} pickle instructions, "
                                "far more than a numpy array needs")


def load_pickle(path, data=None, max_bytes=FEATURES_MAX_BYTES):
    """Unpickle ``path`` (or its bytes ``data``) allowing numpy arrays only."""
    path = Path(path)
    if data is None:
        data = read_bytes(path, max_bytes)
    if not data:
        raise cli.UserError(f"{path}: empty file, expected a pickled numpy array")
    try:
        _check_stream(data)
        return ArrayUnpickler(data).load()
    except RefusedPickle as error:
        raise cli.UserError(f"{path}: refused to load: {error}") from None
    except Exception as error:  # any malformed input is the file's fault
        if isinstance(error, EOFError) or "truncated" in str(error) or \
                re.search(r"expected \d+ bytes in a \w+, but only \d+ remain",
                          str(error)):
            raise cli.UserError(f"{path}: truncated pickle (the file ends too "
                                "early)") from None
        reason = " ".join(str(error).split())  # some messages span two lines
        raise cli.UserError(f"{path}: not a pickled numpy array "
                            f"({type(error).__name__}: {reason})") from None


def load_array(path, max_bytes=FEATURES_MAX_BYTES):
    """A numpy array from a pickle, loaded safely; any problem is a UserError."""
    array = load_pickle(path, max_bytes=max_bytes)
    if not isinstance(array, np.ndarray):
        raise cli.UserError(f"{path}: contains a {type(array).__name__}, expected a "
                            "numpy array")
    return array


def read_bytes(path, max_bytes):
    return files.read_regular(path, max_bytes, "a .pickle file")


"""
## A saved decoder, before Keras or a hash reads it

Keras opens a `.keras` file by its name, and a run's record check hashes it: both
read it whole. It is checked first, so that a pipe, a device, a huge file or one
we may not read is said for what it is, in one line, before any byte is read.
"""


def check_decoder(path):
    """Refuse ``path`` unless it is a regular file of a decoder's size."""
    path = Path(path)
    if not os.path.lexists(path):
        raise cli.UserError(f"{path}: no such decoder file (the VAE script saves "
                            "<prefix>_decoder.keras beside its features)")
    files.open_regular(path, DECODER_MAX_BYTES, "a Keras decoder (.keras)").close()


"""
## What each array must be
"""


def check_features(array, path):
    """Return the features as float32, one entry per image; problems are UserErrors."""
    if isinstance(array, np.generic):  # a numpy scalar, e.g. np.float32(1.5)
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise cli.UserError(f"{path}: contains a {type(array).__name__}, expected a "
                            "numpy array of features")
    if array.ndim == 0:
        raise cli.UserError(f"{path}: a 0-d array (a single number), expected one "
                            "row of features per image")
    if array.ndim == 1:
        raise cli.UserError(f"{path}: a 1-d array of shape {array.shape}, expected "
                            "one row of features per image (labels by mistake?)")
    if array.size == 0:
        raise cli.UserError(f"{path}: empty array of shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise cli.UserError(f"{path}: array of dtype {array.dtype}, expected numbers")
    if np.iscomplexobj(array):  # float32 would silently drop the imaginary parts
        raise cli.UserError(f"{path}: complex numbers ({array.dtype}), expected real "
                            "features")
    array = array.astype(np.float32)
    bad = np.count_nonzero(~np.isfinite(array))
    if bad:
        raise cli.UserError(f"{path}: {bad:,} non-finite values (NaN or inf) in the "
                            "features; did training diverge?")
    return array


def check_labels(array, path, count, features_path):
    """Return the labels as int64 (N,), one digit 0-9 per row of features."""
    if not isinstance(array, np.ndarray):
        raise cli.UserError(f"{path}: contains a {type(array).__name__}, expected a "
                            "numpy array of labels")
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise cli.UserError(f"{path}: labels of shape {array.shape} and dtype "
                            f"{array.dtype}, expected integer digits of shape (N,)")
    if len(array) != count:
        raise cli.UserError(f"{path}: {len(array):,} labels for {count:,} rows of "
                            f"features in {features_path}")
    if array.min() < 0 or array.max() >= CLASS_COUNT:
        raise cli.UserError(f"{path}: labels outside the digits 0-9")
    return array.astype(np.int64)


def check_images(array, path, count):
    """The test digits as uint8 (N, 28, 28), one per row of features."""
    expected = (count, *IMAGE_SHAPE)
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 \
            or array.shape != expected:
        shape = getattr(array, "shape", type(array).__name__)
        dtype = getattr(array, "dtype", "")
        raise cli.UserError(f"{path}: images of shape {shape} {dtype}, expected uint8 "
                            f"of shape {expected}, one per row of features")
    return array
