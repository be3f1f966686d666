"""The tests' helpers: run a script of the collection as a user would.

The helper scripts beside this file are run as subprocesses by the tests:
``killed_write.py``, ``offline_run.py``, ``reload_check.py``, ``interrupt_save.py``.
"""

import atexit
import hashlib
import importlib.util
import json
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
# Where the shared runs are kept: set for the whole session by conftest.py, to a
# folder that pytest-xdist's workers share; a fresh temporary folder otherwise.
RUNS = None


def _runs_folder():
    global RUNS
    if RUNS is None:
        RUNS = Path(tempfile.mkdtemp(prefix="trained-"))
        atexit.register(shutil.rmtree, RUNS, True)
    return RUNS


def trained(script, *flags, backend="tensorflow", epochs=1, limit=300, alone=False):
    """(out_dir, CompletedProcess) of one run of ``script`` on the sample, trained
    the first time a test asks and shared by every test that asks the same again,
    in this process and in the other test workers (a file lock keeps them from
    training it twice). ``limit=None`` trains on the whole sample; ``alone`` runs the
    script from a folder that holds only it and ``plumbing/``, no other lesson.

    Read the folder, never write in it: a test that writes copies it first
    (``copy_of``).
    """
    from filelock import FileLock

    key = (script, tuple(map(str, flags)), backend, epochs, limit, alone)
    if key not in _trained:
        runs = _runs_folder()
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        out, record = runs / name, runs / f"{name}.json"
        with FileLock(runs / f"{name}.lock"):
            if not record.exists():
                source, cwd = ROOT / script, ROOT
                if alone:
                    cwd = runs / f"{name}-alone"
                    shutil.copytree(ROOT / "plumbing", cwd / "plumbing",
                                    ignore=shutil.ignore_patterns("__pycache__"))
                    source = Path(shutil.copy(ROOT / script, cwd))
                sized = [] if limit is None else ["--limit", limit]
                result = run_script(source, *flags, "--data", "sample", "--epochs",
                                    epochs, *sized, "--out-dir", out, backend=backend,
                                    cwd=cwd)
                record.write_text(json.dumps([result.args, result.returncode,
                                              result.stdout, result.stderr]))
            _trained[key] = (out, subprocess.CompletedProcess(
                *json.loads(record.read_text())))
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
