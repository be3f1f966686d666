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


# The tests that train, longest first (the deconvolutional VAE's exact likelihood
# decodes the whole latent grid); the rest keep their order behind them.
LONGEST_FIRST = [
    "test_training.py::test_script_end_to_end[variational_autoe_deconv",
    "test_training.py::test_mixed_precision_end_to_end[variational_autoe_deconv]",
    "test_using_trained_models.py::test_the_lesson_uses_every_trained_model",
    "test_training.py::test_script_end_to_end",
    "test_training.py::test_mixed_precision",
    "test_training.py::test_same_seed",
    "test_using_trained_models.py",
    "test_outputs.py",
    "test_training.py::test_tutorial_recipe",
    "test_benchmarks.py::test_run_all_tabulates",
    "test_tensorboard.py",
    "test_fashion_mnist.py::test_fashion_mnist_trains",
    "test_notebooks.py::test_a_notebook_runs",
    "test_training.py",
]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.nodeid.rsplit("/", 1)[-1]
        return next((i for i, start in enumerate(LONGEST_FIRST) if name.startswith(start)),
                    len(LONGEST_FIRST))

    items.sort(key=rank)
