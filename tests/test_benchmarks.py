"""The benchmark commands: the results table is built from real script outputs, and
bad input gets a one-line error. (The benchmarks themselves take minutes to an hour;
they are run by hand, not here.)"""

import json
import os

import numpy as np
import pytest
from support import copy_of, one_line_error, run_script, trained


def test_run_all_tabulates_what_the_scripts_wrote(tmp_path):
    """On two runs in one folder: the simple model's two epochs (a warm-up cut to
    fit), and the MLP VAE's end-to-end run of test_training.py."""
    out, results = tmp_path / "features", tmp_path / "results"
    for script, epochs in (("simple_autoencoder.py", 2),
                           ("variational_autoencoder.py", 2)):
        folder, result = trained(script, epochs=epochs, limit=300)
        assert result.returncode == 0, result.stderr[-3000:]
        copy_of(folder, out)
    metrics = json.loads((out / "simple_autoe_metrics.json").read_text())

    result = run_script("benchmarks/run_all.py", "--collect-only", "--out-dir", out,
                        "--results", results, backend="numpy")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not trained yet" in result.stdout  # the other models, reported not faked

    record = json.loads((results / "results.json").read_text())
    rows = record["models"]
    # The machine in words: its cores, CPU, bfloat16 instructions (they decide the
    # precision) and GPU, as the results page prints it.
    assert "-core " in record["machine"] and "bfloat16" in record["machine"]
    assert "GPU" in record["machine"]
    assert [row["model"] for row in rows] == ["simple_autoe", "variational_autoe"]
    # Every epoch's losses, for the learning curves docs/results.md describes.
    curves = json.loads((results / "curves.json").read_text())["models"]
    assert curves["simple_autoe"]["history"] == metrics["history"]
    assert curves["simple_autoe"]["final_test_loss"] == metrics["history"]["val_loss"][-1]
    assert set(curves["variational_autoe"]["history"]) >= {"kl", "val_kl"}
    row, vae = rows
    assert row["test_loss"] == metrics["test_loss"]  # the loss (sparse: reconstruction)
    assert row["epochs"] == 2 and row["batch_size"] == 256
    assert row["optimizer"] == "adam"
    assert row["learning_rate"] == metrics["learning_rate"] > 0.001  # the tuned rate
    assert row["warmup_epochs"] == 1  # the recipe's 10, cut to half of a short run
    assert row["met"] is (row["test_loss"] <= 0.090)
    assert 0.1 <= row["knn_accuracy"] <= 1.0  # a real 5-NN score on 300 test codes
    table = (results / "results.md").read_text()
    rate = f"{metrics['learning_rate']:g}"
    assert f"| simple_autoe | 32 | 2 | batch 256, adam {rate}, 1-epoch warm-up |" in table
    assert "Total training time" in table
    assert not row["coin_flips"] and vae["coin_flips"]
    vae_metrics = json.loads((out / "variational_autoe_metrics.json").read_text())
    assert vae["test_loss"] == vae_metrics["test_loss"]  # the whole loss, both terms
    assert "| variational_autoe | 2 | 2 | batch 100, adam 0.003, coin flips |" in table


def test_run_all_with_nothing_to_collect_is_a_one_line_error(tmp_path):
    result = run_script("benchmarks/run_all.py", "--collect-only", "--out-dir",
                        tmp_path, "--results", tmp_path / "results", backend="numpy")
    assert result.returncode == 2
    assert "no metrics files" in one_line_error(result)


def test_compare_speed_needs_a_data_file(tmp_path):
    result = run_script("benchmarks/compare_speed.py", "--data", tmp_path / "none.npz")
    assert result.returncode == 2
    assert "no such file" in one_line_error(result)


def refused(*args):
    """run_all.py or compare_speed.py with ARGS: exit 2 and one line, at once."""
    result = run_script(*args, backend="numpy", timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    return one_line_error(result)


def metrics(**fields):
    record = {"epochs": 2, "batch_size": 256, "optimizer": "adam", "test_loss": 0.1,
              "seconds_per_epoch": 1.0, "training_seconds": 2.0,
              "backend": "tensorflow", "machine": "x86_64", "data": {"source": "s"}}
    return json.dumps({**record, **fields})


@pytest.mark.parametrize("content, expected", [
    ("[" * 100_000, "not readable JSON"),
    (metrics(test_loss="0.1"), "test_loss is '0.1', expected a number"),
    (metrics(epochs=True), "epochs is True, expected an integer"),
    (metrics(history={"val_loss": []}), "history.val_loss is [], expected a list"),
    ("[1, 2]", "holds a JSON list"),
])
def test_run_all_refuses_malformed_metrics_in_one_line(tmp_path, content, expected):
    (tmp_path / "simple_autoe_metrics.json").write_text(content)
    line = refused("benchmarks/run_all.py", "--collect-only", "--out-dir", tmp_path,
                   "--results", tmp_path / "results")
    assert "simple_autoe_metrics.json" in line and expected in line, line


def test_run_all_refuses_results_that_name_a_file(tmp_path):
    (tmp_path / "results").write_text("a file")
    line = refused("benchmarks/run_all.py", "--collect-only", "--out-dir", tmp_path,
                   "--results", tmp_path / "results")
    assert "--results" in line and "is a file, not a directory" in line


@pytest.mark.parametrize("script", ["benchmarks/run_all.py",
                                    "benchmarks/compare_speed.py"])
def test_benchmarks_refuse_a_pipe_for_data(tmp_path, script):
    fifo = tmp_path / "mnist.npz"
    os.mkfifo(fifo)
    extra = ["--collect-only", "--out-dir", tmp_path, "--results", tmp_path / "r"] \
        if "run_all" in script else []
    line = refused(script, "--data", fifo, *extra)
    assert "not a regular file" in line


def test_compare_speed_refuses_a_limit_beyond_the_data(tmp_path):
    path = tmp_path / "small.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
             y_train=np.arange(50) % 10,
             x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    line = refused("benchmarks/compare_speed.py", "--data", path, "--limit", 1000)
    assert "--limit 1,000: more than the 50 training images" in line, line
