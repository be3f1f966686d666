"""The tests' helpers: run a script of the collection as a user would.

The helper scripts beside this file are run as subprocesses by the tests:
``killed_write.py``, ``offline_run.py``, ``reload_check.py``, ``interrupt_save.py``.
"""

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = Path(__file__).resolve().parent
BACKENDS = ["tensorflow", "jax", "torch"]


def run_script(script, *args, backend="tensorflow", env=None, cwd=ROOT, timeout=600,
               stdout=subprocess.PIPE):
    """Run ``python SCRIPT ARGS`` as a subprocess; return the CompletedProcess.

    ``script`` is relative to the repository root. Output is captured unless
    ``stdout`` says where else it goes (a file descriptor).
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


_trained = {}


def trained(script, *flags, backend="tensorflow", epochs=1, limit=300):
    """(out_dir, CompletedProcess) of one run of ``script`` on the sample, trained
    the first time a test asks and shared by every test that asks the same again.

    Read the folder, never write in it: a test that writes copies it first
    (``copy_of``). The folders go when the test process ends.
    """
    key = (script, tuple(map(str, flags)), backend, epochs, limit)
    if key not in _trained:
        out = Path(tempfile.mkdtemp(prefix="trained-"))
        atexit.register(shutil.rmtree, out, True)
        result = run_script(script, *flags, "--data", "sample", "--epochs", epochs,
                            "--limit", limit, "--out-dir", out, backend=backend)
        _trained[key] = (out, result)
    return _trained[key]


def copy_of(folder, into):
    """A copy of a shared run's folder at ``into``, for a test that writes."""
    shutil.copytree(folder, into, symlinks=True, dirs_exist_ok=True)
    return Path(into)


def one_line_error(result):
    """The error a failed run printed: its whole stderr is exactly one line (no
    traceback, and none of TensorFlow's start-up chatter either)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def backend_available(name):
    """Skip a test whose backend is not installed, except where REQUIRE_ALL_BACKENDS
    is set (CI installs every backend, so a missing one fails there)."""
    if importlib.util.find_spec(name) is not None:  # backend and package share a name
        return
    if os.environ.get("REQUIRE_ALL_BACKENDS"):
        pytest.fail(f"the {name} backend is not installed")
    pytest.skip(f"the {name} backend is not installed")


def tensorboard_scalars(run_folder):
    """{split: {tag: [value at each step]}} from a TensorBoard run folder's event files
    (``train/`` and ``validation/``), read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    found = {}
    for split in ("train", "validation"):
        points = {}
        for events in sorted((Path(run_folder) / split).glob("events.out.tfevents.*")):
            for event in EventFileLoader(str(events)).Load():
                for value in event.summary.value:
                    if value.tag.startswith("epoch_"):
                        number = float(tensor_util.make_ndarray(value.tensor))
                        points.setdefault(value.tag, {})[event.step] = number
        found[split] = {tag: [by_step[step] for step in sorted(by_step)]
                        for tag, by_step in points.items()}
    return found
