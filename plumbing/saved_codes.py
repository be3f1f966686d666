"""One model's saved codes for the visualiser: found, loaded safely and checked.

A training run leaves ``<prefix>_features.pickle`` (the test digits' codes), its
``_labels.pickle``, and for the explorer its ``_images.pickle`` and, for the VAEs,
``_decoder.keras``. ``Codes`` reads them through ``loading`` (bounded, arrays only),
makes sure they come from one run (``files.set_problem``), and ``check_mappable``
refuses codes that no map could show before any slow work.
"""

import hashlib
from pathlib import Path

import numpy as np

from plumbing import cli, files, loading, modelfile
from plumbing.safe_text import shown

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
# Codes whose spread (RMS distance from their mean) lies outside this range cannot be
# compared in float32: squared distances underflow to 0 or overflow to inf, and
# scikit-learn's t-SNE then crashes (a segmentation fault for the tiny ones). The
# bounds keep a wide margin inside the range where it works.
SPREAD_RANGE = (1e-15, 1e15)


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
        data = loading.read_bytes(self.path, loading.FEATURES_MAX_BYTES)
        features = loading.check_features(loading.load_pickle(self.path, data),
                                          self.path)
        self.sha256 = hashlib.sha256(data).hexdigest()

        hint = "" if args.labels else "; pass --labels PATH"
        labels_path = Path(args.labels) if args.labels else labels_path_for(self.path)
        if not labels_path.exists():
            raise cli.UserError(f"{labels_path}: no such file (the labels for "
                                f"{self.path}{hint})")
        data = loading.read_bytes(labels_path, loading.LABELS_MAX_BYTES)
        labels = loading.check_labels(loading.load_pickle(labels_path, data),
                                      labels_path, len(features), self.path)
        self.labels_sha256 = hashlib.sha256(data).hexdigest()
        digits = np.unique(labels)
        if len(digits) == 1:
            print(f"Warning: every label in {shown(labels_path)} is the digit "
                  f"{digits[0]}: with one digit every neighbour votes right, so the "
                  "5-NN accuracy would be 1.000 and mean nothing; it is n/a")

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
                self.images = loading.check_images(
                    loading.load_pickle(images_path,
                                        max_bytes=loading.IMAGES_MAX_BYTES),
                    images_path, count)
                found.append(images_path)
            else:
                outputs = " and the ".join(name for name, wanted in (
                    ("page", args.html), ("projector files", args.projector)) if wanted)
                print(f"No {shown(images_path.name)} beside the features (an older "
                      f"training run): the {outputs} will have no digit images; "
                      "retrain to get them")
        if args.html and self.dims == 2:
            decoder = self.path.with_name(f"{self.prefix}_decoder.keras")
            if decoder.exists():
                # Before its run record hashes it: a pipe or a device would hang
                # that read, or never end it.
                loading.check_decoder(decoder)
                self.decoder = decoder
                found.append(decoder)
            else:
                print(f"No {shown(decoder.name)} beside the features: the page shows "
                      "no plane of decoded digits")
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
    """Refuse a file that its folder's run record says belongs to another run (a
    saved model inspected as a zip first, before it is hashed or read)."""
    if Path(path).suffix == ".keras":
        modelfile.check_keras_file(path)
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
