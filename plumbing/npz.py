"""MNIST's layout in an .npz file (``--data PATH``, and Keras' cached mnist.npz),
read safely: each array's .npy header is read and checked before anything is
decompressed, so that a small file declaring gigabytes is refused at once, and
every problem is a one-line UserError.
"""

import contextlib
import lzma
import math
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from plumbing import files
from plumbing.cli import UserError

IMAGE_SHAPE = (28, 28)
SPLITS = ("x_train", "y_train", "x_test", "y_test")
# How much a --data file may hold (docs/reliability.md): MNIST's 70,000 digits take
# 55 MB (11 MB compressed); these limits also admit EMNIST's 280,000 digits, which
# as float32 take 0.9 GB, and refuse at once a file that could only exhaust memory.
MAX_IMAGES = 300_000                 # train and test together
DATA_MAX_BYTES = 256 * files.MiB     # 300,000 digits stored uncompressed: 235 MB


def check_npz(path):
    """Check an MNIST .npz without decompressing it: a one-line UserError if it is
    not a regular file of bounded size holding the four arrays in their shapes.
    Returns the arrays' shapes, by name."""
    with _checked_npz(path) as archive:
        return archive.shapes


def read_npz(path, where=None):
    """Load an MNIST .npz, its layout checked; every problem becomes a one-line
    UserError that starts with ``where`` (default: "--data PATH")."""
    with _checked_npz(path, where) as archive:
        arrays = {}
        for k in SPLITS:
            with archive.open(f"{k}.npy") as member:
                arrays[k] = npy.read_array(member, allow_pickle=False)
    return ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))


@contextlib.contextmanager
def _checked_npz(path, where=None):
    """The .npz at ``path`` as an open ZipFile, once each array's .npy header
    (shape, dtype) has been read and checked: before anything is decompressed, so
    that a small file declaring gigabytes is refused at once."""
    path = Path(path)
    try:
        f = files.open_regular(path, DATA_MAX_BYTES, "an .npz file")
    except UserError as error:
        raise UserError(f"--data {error}" if where is None else str(error)) from None
    where = where or f"--data {path}"
    with f:
        if not zipfile.is_zipfile(f):  # an .npz is a zip archive of .npy files
            raise UserError(f"{where}: not an .npz file (expected the zip archive "
                            "numpy.savez writes, with x_train, y_train, x_test, "
                            "y_test)")
        try:
            with zipfile.ZipFile(f) as archive:
                missing = [k for k in SPLITS if f"{k}.npy" not in archive.namelist()]
                if missing:
                    raise UserError(f"{where}: missing array(s) "
                                    f"{', '.join(missing)} (expected x_train, y_train, "
                                    "x_test, y_test)")
                headers = {k: _npy_header(archive, k, where) for k in SPLITS}
                _check_headers(headers, where)
                archive.shapes = {k: shape for k, (shape, _) in headers.items()}
                yield archive
        except UserError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                lzma.LZMAError, RuntimeError, NotImplementedError, SyntaxError,
                tokenize.TokenError) as error:
            # RuntimeError: an encrypted member; NotImplementedError: a compression
            # method zipfile cannot read; SyntaxError, TokenError: a damaged .npy
            # header, which numpy parses as Python.
            reason = " ".join(str(error).split())
            if isinstance(error, RuntimeError) and "encrypted" in reason:
                reason = "a member is encrypted, with a password"
            raise UserError(f"{where}: not a readable .npz file "
                            f"({reason})") from None


def _npy_header(archive, name, where):
    """(shape, dtype) of the array ``name`` in ``archive``, from its header alone."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise UserError(f"{where}: {name} is a .npy file of version "
                            f"{version[0]}.{version[1]}, which is not read here")
        read_header = npy.read_array_header_1_0 if version == (1, 0) else \
            npy.read_array_header_2_0
        shape, _, dtype = read_header(member)
        header_size = member.tell()
    if dtype.hasobject:  # numpy's own words would invite unsafe loading
        raise UserError(f"{where}: holds pickled Python objects, not plain "
                        "arrays; refused, as loading them could run code")
    # The zip's declared size bounds what decompressing can produce; it must be
    # exactly the header and the array's bytes.
    size = header_size + math.prod(shape) * dtype.itemsize
    if info.file_size != size:
        raise UserError(f"{where}: {name} declares {shape} {dtype} "
                        f"({size:,} bytes with its header) but the archive says "
                        f"{info.file_size:,} bytes; a damaged or forged file")
    return shape, dtype


def _check_headers(headers, where):
    total = 0
    for split in ("train", "test"):
        (x_shape, x_dtype), (y_shape, y_dtype) = headers[f"x_{split}"], \
            headers[f"y_{split}"]
        if len(x_shape) != 3 or x_shape[1:] != IMAGE_SHAPE or x_shape[0] == 0:
            colour = " (colour images? MNIST is grayscale)" if len(x_shape) == 4 \
                and x_shape[1:3] == IMAGE_SHAPE else ""
            raise UserError(f"{where}: x_{split} has shape {x_shape}, "
                            f"expected (N, 28, 28) with N > 0{colour}")
        if x_dtype != np.uint8:
            raise UserError(f"{where}: x_{split} has dtype {x_dtype}, "
                            "expected uint8 pixels 0-255")
        if len(y_shape) != 1 or not np.issubdtype(y_dtype, np.integer):
            raise UserError(f"{where}: y_{split} has shape {y_shape} and dtype "
                            f"{y_dtype}, expected integer labels of shape (N,)")
        if y_shape[0] != x_shape[0]:
            raise UserError(f"{where}: y_{split} has {y_shape[0]} labels for "
                            f"{x_shape[0]} images in x_{split}")
        total += x_shape[0]
    if total > MAX_IMAGES:
        raise UserError(f"{where}: {total:,} images, more than the "
                        f"{MAX_IMAGES:,} these scripts train on (MNIST has 70,000)")
