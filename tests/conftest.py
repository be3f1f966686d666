"""Helpers shared by the tests: run a script of the collection as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script, *args, backend="tensorflow", env=None, cwd=ROOT, timeout=600,
               stdout=subprocess.PIPE):
    """Run ``python SCRIPT ARGS`` as a subprocess; return the CompletedProcess.

    Output is captured unless ``stdout`` says where else it goes (a file descriptor).
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def one_line_error(result):
    """The error a failed run printed: its whole stderr is exactly one line (no
    traceback, and none of TensorFlow's start-up chatter either)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def run():
    return run_script
