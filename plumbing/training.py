"""What the training scripts share once Keras is loaded: ``Run``, one object for a
run's chores (setting up from its recipe, the callbacks that time and guard
training, TensorBoard's run folders, saving a run's outputs as one set).

The lessons (the model, the optimizer and its schedule, ``compile``, ``fit``,
``predict``) stay in the scripts; this module only does the chores around them. It
imports Keras.
"""

import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from plumbing import backend, cli, data, figures
from plumbing.data import IMAGE_SHAPE
from plumbing.files import OutputSet, check_staging, read_record, save_pickle
from plumbing.precision import (choose_precision, describe_execution,
                                execution_settings, float32_model)

keras = backend.import_keras()

RECIPE_OPTIONS = cli.RECIPE_OPTIONS


# --------------------------------------------------------------------------------------
# A run: its setup and its chores
# --------------------------------------------------------------------------------------


class Run:
    """One training run's chores, so that the lesson keeps only what it teaches.

    Made once the options are read: it fills in the chosen recipe, checks --data
    and --out-dir (before an hour of training, not after), seeds every random
    number generator, picks the precision and says what will run. Then it holds
    what the lesson hands to Keras (the timer, the divergence guard, TensorBoard's
    folder, the progress bar's verbosity, the compile options that depend on the
    backend) and saves the run's outputs as one set.

    ``recipes`` maps "ours" and "tutorial" to dicts of RECIPE_OPTIONS, and may
    say ``mixed_precision_on_cpu=True``: the model trains faster in bfloat16 on a
    CPU that has bfloat16 instructions (plumbing.precision says which do).
    """

    def __init__(self, args, recipes, prefix):
        self.args, self.prefix = fill_in_recipe(args, recipes), prefix
        data.fetch(args.data)  # a data set that cannot be had: said before any folder
        cli.check_output_dir(args.out_dir)
        check_staging(args.out_dir)  # something in the way of saving: said now
        keras.utils.set_random_seed(args.seed)
        on_cpu = recipes[args.recipe].get("mixed_precision_on_cpu", False)
        args.precision, why = choose_precision(args.precision, on_cpu=on_cpu)
        keras.config.set_dtype_policy(args.precision)
        figures.use_window(args.show)
        self.execution = execution_settings(keras)
        print(f"Keras {keras.__version__} on the {keras.backend.backend()} backend "
              f"({describe_execution(self.execution)}), seed {args.seed}, "
              f"{args.precision} ({why})")
        warmup = f", warmed up over {_epochs(args.warmup)}" if args.warmup else ""
        decay = "cosine decay" if args.schedule == "cosine" else "constant"
        print(f"Recipe ({args.recipe}): {_epochs(args.epochs)}, batches of "
              f"{args.batch_size}, {args.optimizer} at {args.learning_rate:g}"
              f"{warmup}, {decay}")
        self.timer, self.guard = EpochTimer(), None
        # A progress bar in a terminal or a notebook; one line per epoch in a log
        # file or CI.
        self.verbose = 1 if sys.stdout.isatty() or cli.in_notebook() else 2

    def jit_compile(self, draws_random_numbers=False):
        """``compile``'s jit_compile for a small dense model: XLA on TensorFlow.

        Keras leaves XLA off for TensorFlow without a GPU, but for a few Dense
        layers it fuses each layer's matmul, bias, activation and gradient into a
        few kernels. (It made the conv models slower, which is why they do not ask
        for it; ``draws_random_numbers`` spares the MLP VAE's coin flips, as XLA on
        a CPU draws random numbers slowly.) Elsewhere Keras' own choice ("auto"):
        JAX always compiles with XLA, PyTorch does not. results/tuning.md has the
        measurements.
        """
        if keras.backend.backend() == "tensorflow":
            return not draws_random_numbers
        return "auto"

    def steps_per_execution(self, steps_per_epoch, wanted=32):
        """``compile``'s steps_per_execution for a small dense model.

        A dense model's step takes about as long as Keras' per-step Python work,
        and 32 steps per call pay for that once; never more than an epoch has, or
        the progress bar would count past the epoch. PyTorch runs one step per call.
        """
        if keras.backend.backend() == "torch":
            return 1
        return max(1, min(wanted, steps_per_epoch))

    def divergence_guard(self, x, y):
        """The callback that stops a diverging run, measuring on (x, y)."""
        self.guard = DivergenceGuard((x, y), self.args.batch_size)
        return self.guard

    def make_log_dir(self):
        """A new, empty folder for this run's TensorBoard logs (``log_dir``)."""
        return log_dir(self.args, self.prefix)

    def save(self, *, encoder, decoder, codes, labels, images, data_info, history,
             plots, **measurements):
        """The run's outputs as one set (``save_outputs``); returns the record."""
        return save_outputs(self.args, self.prefix, encoder=encoder, decoder=decoder,
                            codes=codes, labels=labels, images=images,
                            data_info=data_info, history=history, timer=self.timer,
                            guard=self.guard, plots=plots, execution=self.execution,
                            **measurements)

    def compare_with(self, other):
        """The other model's mean code activation and test reconstruction loss."""
        compare_with(self.args, other)

    def show_figures(self):
        """Open the figures in windows, with --show."""
        figures.show_figures(self.args.show)


def fill_in_recipe(args, recipes):
    """Each training option not given on the command line takes the chosen recipe's
    value; --warmup is checked against --epochs."""
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
    return args


def _epochs(n):
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def log_dir(args, prefix):
    """A new, empty folder for this run's TensorBoard logs: DIR/logs/<prefix>/<time>.

    One folder per run, so that reruns never mix and ``tensorboard --logdir
    DIR/logs`` shows every run of every model side by side. Made just before
    ``fit``, so a run refused earlier leaves none. Only real folders inside
    --out-dir are used: a link planted at ``logs`` or ``<prefix>`` is refused.
    """
    parent = Path(args.out_dir)
    for part in ("logs", prefix):
        parent = parent / part
        if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
            raise cli.UserError(f"{parent}: not a folder; TensorBoard's logs go in "
                                "a folder of that name (or use --no-logs)")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 100):
            run = parent / (stamp if attempt == 1 else f"{stamp}_{attempt}")
            try:
                run.mkdir()
                return str(run)
            except FileExistsError:
                continue
    except OSError as error:
        raise cli.UserError(f"cannot make a folder for TensorBoard's logs in {parent} "
                            f"({error.strerror or error}); or use --no-logs") from None
    raise cli.UserError(f"{parent}: too many runs started this second")


# --------------------------------------------------------------------------------------
# Callbacks: timing and the divergence guard
# --------------------------------------------------------------------------------------


class EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch (the first includes compiling, the rest are the steady
    state), and each epoch's last learning rate put into the epoch's logs, so that
    the History (and from it the learning-curve figure and the metrics record) has
    it as TensorBoard does."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))

    def measurements(self):
        steady = self.seconds[1:] or self.seconds
        return {"seconds_per_epoch": float(np.median(steady)),
                "first_epoch_seconds": float(self.seconds[0]),
                "training_seconds": float(sum(self.seconds))}


class DivergenceGuard(keras.callbacks.TerminateOnNaN):
    """Stops a run that has diverged and says why, so that nothing gets saved.

    Keras' TerminateOnNaN stops at a NaN or infinite loss. A loss can also explode
    and stay finite, so this guard first measures the untrained model on the
    validation data: an epoch that ends with both the training and the test loss
    worse than that has diverged, whatever the scale of the loss. The test loss
    alone may rise above it for an epoch or two early on (RMSprop's first steps
    overshoot, which shows on runs of a few batches), so that stops nothing; but a
    model that ends worse than its random start is not saved. (Codes that collapsed
    to a constant are caught when saving.)
    """

    def __init__(self, validation_data, batch_size):
        super().__init__()
        self.validation_data, self.batch_size = validation_data, batch_size
        self.untrained_loss, self.problem, self.last = None, None, None

    def on_train_begin(self, logs=None):
        result = self.model.evaluate(*self.validation_data, batch_size=self.batch_size,
                                     verbose=0, return_dict=True)
        self.untrained_loss = float(result["loss"])

    def on_epoch_end(self, epoch, logs=None):
        loss, test_loss = (logs or {}).get("loss"), (logs or {}).get("val_loss")
        self.last = (epoch, test_loss)
        if not np.isfinite(loss):
            self.problem = f"the training loss became {loss:g} in epoch {epoch + 1}"
        elif not np.isfinite(test_loss):
            self.problem = f"the test loss became {test_loss:g} after epoch {epoch + 1}"
        elif test_loss > self.untrained_loss and loss > self.untrained_loss:
            self.problem = (f"after epoch {epoch + 1} the training and test losses "
                            f"({loss:.4g}, {test_loss:.4g}) are worse than the "
                            f"untrained model's ({self.untrained_loss:.4g})")
        if self.problem:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.problem:
            raise cli.TrainingDiverged(
                f"training diverged: {self.problem}; nothing was saved. The learning "
                "rate is likely too high: try a lower --learning-rate.")
        epoch, test_loss = self.last or (None, None)
        if test_loss is not None and test_loss > self.untrained_loss:
            raise cli.TrainingDiverged(
                f"after its last epoch ({epoch + 1}) the model is worse than the "
                f"untrained one: test loss {test_loss:.4g} against "
                f"{self.untrained_loss:.4g}; nothing was saved. Train for more steps "
                "(more --epochs, or more digits than --limit gives) or at a lower "
                "--learning-rate.")


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


def compare_with(args, other):
    """Print the other model's mean code activation and test reconstruction loss
    (the sparse model's beside the plain one's), if it has been trained."""
    theirs = read_record(Path(args.out_dir) / f"{other}_metrics.json")
    try:
        print(f"  vs {other}: mean code activation "
              f"{float(theirs['mean_code_activation']):.3f}, test reconstruction "
              f"loss {float(theirs.get('test_reconstruction', 'nan')):.4f}")
    except (ValueError, KeyError, TypeError):
        pass  # a missing or foreign record: nothing to compare with


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
        # Every epoch's figures, so the curves can be redrawn without TensorBoard.
        "history": {name: [float(v) for v in values]
                    for name, values in history.history.items()},
        "code_shape": list(codes.shape[1:]),
        "mean_code_activation": float(codes.mean()),
        **measurements,
    }
    print(f"Test loss {record['test_loss']:.4f} (untrained "
          f"{record['untrained_test_loss']:.4f}); "
          f"{record['seconds_per_epoch']:.1f} s/epoch on {record['backend']}")
    return record
