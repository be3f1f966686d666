"""Helpers shared by the tests: run a script of the collection as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script, *args, backend="tensorflow", env=None, cwd=ROOT, timeout=600):
    """Run ``python SCRIPT ARGS`` as a subprocess; return the CompletedProcess."""
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(result):
    """The error a failed run printed: exactly one stderr line that is ours."""
    lines = [line for line in result.stderr.splitlines() if _ours(line)]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def _ours(line):
    # TensorFlow's C++ runtime writes a few log lines at import that no environment
    # variable silences in TF 2.21; they are not ours to judge.
    return line.strip() and not line.startswith(("I0000", "W0000", "E0000",
                                                 "WARNING: All log messages"))


@pytest.fixture
def run():
    return run_script
