"""The visualiser's chores: its command line, safe loading and checks, the t-SNE cache.

``visualize_latent_space.py`` is the lesson; this module does what it needs and no
reader needs to see. It imports no deep-learning backend (nor scikit-learn or
matplotlib, so that ``--help`` answers at once): the codes are plain numpy arrays.
"""

import argparse
import contextlib
import functools
import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import re
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from plumbing import cli, files, figures
from plumbing.data import IMAGE_SHAPE, labels_of, title_of

# The models in the order of the tutorial; unknown prefixes follow, alphabetically.
MODEL_NAMES = {
    "simple_autoe": "Simple autoencoder",
    "sparse_autoe": "Sparse autoencoder",
    "deep_autoe": "Deep autoencoder",
    "conv_autoe": "Convolutional autoencoder",
    "denoise_autoe": "Denoising autoencoder",
    "variational_autoe": "Variational autoencoder",
    "variational_autoe_deconv": "Deconvolutional VAE",
}
FEATURES_SUFFIX = "_features.pickle"
DIGITS = 10
# Codes whose spread (RMS distance from their mean) lies outside this range cannot be
# compared in float32: squared distances underflow to 0 or overflow to inf, and
# scikit-learn's t-SNE then crashes (a segmentation fault for the tiny ones). The
# bounds keep a wide margin inside the range where it works.
SPREAD_RANGE = (1e-15, 1e15)
# The largest files the visualiser reads, by what they hold (docs/reliability.md):
# each fits the whole of MNIST's 70,000 digits with room to spare, and refuses in a
# moment a file that could only exhaust the memory. Features: 70,000 codes of the
# widest model (7x7x32 = 1,568 float32) take 439 MB.
MiB = files.MiB
FEATURES_MAX_BYTES = 512 * MiB
LABELS_MAX_BYTES = 16 * MiB    # 70,000 int64 digits: 0.6 MB
IMAGES_MAX_BYTES = 64 * MiB    # 70,000 uint8 28x28 digits: 55 MB
CACHE_MAX_BYTES = 16 * MiB     # a t-SNE map of 70,000 points: 0.6 MB, its record less
# A pickle of one numpy array takes a few dozen instructions; refusing long ones
# bounds the time an unpickler written in Python can spend.
MAX_PICKLE_OPS = 10_000


"""
## The command line
"""

DESCRIPTION = """\
Draw the codes a training script saved as a picture of the test digits: one dot
per digit, coloured by what digit it is. Wide codes are squeezed into two
dimensions by t-SNE; 2-D codes (the VAEs') are plotted as they are. Two numbers
say how good the codes are: how often a digit's 5 nearest neighbours among the
codes are the same digit (5-NN accuracy), and how faithfully the picture keeps
those neighbours (trustworthiness).
"""
EXAMPLES = """\
examples:
  python visualize_latent_space.py features/deep_autoe_features.pickle
  python visualize_latent_space.py features/variational_autoe_features.pickle --html
  python visualize_latent_space.py --all
  python visualize_latent_space.py --all runs/ --output comparison.png
"""


def at_least_250(text):
    value = cli.positive_int(text)
    if value < 250:  # scikit-learn's minimum: 250 iterations are early exaggeration
        raise argparse.ArgumentTypeError(f"must be at least 250, got {text}")
    return value


def make_parser():
    parser = cli.ArgumentParser(
        prog="visualize_latent_space.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
        description=DESCRIPTION,
    )
    parser.add_argument("features", nargs="?", metavar="FEATURES", type=cli.path,
                        help="The <prefix>_features.pickle a training script wrote "
                             "(leave it out with --all).")
    parser.add_argument("--all", nargs="?", const=cli.DEFAULT_OUT_DIR, metavar="DIR",
                        type=cli.path,
                        help="Draw every *_features.pickle in DIR side by side in one "
                             "figure and print a table of their two numbers (DIR "
                             f"defaults to {cli.DEFAULT_OUT_DIR}/).")
    parser.add_argument("--labels", metavar="PATH", type=cli.path,
                        help="The digits of the codes, as a pickle (default: "
                             "<prefix>_labels.pickle beside the features).")
    parser.add_argument("--output", metavar="PATH", type=cli.path,
                        help="The PNG to write (default: <prefix>_tsne.png beside the "
                             "features, <prefix>_latent_2d.png for 2-D codes, "
                             "DIR/all_latent_spaces.png with --all).")
    parser.add_argument("--perplexity", type=cli.positive_float, default=30.0,
                        metavar="P",
                        help="How many neighbours t-SNE tries to keep around each "
                             "point; larger values favour the overall layout "
                             "(default: %(default)s).")
    parser.add_argument("--max-iter", type=at_least_250, default=500, metavar="N",
                        help="How many t-SNE steps to take; 500 give maps as "
                             "trustworthy as scikit-learn's 1000, see "
                             "results/tuning.md (default: %(default)s).")
    parser.add_argument("--seed", type=cli.seed, default=1337,
                        help="The random seed of t-SNE and --max-points: the same seed "
                             "gives the same picture (default: %(default)s).")
    parser.add_argument("--max-points", type=cli.positive_int, metavar="N",
                        help="Draw only N of the test digits, each digit in its share, "
                             "to save time (default: all of them).")
    parser.add_argument("--threads", type=cli.positive_int, default=idle_cores(),
                        metavar="N",
                        help="How many CPU threads to use, as busy cores slow t-SNE "
                             "down badly (default: the cores idle now, %(default)s).")
    parser.add_argument("--no-cache", action="store_true",
                        help="Compute the t-SNE again even if a saved one matches "
                             "(default: reuse it).")
    parser.add_argument("--html", action="store_true",
                        help="Also write <prefix>_explorer.html beside the PNG, a "
                             "page to pan, zoom and see each dot's digit (default: "
                             "off).")
    parser.add_argument("--projector", metavar="DIR", type=cli.path,
                        help="Also write the codes into DIR for TensorBoard's "
                             "Embedding Projector, one folder per model with --all "
                             "(default: off).")
    parser.add_argument("--show", action="store_true",
                        help="Also open the figure in a window; it is always saved "
                             "(default: off).")
    return parser


def parse_args(argv=None):
    """The options, every one checked (output folders too) before any work."""
    args = make_parser().parse_args(argv)
    if (args.features is None) == (args.all is None):
        raise cli.UserError("give one FEATURES pickle or --all [DIR] (see --help)")
    if args.all is not None and args.labels:
        raise cli.UserError("--labels goes with one FEATURES pickle, not --all")
    if args.output:
        cli.check_output_file(args.output)
    if not args.output or (args.html and args.all is not None):
        check_default_folder(args)
    if args.projector:
        cli.check_output_dir(args.projector, option="--projector")
    return args


def check_default_folder(args):
    """The PNG goes beside the features (into DIR with --all), and with --all each
    page too: that folder must take a file, checked now rather than after t-SNE.
    A folder that is not there is left to the loading's clearer message."""
    if args.all is not None:
        folder, option, name = Path(args.all), "--all", None
    else:
        folder, option, name = Path(args.features).parent, "", args.features
    if folder.is_dir():
        cli.check_output_dir(folder, option=option, name=name,
                             hint="; the picture goes there unless --output PATH says "
                                  "where")


def idle_cores():
    """How many CPU cores no other program is busy with, judged by the load average.

    t-SNE's gradient runs in lock-step on every thread it is given: when another
    program (a training run, say) holds a core, each of its hundreds of steps waits
    for the thread that shares it (see results/tuning.md).
    """
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on Windows
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def features_paths(args):
    """The features to plot: one file, or every one in --all's folder."""
    return [Path(args.features)] if args.all is None else find_features(args.all)


def find_features(directory):
    """Every ``*_features.pickle`` in ``directory``, in the order of the tutorial."""
    directory = Path(directory)
    if not directory.exists():
        raise cli.UserError(f"--all {directory}: no such directory")
    if not directory.is_dir():
        raise cli.UserError(f"--all {directory}: not a directory (to plot one file, "
                            "leave out --all)")
    try:
        paths = [p for p in directory.iterdir() if p.name.endswith(FEATURES_SUFFIX)
                 and not p.name.startswith(".")]
    except OSError as error:
        raise cli.UserError(f"--all {directory}: cannot read it "
                            f"({error.strerror})") from None
    if not paths:
        raise cli.UserError(f"--all {directory}: no *{FEATURES_SUFFIX} files; run a "
                            "training script first")
    known = list(MODEL_NAMES)

    def order(path):
        prefix = prefix_of(path)
        return (known.index(prefix), "") if prefix in known else (len(known), prefix)

    return sorted(paths, key=order)


def png_path(args, codes):
    if args.output:
        return Path(args.output)
    if args.all is not None:
        return Path(args.all) / "all_latent_spaces.png"
    suffix = "_latent_2d.png" if codes.dims == 2 else "_tsne.png"
    return codes.path.with_name(codes.prefix + suffix)


"""
## Loading pickles safely

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
    except Exception as error:  # noqa: BLE001 - any malformed input is the file's fault
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
## Checking the inputs
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
    if array.min() < 0 or array.max() >= DIGITS:
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


def prefix_of(features_path):
    name = Path(features_path).name
    if name.endswith(FEATURES_SUFFIX):
        return name[:-len(FEATURES_SUFFIX)]
    return Path(features_path).stem


def labels_path_for(features_path):
    if not features_path.name.endswith(FEATURES_SUFFIX):
        raise cli.UserError(f"{features_path}: cannot tell where its labels are "
                            f"(the name does not end in {FEATURES_SUFFIX}); pass "
                            "--labels PATH")
    return features_path.with_name(prefix_of(features_path) + "_labels.pickle")


def stratified_subsample(labels, size, seed):
    """Indices of ``size`` points, each digit in its share, the same for the same seed.

    Every point gets a random rank within its digit, scaled to (0, 1]; keeping the
    lowest ranks takes every digit in proportion to how often it occurs.
    """
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    share = np.empty(len(labels))
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        share[members] = (rng.permutation(len(members)) + 1) / len(members)
    return np.sort(np.argsort(share, kind="stable")[:size])


class Codes:
    """One model's saved codes, loaded safely and checked, with their digits.

    ``features`` keep their natural shape (N x 4 x 4 x 8, say); the lesson adds
    ``rows``, the same flattened (N x 128). With --max-points, features, labels and
    images are the same stratified sample of the test digits. ``images`` (for --html
    and --projector) is None when there are none to show.
    """

    def __init__(self, features_path, args):
        self.path = Path(features_path)
        self.prefix = prefix_of(self.path)
        self.name = MODEL_NAMES.get(self.prefix, self.prefix)
        data = read_bytes(self.path, FEATURES_MAX_BYTES)
        features = check_features(load_pickle(self.path, data), self.path)
        self.sha256 = hashlib.sha256(data).hexdigest()

        hint = "" if args.labels else "; pass --labels PATH"
        labels_path = Path(args.labels) if args.labels else labels_path_for(self.path)
        if not labels_path.exists():
            raise cli.UserError(f"{labels_path}: no such file (the labels for "
                                f"{self.path}{hint})")
        data = read_bytes(labels_path, LABELS_MAX_BYTES)
        labels = check_labels(load_pickle(labels_path, data), labels_path,
                              len(features), self.path)
        self.labels_sha256 = hashlib.sha256(data).hexdigest()
        digits = np.unique(labels)
        if len(digits) == 1:
            print(f"Warning: every label in {labels_path} is the digit {digits[0]}: with "
                  "one digit every neighbour votes right, so the 5-NN accuracy would "
                  "be 1.000 and mean nothing; it is n/a")

        self.data = data_name_of(self.path, self.prefix)
        self.dims = int(np.prod(features.shape[1:]))
        self.images = self.decoder = None
        extras = self.explorer_files(args, len(features))
        for path in [self.path, labels_path, *extras]:
            check_same_run(path, self.prefix)

        self.count = len(features)
        keep = stratified_subsample(labels, args.max_points, args.seed)
        self.features, self.labels = features[keep], labels[keep]
        self.test_rows = keep  # each code's row in the test set, for the page
        if self.images is not None:
            self.images = self.images[keep]

    def explorer_files(self, args, count):
        """Load what --html and --projector show beside the map; return their paths.

        The test images, when the training run saved them; for the page of 2-D
        codes, the decoder that draws the latent plane.
        """
        found = []
        if args.html or args.projector:
            images_path = self.path.with_name(f"{self.prefix}_images.pickle")
            if images_path.exists():
                self.images = check_images(
                    load_pickle(images_path, max_bytes=IMAGES_MAX_BYTES), images_path,
                    count)
                found.append(images_path)
            else:
                shown = " and the ".join(name for name, wanted in (
                    ("page", args.html), ("projector files", args.projector)) if wanted)
                print(f"No {images_path.name} beside the features (an older training "
                      f"run): the {shown} will have no digit images; retrain to get "
                      "them")
        if args.html and self.dims == 2:
            decoder = self.path.with_name(f"{self.prefix}_decoder.keras")
            if decoder.exists():
                self.decoder = decoder
                found.append(decoder)
            else:
                print(f"No {decoder.name} beside the features: the page shows no plane "
                      "of decoded digits")
        return found

    def describe(self):
        """The shape of one code, e.g. '32-d' or '4x4x8 = 128-d'."""
        if self.features.ndim == 2:
            return f"{self.dims}-d"
        return "x".join(map(str, self.features.shape[1:])) + f" = {self.dims}-d"


def data_name_of(features_path, prefix):
    """The name of the data set the codes come from (``data.title_of`` and
    ``labels_of`` read it), as the run's metrics beside the features record it.

    A record from before data sets had names, or none at all, means MNIST: the only
    data set then; so does a name that is not a short line of text.
    """
    record = files.read_record(Path(features_path).with_name(f"{prefix}_metrics.json"))
    try:
        name = record["data"]["name"]
    except (KeyError, TypeError):
        return "mnist"
    if isinstance(name, str) and name.isprintable() and 0 < len(name) <= 100:
        return name
    return "mnist"


def check_same_run(path, prefix):
    """Refuse a file that its folder's run record says belongs to another run."""
    problem = files.set_problem(path, Path(path).parent, prefix)
    if problem:
        raise cli.UserError(problem)


def check_mappable(codes, perplexity, neighbours):
    """Refuse codes that cannot be mapped meaningfully, before any slow work.

    Codes that are all the same, or spread too little or too much for float32
    arithmetic, crash scikit-learn's t-SNE (some with a segmentation fault); with
    too few distinct codes, its perplexity and the nearest neighbours mean nothing.
    """
    where, rows = f"{codes.path}: ", codes.rows
    if len(rows) <= neighbours:
        raise cli.UserError(where + f"only {len(rows):,} codes: a vote of {neighbours} "
                            f"nearest neighbours needs at least {neighbours + 1} test "
                            "digits; was the model trained with --limit? Retrain "
                            "without it, or with a bigger one")
    distinct = len(np.unique(rows, axis=0))
    if distinct == 1:
        raise cli.UserError(where + f"all {len(rows):,} codes are identical (every "
                            "feature is constant): there is nothing to map; did the "
                            "model collapse?")
    if distinct <= neighbours:
        raise cli.UserError(where + f"only {distinct:,} distinct codes among "
                            f"{len(rows):,}: a vote of {neighbours} nearest neighbours "
                            f"needs at least {neighbours + 1}; did the model collapse?")
    if codes.dims != 2 and distinct <= perplexity:
        of = "" if distinct == len(rows) else f" (of {len(rows):,})"
        more = "" if of else " (or retrain without --limit, for more test digits)"
        raise cli.UserError(where + f"--perplexity {perplexity:g} needs more than "
                            f"{perplexity:g} distinct codes, there are {distinct:,}"
                            f"{of}; lower --perplexity{more}")
    spread = float(np.sqrt(np.mean(np.var(rows, axis=0, dtype=np.float64))))
    low, high = SPREAD_RANGE
    if spread < low:
        raise cli.UserError(where + f"the codes hardly differ (they spread "
                            f"{spread:.1e} about their mean, under {low:g}): too "
                            "little to measure distances in float32; did the model "
                            "collapse?")
    if spread > high:
        raise cli.UserError(where + f"the codes spread {spread:.1e} about their mean, "
                            f"over {high:g}: too far to measure distances in float32; "
                            "did training diverge?")


"""
## t-SNE: progress and cache

t-SNE takes tens of seconds for 10,000 points, so its result is kept next to the
features with a record of exactly what it was computed from: the sha256 of the
features and labels files and every setting. A retrained model writes new features,
the hash changes, and the map is recomputed: a stale picture is never shown.
"""


class _Progress(io.TextIOBase):
    """Turns scikit-learn's chatty verbose t-SNE log into a line per 100 iterations."""

    def __init__(self, max_iter, start):
        self.max_iter, self.start, self.pending = max_iter, start, ""
        self.out = sys.stdout  # the real one: this object replaces it while t-SNE runs

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            match = re.match(r"\[t-SNE\] Iteration (\d+):", line)
            if match and int(match[1]) % 100 == 0:
                print(f"  iteration {match[1]}/{self.max_iter}, "
                      f"{time.perf_counter() - self.start:.0f} s", file=self.out,
                      flush=True)
        return len(text)


@contextlib.contextmanager
def tsne_progress(tsne):
    """While ``tsne`` fits, print a line every 100 iterations, and the time taken."""
    tsne.set_params(verbose=2)
    start = time.perf_counter()
    with contextlib.redirect_stdout(_Progress(tsne.max_iter, start)):
        yield
    print(f"t-SNE done in {time.perf_counter() - start:.1f} s")


def cache_paths(codes):
    stem = codes.path.with_name(f"{codes.prefix}_tsne")
    return stem.with_suffix(".pickle"), stem.with_suffix(".json")


def cache_key(codes, settings):
    """What a cached map must match: the files it came from and every setting."""
    return {"features": codes.path.name, "features_sha256": codes.sha256,
            "labels_sha256": codes.labels_sha256,
            "settings": dict(settings, sklearn=version("scikit-learn"))}


def read_cache(codes, settings):
    """The cached (points, quality) if made from the same files and settings."""
    points_path, record_path = cache_paths(codes)
    try:
        record = json.loads(files.read_regular(record_path, CACHE_MAX_BYTES, "a record"))
        data = files.read_regular(points_path, CACHE_MAX_BYTES, "a t-SNE map")
    except (cli.UserError, ValueError):  # no cache, or not one we wrote: recompute
        return None
    key = cache_key(codes, settings)
    if not isinstance(record, dict) or \
            any(record.get(name) != value for name, value in key.items()):
        return None
    # The pickle is written before the record; its hash catches a pickle from a run
    # that was interrupted before it could write its record.
    if record.get("tsne_sha256") != hashlib.sha256(data).hexdigest():
        return None
    try:
        points = load_pickle(points_path, data)
    except cli.UserError:
        return None
    if not isinstance(points, np.ndarray) or points.shape != (len(codes.labels), 2):
        return None
    print(f"{codes.name}: using the cached t-SNE ({points_path.name}: same features, "
          "labels and settings)")
    quality = {name: record.get(name) for name in
               ("knn_accuracy", "trustworthiness", "trust_points")}
    return points, quality


def write_cache(codes, settings, points, quality):
    points_path, record_path = cache_paths(codes)
    try:
        files.save_pickle(points, points_path)
        record = dict(cache_key(codes, settings), **quality,
                      tsne_sha256=files.sha256(points_path))
        files.save_json(record, record_path)
    except OSError as error:
        print(f"Note: could not cache the t-SNE in {points_path.parent}/ "
              f"({error.strerror}); it will be recomputed next time")
        return
    print(f"Cached the t-SNE in {points_path.name} and {record_path.name}")


"""
## Reporting: the terminal, the figures' titles and layout, the table
"""


def fmt(value):
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def announce(codes, number, total):
    step = f"[{number}/{total}] " if total > 1 else ""
    print(f"{step}{codes.name}: {len(codes.labels):,} codes ({codes.describe()}) of "
          f"{title_of(codes.data)} from {codes.path}")
    if len(codes.labels) < codes.count:
        print(f"{codes.name}: a stratified sample of {len(codes.labels):,} of "
              f"{codes.count:,} codes (--max-points)")


def print_quality(codes, quality, neighbours):
    """The two figures in words, for the terminal."""
    print(f"{neighbours}-NN accuracy of the {codes.dims}-d codes (5-fold CV on "
          f"{len(codes.labels):,} test images): {fmt(quality['knn_accuracy'])}")
    if codes.dims == 2:
        print("Trustworthiness: n/a (2-D features plotted as is)")
    else:
        print(f"Trustworthiness of the t-SNE map ({neighbours} neighbours, "
              f"{quality['trust_points']:,} points): "
              f"{fmt(quality['trustworthiness'])}")


def figures_in_words(codes, quality, neighbours):
    knn = f"{neighbours}-NN accuracy {fmt(quality['knn_accuracy'])}"
    if codes.dims == 2:
        return knn, "trustworthiness n/a (2-D)"
    return knn, f"trustworthiness {fmt(quality['trustworthiness'])}"


def map_title(codes, quality, neighbours, compact):
    """A map's title: the model and its data set, how many codes, how it was drawn,
    its two figures."""
    knn, trust = figures_in_words(codes, quality, neighbours)
    count = f"{len(codes.labels):,}"
    method = "plotted as is" if codes.dims == 2 else "t-SNE"
    model = f"{codes.name} on {title_of(codes.data)}"
    if compact:
        return f"{model}\n{count} codes ({codes.describe()}), {method}\n" \
               f"{knn}, {trust}"
    if codes.dims == 2:
        return f"{model}: {count} test codes ({codes.describe()}) {method}\n" \
               f"{knn}  \u00b7  {trust}"
    return f"{model}: {method} of {count} test codes ({codes.describe()})\n" \
           f"{knn}  \u00b7  {trust}"


def print_table(panels, neighbours):
    """--all: one row per model with its two figures and its data set."""
    header = ("Model", "Code shape", "Dim", f"{neighbours}-NN accuracy",
              "Trustworthiness", "Data")
    table = [header]
    for codes, _, quality in panels:
        trust = "n/a (2-D, as is)" if codes.dims == 2 else \
            fmt(quality["trustworthiness"])
        table.append((codes.name, "x".join(map(str, codes.features.shape[1:])),
                      str(codes.dims), fmt(quality["knn_accuracy"]), trust,
                      title_of(codes.data)))
    print(f"\n{neighbours}-NN accuracy: 5-fold cross-validation on the test codes; "
          f"trustworthiness of the t-SNE map, {neighbours} neighbours:")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 or i == len(row) - 1 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    print()


def save_maps(panels, draw_map, colours, output, show):
    """One map per (codes, points, quality), four to a row, with a legend of labels.

    ``draw_map(ax, *panel, compact)`` draws one; ``colours`` is the labels'
    colormap. Models of MNIST and of Fashion-MNIST side by side get a column of
    the legend each: a colour means a digit in one, a class in the other.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    grid = len(panels) > 1
    size = (4.3 * columns + 1, 4.8 * rows) if grid else (8.5, 7)
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=size)
    for ax, panel in zip(axes.flat, panels):
        draw_map(ax, *panel, compact=grid)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    namings = {}  # (kind, names) -> the titles of the data sets named so
    for codes, _, _ in panels:
        namings.setdefault(labels_of(codes.data), {})[title_of(codes.data)] = None
    handles = []
    for (kind, names), titles in namings.items():
        if len(namings) > 1:  # a column each, headed by its data sets
            handles.append(Line2D([], [], linestyle="",
                                  label=f"{', '.join(titles)}: {kind}"))
        handles += [Line2D([], [], marker="o", linestyle="", markersize=7,
                           color=colours(label), label=name)
                    for label, name in enumerate(names)]
    title = next(iter(namings))[0] if len(namings) == 1 else None
    legend = fig.legend(handles=handles, title=title, ncols=len(namings),
                        loc="center right", frameon=False)
    if grid:
        fig.suptitle("Latent spaces of the test images", fontsize=14)
    # The maps keep their size; the figure widens for a legend wider than the
    # digits' (clothes' names, or a column per naming).
    margin = legend.get_window_extent().width / fig.dpi + 0.1
    fig.set_figwidth(fig.get_figwidth() + max(0.0, margin - 0.9))
    fig.tight_layout(rect=(0, 0, 1 - max(margin, 0.9) / fig.get_figwidth(), 1))
    figures.save_figure(fig, output, show)
    print(f"Wrote {output}")


"""
## The explorer: --html and --projector
"""


def explore(codes, points, quality, args, neighbours):
    """Write the interactive page and the projector files that were asked for."""
    if not (args.html or args.projector):
        return
    from plumbing import explorer  # only here: the page's VAE plane imports Keras

    if args.html:
        # Beside the PNG; with --all, beside each model's features.
        folder = png_path(args, codes).parent if args.all is None else Path(args.all)
        page = folder / f"{codes.prefix}_explorer.html"
        if codes.dims == 2:
            how = "codes plotted as they are"
        else:
            how = (f"t-SNE: perplexity {args.perplexity:g}, {args.max_iter} "
                   f"iterations, seed {args.seed}")
        caption = [f"{codes.name}: {len(codes.labels):,} test codes "
                   f"({codes.describe()}) of {title_of(codes.data)}",
                   *figures_in_words(codes, quality, neighbours), how]
        plane = None
        if codes.decoder:
            print(f"Decoding the latent plane with {codes.decoder.name}")
            plane = explorer.decode_plane(codes.decoder, points)
        with writing(page):
            explorer.write_page(page, title=f"{codes.name} on {title_of(codes.data)}: "
                                "latent space", points=points, labels=codes.labels,
                                images=codes.images, caption=caption, plane=plane,
                                rows=codes.test_rows, data_name=codes.data)
        print(f"Wrote {page}")
    if args.projector:
        # Every model into the one folder: TensorBoard reads a projector config only
        # there (or beside event files), and lists the models in its tensor menu.
        folder = Path(args.projector)
        with writing(folder):
            explorer.write_projector(folder, name=codes.prefix, codes=codes.rows,
                                     labels=codes.labels, images=codes.images,
                                     data_name=codes.data)
        print(f"Wrote the Embedding Projector files in {folder}/")


@contextlib.contextmanager
def writing(path):
    """A write into ``path`` that fails (a full disk, say) is a one-line error."""
    try:
        yield
    except OSError as error:
        raise cli.UserError(f"{path}: cannot write it ({error.strerror or error})") \
            from None
