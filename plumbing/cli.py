"""The command line and its errors: every bad input is one line and exit status 2.

Keras-free on purpose: the visualiser uses it too and must start without a
deep-learning backend.
"""

import argparse
import math
import os
import signal
import sys
from pathlib import Path

DEFAULT_OUT_DIR = "features"
MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are unsigned 32-bit integers
# The Keras backends that can train (Keras' numpy backend can only predict).
BACKENDS = ("tensorflow", "jax", "torch")


class UserError(Exception):
    """A problem with what the user asked for: one line on stderr, exit status 2."""


class TrainingDiverged(Exception):
    """Training went wrong (NaN, exploded loss, collapsed codes): exit status 1."""


def fail(message, status=2):
    """Print a one-line error to stderr and exit; no traceback."""
    prog = Path(sys.argv[0]).name or "error"
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(status)


# What an interrupt leaves behind, in words: files.OutputSet updates it as it saves.
interrupt_message = ["interrupted; nothing was saved, files from earlier runs were "
                     "left as they were"]


def _terminate(signum, frame):
    # `kill` (SIGTERM) cleans up as Ctrl-C does, instead of dying mid-write.
    raise KeyboardInterrupt


def main_guard(main):
    """Run ``main()``, turning expected failures into a one-line error."""
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except (ValueError, OSError):  # not the main thread, or no such signal here
        pass
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
        fail(interrupt_message[0], status=130)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but bad input gives one line (not usage + error) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


def check_output_dir(out_dir, option="--out-dir", name=None, hint=""):
    """Fail early (before any work) if ``out_dir`` cannot be made and written.

    ``name`` is how the message names the option's value (default: ``out_dir``);
    ``hint``, what to do instead, ends a message about a folder that cannot be written.
    """
    import tempfile

    out_dir = Path(out_dir)
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


# Keras: which backend, and a missing or unknown one in one line.

def _backend_fix(name):
    others = [b for b in BACKENDS if b != name]
    return f"set KERAS_BACKEND to {', '.join(others[:-1])} or {others[-1]}"


def check_backend():
    """The Keras backend that ``import keras`` would load; a UserError if it cannot.

    Answers in a moment, without importing Keras (TensorFlow alone takes seconds):
    the backend is KERAS_BACKEND, else the one in Keras' own keras.json, else
    tensorflow, as Keras decides; it must be one of BACKENDS and be installed.
    """
    name = os.environ.get("KERAS_BACKEND") or None
    if name is None:
        return None  # keras.json's choice: import_keras reports a bad one
    if name not in BACKENDS:
        raise UserError(f"KERAS_BACKEND={name} is not a Keras backend that can train: "
                        f"set it to tensorflow, jax or torch (e.g. "
                        f"KERAS_BACKEND=jax python {Path(sys.argv[0]).name} ...)")
    if not backend_installed(name):
        raise UserError(f"KERAS_BACKEND={name}, but {name} is not installed: "
                        f"pip install {name}, or {_backend_fix(name)}")
    return name


def backend_installed(name):
    """Whether the backend ``name``'s package is installed (it shares the name)."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


def import_keras():
    """Import Keras on the chosen backend and return it; a problem is one UserError.

    Keras is imported the way ``plumbing.training`` does it, with TensorFlow's
    start-up chatter kept off stderr, so call this before importing that module.
    """
    check_backend()
    try:
        from plumbing.training import keras
    except (ImportError, ValueError) as error:  # what Keras raises for a bad backend
        raise UserError(_backend_problem(error)) from None
    return keras


def _backend_problem(error):
    """Keras' failure to load its backend, in one line that says what to do."""
    import re

    # "Unable to import backend : foo": a bad name in keras.json or KERAS_BACKEND.
    named = re.search(r"backend : (\S+)", str(error))
    missing = getattr(error, "name", None)  # ModuleNotFoundError's module
    name = os.environ.get("KERAS_BACKEND") or (named and named[1]) or missing
    where = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else \
        "Keras' backend (KERAS_BACKEND is not set; from keras.json or the default)"
    if named:
        return (f"{where} is {name}, not a Keras backend that can train: "
                f"set KERAS_BACKEND to tensorflow, jax or torch")
    if missing and missing.split(".")[0] in BACKENDS:
        backend = missing.split(".")[0]
        return (f"{where} is {name}, but {backend} is not installed: "
                f"pip install {backend}, or {_backend_fix(backend)}")
    reason = " ".join(str(error).split())[:200]
    return (f"Keras could not load its {name or 'default'} backend "
            f"({type(error).__name__}: {reason}); set KERAS_BACKEND to tensorflow, "
            f"jax or torch")
