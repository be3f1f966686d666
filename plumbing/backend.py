"""Keras, checked and loaded quietly: ``import_keras()``.

It checks KERAS_BACKEND first (a backend that does not exist or is not installed is
one line, not a traceback), then imports Keras with TensorFlow's start-up chatter
kept off stderr. ``plumbing.training`` calls it as it loads; the Keras-free modules
call it only when they need Keras (the data download, the explorer's VAE plane,
the benchmarks). Importing this module imports no Keras.
"""

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

from plumbing import cli


def _backend_fix(name):
    others = [b for b in cli.BACKENDS if b != name]
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
    if name not in cli.BACKENDS:
        raise cli.UserError(f"KERAS_BACKEND={name} is not a Keras backend that can "
                            f"train: set it to tensorflow, jax or torch (e.g. "
                            f"KERAS_BACKEND=jax python {Path(sys.argv[0]).name} ...)")
    if not backend_installed(name):
        raise cli.UserError(f"KERAS_BACKEND={name}, but {name} is not installed: "
                            f"pip install {name}, or {_backend_fix(name)}")
    return name


def backend_installed(name):
    """Whether the backend ``name``'s package is installed (it shares the name)."""
    return importlib.util.find_spec(name) is not None


def backend_problem(error):
    """Keras' failure to load its backend, in one line that says what to do."""
    # "Unable to import backend : foo": a bad name in keras.json or KERAS_BACKEND.
    named = re.search(r"backend : (\S+)", str(error))
    missing = getattr(error, "name", None)  # ModuleNotFoundError's module
    name = os.environ.get("KERAS_BACKEND") or (named and named[1]) or missing
    where = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else \
        "Keras' backend (KERAS_BACKEND is not set; from keras.json or the default)"
    if named:
        return (f"{where} is {name}, not a Keras backend that can train: "
                f"set KERAS_BACKEND to tensorflow, jax or torch")
    if missing and missing.split(".")[0] in cli.BACKENDS:
        backend = missing.split(".")[0]
        return (f"{where} is {name}, but {backend} is not installed: "
                f"pip install {backend}, or {_backend_fix(backend)}")
    reason = " ".join(str(error).split())[:200]
    return (f"Keras could not load its {name or 'default'} backend "
            f"({type(error).__name__}: {reason}); set KERAS_BACKEND to tensorflow, "
            f"jax or torch")


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


def import_keras():
    """Keras on the chosen backend, checked first and imported quietly.

    A KERAS_BACKEND that cannot load is one line, said before the seconds that
    TensorFlow takes to import. Once imported, Keras stays: later calls are free.
    """
    check_backend()
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with _without_native_chatter():
        try:
            import keras
        except (ImportError, ValueError) as error:  # Keras' words for a bad backend
            raise cli.UserError(backend_problem(error)) from None

        if keras.backend.backend() == "tensorflow":
            # TensorFlow looks for a GPU when first asked, and on a machine without
            # one it can log a CUDA error then: ask now, while the chatter is
            # filtered.
            import tensorflow

            tensorflow.config.list_physical_devices()
    return keras
