"""
Title: Seeing a latent space: t-SNE maps of the saved codes
Description: Plot any saved features pickle as a 2-D map of the test digits, measure how
well it separates them, and compare the models side by side.

Every training script saves the bottleneck codes of the test digits as
`<prefix>_features.pickle` (and their digits as `<prefix>_labels.pickle`). This script
squeezes those codes into two dimensions with t-SNE, colours every test image by its
digit, and prints two numbers that say more than the colours: how often a digit's five
nearest neighbours in the code space share its label, and how faithfully the 2-D map
keeps those neighbourhoods.

    python visualize_latent_space.py features/deep_autoe_features.pickle
    python visualize_latent_space.py features/conv_autoe_features.pickle --perplexity 50
    python visualize_latent_space.py features/variational_autoe_features.pickle --show
    python visualize_latent_space.py --all                  # every model in features/
    python visualize_latent_space.py --all runs/ --output comparison.png

A single file gives `<prefix>_tsne.png` next to the features (`<prefix>_latent_2d.png`
for the VAEs' 2-D codes, which need no t-SNE); `--all` gives `all_latent_spaces.png`.
The t-SNE is cached as `<prefix>_tsne.pickle` and `<prefix>_tsne.json` and recomputed
whenever the features, the labels or the settings change.
"""

"""
## Setup

The script needs none of Keras, but `common` (the plumbing shared with the training
scripts) imports it. Run as a script, we pick Keras' numpy backend: it imports in half
the time of TensorFlow and prints none of its start-up chatter, so an error stays one
line. Imported as a module (benchmarks/run_all.py uses `knn_accuracy` and
`load_array`), the caller's backend is left alone.
"""

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import re
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    # No model runs here: Keras (imported by common) needs no TensorFlow, which would
    # cost seconds of start-up and print its log lines around our one-line errors.
    os.environ["KERAS_BACKEND"] = "numpy"

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE, trustworthiness  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import common  # noqa: E402

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
NEIGHBOURS = 5  # for both quality figures: kNN accuracy and trustworthiness

# t-SNE settings, chosen by measurement on 2 cores (10,000 test codes; trustworthiness
# of the map, then seconds): scikit-learn's defaults, TSNE(), gave 0.9967 in 46 s on
# the simple autoencoder's 32-d codes and 0.9878 in 53 s on the denoiser's 1568-d
# ones. Half the iterations (500 instead of 1,000) and a coarser Barnes-Hut
# approximation of the far-away points (angle 0.8 instead of 0.5) gave 0.9957 in 16 s
# and, with the 1568-d codes first reduced to 50 by PCA (as scikit-learn's
# documentation recommends for wide data), 0.9855 in 17 s (21 s without PCA):
# three times faster, and no map more than 0.003 less trustworthy. More jobs for the
# neighbour search (n_jobs=-1) saved nothing; 350 iterations lost 0.007.
DEFAULT_MAX_ITER = 500
ANGLE = 0.8
PCA_DIMS = 50
# sklearn.manifold.trustworthiness compares full N x N distance matrices (about 2 GB
# for 10,000 points). Beyond this many points it runs on a stratified subsample.
TRUST_MAX_POINTS = 10_000


def idle_cores():
    """How many CPU cores no other program is busy with, judged by the load average.

    t-SNE's gradient runs in lock-step on every thread it is given: when another
    program (a training run, say) holds a core, each of the hundreds of steps waits for
    the thread that shares it. Measured on 2 cores beside a training run: 500 points
    took 19 s on 2 threads and 1 s on one; 10,000 points 43 s and 27 s.
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


"""
## Loading pickles safely

`pickle.load` runs whatever a pickle tells it to: a file can call `os.system` as it
loads. Our features are only ever numpy arrays, so this unpickler admits the handful of
numpy functions that rebuild an array and refuses every other import before it happens.
Plain numbers, lists, tuples and strings need no import and load as usual.
"""

ARRAY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),  # protocols 0-4
    ("numpy._core.numeric", "_frombuffer"),      # protocol 5
    ("numpy._core.multiarray", "scalar"),        # numpy scalars such as np.float32(1)
    ("_codecs", "encode"),                       # bytes in protocol 2 pickles
}


class RefusedPickle(pickle.UnpicklingError):
    pass


class ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # numpy 2 renamed numpy.core to numpy._core; older files use the old name.
        if (module.replace("numpy.core.", "numpy._core."), name) not in ARRAY_GLOBALS:
            raise RefusedPickle(f"{module}.{name}")
        return super().find_class(module, name)


def load_pickle(path, data=None):
    """Unpickle ``path`` (or its bytes ``data``) allowing numpy arrays only."""
    path = Path(path)
    if data is None:
        data = read_bytes(path)
    if not data:
        raise common.UserError(f"{path}: empty file, expected a pickled numpy array")
    try:
        return ArrayUnpickler(io.BytesIO(data)).load()
    except RefusedPickle as error:
        raise common.UserError(
            f"{path}: refused to load: the pickle would import {error}, and only numpy "
            "arrays are allowed (a pickle can run code as it loads)") from None
    except Exception as error:  # noqa: BLE001 - any malformed input is the file's fault
        if isinstance(error, EOFError) or "truncated" in str(error):
            raise common.UserError(f"{path}: truncated pickle (the file ends too "
                                   "early)") from None
        reason = " ".join(str(error).split())  # some messages span two lines
        raise common.UserError(f"{path}: not a pickled numpy array "
                               f"({type(error).__name__}: {reason})") from None


def load_array(path):
    """A numpy array from a pickle, loaded safely; any problem is a UserError."""
    array = load_pickle(path)
    if not isinstance(array, np.ndarray):
        raise common.UserError(f"{path}: contains a {type(array).__name__}, expected a "
                               "numpy array")
    return array


def read_bytes(path):
    path = Path(path)
    if path.is_dir():
        raise common.UserError(f"{path}: is a directory, expected a .pickle file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise common.UserError(f"{path}: no such file") from None
    except OSError as error:
        raise common.UserError(f"{path}: cannot read it ({error.strerror})") from None


"""
## Checking the inputs

Features arrive in their natural shape: N x 32 for the dense models, N x 4 x 4 x 8 or
N x 7 x 7 x 32 for the convolutional ones, N x 2 for the VAEs. t-SNE and kNN want one
flat row per image, so every code is flattened (4 x 4 x 8 -> 128 numbers).
"""


def check_features(array, path):
    """Return the features as float32 rows (N, D); every problem is a UserError."""
    if isinstance(array, np.generic):  # a numpy scalar, e.g. np.float32(1.5)
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise common.UserError(f"{path}: contains a {type(array).__name__}, expected a "
                               "numpy array of features")
    if array.ndim == 0:
        raise common.UserError(f"{path}: a 0-d array (a single number), expected one "
                               "row of features per image")
    if array.ndim == 1:
        raise common.UserError(f"{path}: a 1-d array of shape {array.shape}, expected "
                               "one row of features per image (labels by mistake?)")
    if array.size == 0:
        raise common.UserError(f"{path}: empty array of shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise common.UserError(f"{path}: array of dtype {array.dtype}, expected "
                               "numbers")
    rows = array.reshape(len(array), -1).astype(np.float32)
    bad = np.count_nonzero(~np.isfinite(rows))
    if bad:
        raise common.UserError(f"{path}: {bad:,} non-finite values (NaN or inf) in the "
                               "features; did training diverge?")
    return rows


def check_labels(array, path, count, features_path):
    """Return the labels as int64 (N,), one digit 0-9 per row of features."""
    if not isinstance(array, np.ndarray):
        raise common.UserError(f"{path}: contains a {type(array).__name__}, expected a "
                               "numpy array of labels")
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise common.UserError(f"{path}: labels of shape {array.shape} and dtype "
                               f"{array.dtype}, expected integer digits of shape (N,)")
    if len(array) != count:
        raise common.UserError(f"{path}: {len(array):,} labels for {count:,} rows of "
                               f"features in {features_path}")
    if array.min() < 0 or array.max() >= DIGITS:
        raise common.UserError(f"{path}: labels outside the digits 0-9")
    return array.astype(np.int64)


def labels_path_for(features_path):
    if not features_path.name.endswith(FEATURES_SUFFIX):
        raise common.UserError(f"{features_path}: cannot tell where its labels are "
                               f"(the name does not end in {FEATURES_SUFFIX}); pass "
                               "--labels PATH")
    return features_path.with_name(prefix_of(features_path) + "_labels.pickle")


def prefix_of(features_path):
    name = features_path.name
    if name.endswith(FEATURES_SUFFIX):
        return name[:-len(FEATURES_SUFFIX)]
    return features_path.stem


class Codes:
    """One features file, checked: its rows, original shape, labels and file hashes."""

    def __init__(self, features_path, labels_path=None):
        self.path = Path(features_path)
        self.prefix = prefix_of(self.path)
        self.name = MODEL_NAMES.get(self.prefix, self.prefix)
        data = read_bytes(self.path)
        array = load_pickle(self.path, data)
        self.rows = check_features(array, self.path)
        self.shape = array.shape[1:]
        self.sha256 = hashlib.sha256(data).hexdigest()

        hint = "" if labels_path else "; pass --labels PATH"
        labels_path = Path(labels_path) if labels_path else labels_path_for(self.path)
        if not labels_path.exists():
            raise common.UserError(f"{labels_path}: no such file (the labels for "
                                   f"{self.path}{hint})")
        data = read_bytes(labels_path)
        self.labels = check_labels(load_pickle(labels_path, data), labels_path,
                                   len(self.rows), self.path)
        self.labels_sha256 = hashlib.sha256(data).hexdigest()

    @property
    def is_2d(self):
        return self.rows.shape[1] == 2

    def describe(self):
        """The shape of one code, e.g. '32-d' or '4x4x8 = 128-d'."""
        dims = f"{self.rows.shape[1]}-d"
        if len(self.shape) == 1:
            return dims
        return "x".join(str(n) for n in self.shape) + " = " + dims


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


"""
## Two numbers that describe a latent space

A map is easy to over-read, so we measure two things:

* **kNN accuracy**: classify each test digit by a vote of its 5 nearest neighbours in
  the code space (raw, unscaled codes, 5-fold stratified cross-validation within the
  test set). High accuracy means digits of a kind sit together in the codes
  themselves, before any t-SNE. Chance is about 0.1.
* **Trustworthiness** of the 2-D map (1.0 is perfect): are the 5 nearest neighbours of
  a point on the map also near it in the code space? It tells how far the picture can
  be trusted. 2-D codes are plotted as they are, so there is nothing to measure.
"""


def knn_accuracy(features, labels, folds=5):
    """Mean 5-fold cross-validated accuracy of a 5-nearest-neighbour classifier.

    ``features`` may have any shape with one entry per image; they are flattened per
    row. Returns NaN when a digit has too few examples to cross-validate.
    """
    features = np.asarray(features, dtype=np.float32)
    features = features.reshape(len(features), -1)
    labels = np.asarray(labels)
    counts = np.unique(labels, return_counts=True)[1]
    folds = min(folds, counts.min()) if counts.size else 0  # every digit in each fold
    if folds < 2 or len(labels) * (folds - 1) // folds < NEIGHBOURS:
        return float("nan")
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=NEIGHBOURS), features,
                             labels, cv=StratifiedKFold(n_splits=folds))
    return float(scores.mean())


def map_trustworthiness(rows, points, labels, seed):
    """Trustworthiness of ``points`` (2-D) as a map of ``rows`` and how many it used."""
    keep = stratified_subsample(labels, TRUST_MAX_POINTS, seed)
    if len(keep) <= 2 * NEIGHBOURS:
        return float("nan"), len(keep)
    return float(trustworthiness(rows[keep], points[keep], n_neighbors=NEIGHBOURS)), \
        len(keep)


"""
## t-SNE, cached

t-SNE places similar codes close together on a plane. It is slow (tens of seconds for
10,000 points), so the result is kept next to the features with a record of exactly
what it was computed from: the sha256 of the features and labels files and every
setting. A retrained model writes new features, the hash changes, and the map is
recomputed: a stale picture is never shown.
"""


def tsne_settings(args):
    return {
        "perplexity": args.perplexity,
        "seed": args.seed,
        "max_points": args.max_points,
        "max_iter": args.max_iter,
        "init": "pca",
        "angle": ANGLE,
        "pca_dims_above": PCA_DIMS,
        "trust_max_points": TRUST_MAX_POINTS,
        "sklearn": sklearn.__version__,
    }


class TsneProgress(io.TextIOBase):
    """Turns scikit-learn's chatty verbose t-SNE log into a line per 100 iterations."""

    def __init__(self, max_iter):
        self.max_iter, self.start, self.pending = max_iter, time.perf_counter(), ""
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


def run_tsne(rows, settings, threads=None):
    """The 2-D t-SNE map of ``rows`` (float32), printing progress while it runs.

    The map does not depend on ``threads`` (each thread computes whole points), so the
    thread count is not part of the cache's record.
    """
    n, dims = rows.shape
    if n <= settings["perplexity"]:
        raise common.UserError(f"--perplexity {settings['perplexity']:g} needs more "
                               f"than {settings['perplexity']:g} points; there are {n}")
    inputs = rows
    if dims > PCA_DIMS and n > PCA_DIMS:
        inputs = PCA(n_components=PCA_DIMS, random_state=settings["seed"]) \
            .fit_transform(rows)
        print(f"PCA: {dims} -> {PCA_DIMS} dimensions before t-SNE")
    on = f" on {threads} thread{'s' if threads > 1 else ''}" if threads else ""
    print(f"t-SNE of {n:,} points x {inputs.shape[1]} dims{on} (perplexity "
          f"{settings['perplexity']:g}, {settings['max_iter']} iterations, seed "
          f"{settings['seed']})", flush=True)
    tsne = TSNE(
        n_components=2,
        perplexity=settings["perplexity"],
        max_iter=settings["max_iter"],
        init="pca",
        learning_rate="auto",
        angle=settings["angle"],
        random_state=settings["seed"],
        verbose=2,
    )
    start = time.perf_counter()
    with contextlib.redirect_stdout(TsneProgress(settings["max_iter"])):
        points = tsne.fit_transform(inputs).astype(np.float32)
    print(f"t-SNE done in {time.perf_counter() - start:.1f} s")
    return points


def cache_paths(codes):
    stem = codes.path.with_name(f"{codes.prefix}_tsne")
    return stem.with_suffix(".pickle"), stem.with_suffix(".json")


def read_cache(codes, key, expected_points):
    """The cached map and its record if they match ``key`` exactly, else None."""
    points_path, record_path = cache_paths(codes)
    try:
        record = json.loads(record_path.read_text())
        data = points_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or \
            any(record.get(name) != value for name, value in key.items()):
        return None
    # The pickle is written before the record; its hash catches a pickle from a run
    # that was interrupted before it could write its record.
    if record.get("tsne_sha256") != hashlib.sha256(data).hexdigest():
        return None
    try:
        points = load_pickle(points_path, data)
    except common.UserError:
        return None
    if not isinstance(points, np.ndarray) or points.shape != (expected_points, 2):
        return None
    return points, record


def write_cache(codes, key, points, quality):
    points_path, record_path = cache_paths(codes)
    try:
        common.save_pickle(points, points_path)
        record = dict(key, **quality,
                      tsne_sha256=hashlib.sha256(points_path.read_bytes()).hexdigest())
        common.save_json(record, record_path)
    except OSError as error:
        print(f"Note: could not cache the t-SNE in {points_path.parent}/ "
              f"({error.strerror}); it will be recomputed next time")
        return
    print(f"Cached the t-SNE in {points_path.name} and {record_path.name}")


def latent_map(codes, args):
    """Points to plot, their labels and quality figures for one features file.

    2-D codes are plotted as they are; wider ones go through t-SNE, or come from the
    cache when nothing changed.
    """
    print(f"{codes.name}: {len(codes.rows):,} codes ({codes.describe()}) from "
          f"{codes.path}")
    keep = stratified_subsample(codes.labels, args.max_points, args.seed)
    rows, labels = codes.rows[keep], codes.labels[keep]
    if len(keep) < len(codes.rows):
        print(f"{codes.name}: a stratified sample of {len(keep):,} of "
              f"{len(codes.rows):,} codes (--max-points)")

    if codes.is_2d:
        quality = {"knn_accuracy": knn_accuracy(rows, labels), "trustworthiness": None,
                   "trust_points": 0, "points": len(rows), "cached": False}
        return rows, labels, quality

    key = {"features": codes.path.name, "features_sha256": codes.sha256,
           "labels_sha256": codes.labels_sha256, "settings": tsne_settings(args)}
    cached = None if args.no_cache else read_cache(codes, key, len(rows))
    if cached is not None:
        points, record = cached
        print(f"{codes.name}: using the cached t-SNE ({cache_paths(codes)[0].name}: "
              "same features, labels and settings)")
        quality = {name: record.get(name) for name in
                   ("knn_accuracy", "trustworthiness", "trust_points")}
        return points, labels, dict(quality, points=len(rows), cached=True)

    points = run_tsne(rows, key["settings"], args.threads)
    trust, trust_points = map_trustworthiness(rows, points, labels, args.seed)
    quality = {"knn_accuracy": knn_accuracy(rows, labels), "trustworthiness": trust,
               "trust_points": trust_points}
    write_cache(codes, key, points, quality)
    return points, labels, dict(quality, points=len(rows), cached=False)


def quality_lines(codes, quality):
    """The two figures in words, for the terminal."""
    knn = quality["knn_accuracy"]
    lines = [f"5-NN accuracy of the {codes.rows.shape[1]}-d codes (5-fold CV on "
             f"{quality['points']:,} test digits): {fmt(knn)}"]
    if codes.is_2d:
        lines.append("Trustworthiness: n/a (2-D features plotted as is)")
    else:
        lines.append(f"Trustworthiness of the t-SNE map ({NEIGHBOURS} neighbours, "
                     f"{quality['trust_points']:,} points): "
                     f"{fmt(quality['trustworthiness'])}")
    return lines


def fmt(value):
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


"""
## Drawing

One scatter call for all digits, in a shuffled order: plotting digit by digit would
paint the 9s over everything else. The legend is built by hand so that it shows the
ten digits as ten discrete colours.
"""


def draw_map(ax, codes, points, labels, quality, *, compact=False):
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colours = ListedColormap(plt.get_cmap("tab10").colors[:DIGITS])
    order = np.random.default_rng(0).permutation(len(points))
    size = float(np.clip(30_000 / len(points), 1, 20))
    ax.scatter(points[order, 0], points[order, 1], c=labels[order], s=size,
               cmap=colours, norm=BoundaryNorm(np.arange(DIGITS + 1) - 0.5, DIGITS),
               linewidths=0, alpha=0.8)
    if codes.is_2d:
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
        method = "plotted as is"
        trust = "trustworthiness n/a (2-D)"
    else:
        ax.set_xticks([])  # t-SNE axes have no meaning, only neighbourhoods do
        ax.set_yticks([])
        method = "t-SNE"
        trust = f"trustworthiness {fmt(quality['trustworthiness'])}"
    knn = f"5-NN accuracy {fmt(quality['knn_accuracy'])}"
    if compact:
        ax.set_title(f"{codes.name}\n{len(points):,} codes ({codes.describe()}), "
                     f"{method}\n{knn}, {trust}", fontsize=10)
    elif codes.is_2d:
        ax.set_title(f"{codes.name}: {len(points):,} test codes "
                     f"({codes.describe()}) {method}\n{knn}  \u00b7  {trust}")
    else:
        ax.set_title(f"{codes.name}: {method} of {len(points):,} test codes "
                     f"({codes.describe()})\n{knn}  \u00b7  {trust}")
    return colours


def digit_legend(colours):
    from matplotlib.lines import Line2D

    return [Line2D([], [], marker="o", linestyle="", markersize=7, color=colours(d),
                   label=str(d)) for d in range(DIGITS)]


def plot_one(codes, points, labels, quality, output, show):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 7))
    colours = draw_map(ax, codes, points, labels, quality)
    ax.legend(handles=digit_legend(colours), title="digit", loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
    save_png(fig, output, show)


def plot_grid(panels, output, show):
    import matplotlib.pyplot as plt

    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(4.3 * columns + 1, 4.8 * rows))
    for ax, panel in zip(axes.flat, panels):
        colours = draw_map(ax, *panel, compact=True)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.legend(handles=digit_legend(colours), title="digit", loc="center right",
               frameon=False)
    fig.suptitle("Latent spaces of the test digits", fontsize=14)
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))
    save_png(fig, output, show)


def save_png(fig, output, show):
    try:
        common.save_figure(fig, output, show)
    except OSError as error:
        raise common.UserError(f"{output}: cannot write the figure "
                               f"({error.strerror})") from None


"""
## Comparing every model

`--all` finds every `*_features.pickle` in a directory, checks them all before any
slow work starts, and draws one panel per model in the order of the tutorial.
"""


def find_features(directory):
    directory = Path(directory)
    if not directory.exists():
        raise common.UserError(f"--all {directory}: no such directory")
    if not directory.is_dir():
        raise common.UserError(f"--all {directory}: not a directory (to plot one file, "
                               "leave out --all)")
    try:
        paths = [p for p in directory.iterdir() if p.name.endswith(FEATURES_SUFFIX)
                 and not p.name.startswith(".")]
    except OSError as error:
        raise common.UserError(f"--all {directory}: cannot read it "
                               f"({error.strerror})") from None
    if not paths:
        raise common.UserError(f"--all {directory}: no *{FEATURES_SUFFIX} files; run a "
                               "training script first")
    known = list(MODEL_NAMES)

    def order(path):
        prefix = prefix_of(path)
        return (known.index(prefix), "") if prefix in known else (len(known), prefix)

    return sorted(paths, key=order)


def print_table(rows):
    header = ("Model", "Code shape", "Dim", "5-NN accuracy", "Trustworthiness")
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


"""
## Command line
"""


def at_least_250(text):
    value = int(text)
    if value < 250:  # scikit-learn's minimum: 250 iterations are early exaggeration
        raise argparse.ArgumentTypeError(f"must be at least 250, got {text}")
    return value


def make_parser():
    parser = common.ArgumentParser(
        description="Plot a features pickle as a 2-D map of the test digits (t-SNE, "
                    "or the codes themselves when they are 2-D), with two quality "
                    "figures: 5-NN accuracy and trustworthiness. --all compares every "
                    "model in one figure.",
    )
    parser.add_argument("features", nargs="?", metavar="FEATURES",
                        help="a <prefix>_features.pickle written by a training script "
                             "(leave it out with --all)")
    parser.add_argument("--all", nargs="?", const=common.DEFAULT_OUT_DIR, default=None,
                        metavar="DIR",
                        help="plot every *_features.pickle in DIR "
                             f"({common.DEFAULT_OUT_DIR}/ if DIR is left out) as one "
                             "figure with a panel per model, and print a table of the "
                             "quality figures")
    parser.add_argument("--labels", metavar="PATH", default=None,
                        help="the labels pickle (default: <prefix>_labels.pickle "
                             "beside the features)")
    parser.add_argument("--output", metavar="PATH", default=None,
                        help="the PNG to write (default: <prefix>_tsne.png beside the "
                             "features, <prefix>_latent_2d.png for 2-D codes, or "
                             "DIR/all_latent_spaces.png with --all)")
    parser.add_argument("--perplexity", type=common.positive_float, default=30.0,
                        metavar="P",
                        help="t-SNE's effective number of neighbours per point: larger "
                             "values favour global structure (default: %(default)s)")
    parser.add_argument("--max-iter", type=at_least_250, default=DEFAULT_MAX_ITER,
                        metavar="N",
                        help="t-SNE iterations: 500 give maps as trustworthy as "
                             "scikit-learn's 1000, see the comment on DEFAULT_MAX_ITER "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1337,
                        help="random seed of t-SNE and of --max-points sampling: the "
                             "same seed gives the same picture (default: %(default)s)")
    parser.add_argument("--max-points", type=common.positive_int, default=None,
                        metavar="N",
                        help="plot a stratified sample of N test digits, for speed "
                             "(default: all of them)")
    parser.add_argument("--threads", type=common.positive_int, default=idle_cores(),
                        metavar="N",
                        help="CPU threads for t-SNE and the quality figures; the "
                             "default is the number of cores idle now (by the load "
                             "average, %(default)s now), as busy cores slow t-SNE "
                             "down badly")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute the t-SNE even if a matching cached one exists")
    parser.add_argument("--show", action="store_true",
                        help="also open the figure in a window (it is always saved)")
    return parser


def plot_file(args):
    codes = Codes(args.features, args.labels)
    points, labels, quality = latent_map(codes, args)
    for line in quality_lines(codes, quality):
        print(line)
    suffix = "_latent_2d.png" if codes.is_2d else "_tsne.png"
    output = args.output or codes.path.with_name(codes.prefix + suffix)
    plot_one(codes, points, labels, quality, output, args.show)


def plot_all(args):
    # Every file is loaded and checked first: a bad one fails in a second, not after
    # minutes of t-SNE on the others.
    all_codes = [Codes(path) for path in find_features(args.all)]
    panels, table = [], []
    for codes in all_codes:
        points, labels, quality = latent_map(codes, args)
        panels.append((codes, points, labels, quality))
        trust = "n/a (2-D, as is)" if codes.is_2d else fmt(quality["trustworthiness"])
        table.append((codes.name, "x".join(map(str, codes.shape)),
                      str(codes.rows.shape[1]), fmt(quality["knn_accuracy"]), trust))
    print(f"\n5-NN accuracy: 5-fold cross-validation on the test codes; "
          f"trustworthiness of the t-SNE map, {NEIGHBOURS} neighbours:")
    print_table(table)
    print()
    output = args.output or Path(args.all) / "all_latent_spaces.png"
    plot_grid(panels, output, args.show)


def main(argv=None):
    args = make_parser().parse_args(argv)
    if (args.features is None) == (args.all is None):
        raise common.UserError("give one FEATURES pickle or --all [DIR]")
    if args.all is not None and args.labels:
        raise common.UserError("--labels goes with one FEATURES pickle, not --all")
    if not args.show:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, nothing blocks
    with threadpool_limits(limits=args.threads):
        plot_file(args) if args.all is None else plot_all(args)
    common.show_figures(args.show)


if __name__ == "__main__":
    common.main_guard(main)
