"""One folder of trained runs for the whole test session (``support.trained``)."""

import os

import pytest
import support


@pytest.fixture(scope="session", autouse=True)
def shared_runs(tmp_path_factory):
    """Under pytest-xdist each worker has its own temporary folder inside the
    session's: the runs go beside them, where every worker finds them, and pytest
    prunes them with its other temporary folders."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    support.RUNS = base / "trained"
    support.RUNS.mkdir(exist_ok=True)
