"""The benchmark commands: the results table is built from real script outputs, and
bad input gets a one-line error. (The benchmarks themselves take minutes to an hour;
they are run by hand, not here.)"""

import json

from support import one_line_error, run_script


def test_run_all_tabulates_what_the_scripts_wrote(tmp_path):
    out, results = tmp_path / "features", tmp_path / "results"
    trained = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 2,
                         "--limit", 300, "--out-dir", out)
    assert trained.returncode == 0, trained.stderr[-3000:]
    trained = run_script("variational_autoencoder.py", "--data", "sample", "--epochs", 1,
                         "--limit", 300, "--out-dir", out)
    assert trained.returncode == 0, trained.stderr[-3000:]
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
    assert "| variational_autoe | 2 | 1 | batch 100, adam 0.003, coin flips |" in table


def test_run_all_with_nothing_to_collect_is_a_one_line_error(tmp_path):
    result = run_script("benchmarks/run_all.py", "--collect-only", "--out-dir",
                        tmp_path, "--results", tmp_path / "results", backend="numpy")
    assert result.returncode == 2
    assert "no metrics files" in one_line_error(result)


def test_compare_speed_needs_a_data_file(tmp_path):
    result = run_script("benchmarks/compare_speed.py", "--data", tmp_path / "none.npz")
    assert result.returncode == 2
    assert "no such file" in one_line_error(result)
