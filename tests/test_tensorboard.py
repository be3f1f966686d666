"""TensorBoard logs: every training script passes Keras' TensorBoard callback to fit.

Each run writes its own run folder, DIR/logs/<prefix>/<time>/{train,validation},
read back here with TensorBoard's own event reader, and served by a real
`tensorboard` process on 127.0.0.1.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from support import backend_available, run_script

EPOCHS = 2


def run_folders(out_dir, prefix):
    return sorted((out_dir / "logs" / prefix).iterdir())


def scalars(run_folder):
    """{split: {tag: [values by step]}} from a run folder's event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    found = {}
    for split in ("train", "validation"):
        points = {}
        for events in sorted((run_folder / split).glob("events.out.tfevents.*")):
            for event in EventFileLoader(str(events)).Load():
                for value in event.summary.value:
                    if value.tag.startswith("epoch_"):
                        number = float(tensor_util.make_ndarray(value.tensor))
                        points.setdefault(value.tag, {})[event.step] = number
        found[split] = {tag: [by_step[s] for s in sorted(by_step)]
                        for tag, by_step in points.items()}
    return found


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    result = run_script("variational_autoencoder.py", "--data", "sample", "--epochs",
                        EPOCHS, "--limit", 300, "--out-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def check_vae_logs(out):
    [run] = run_folders(out, "variational_autoe")
    logged = scalars(run)
    history = json.loads((out / "variational_autoe_metrics.json").read_text())["history"]
    for tag in ("epoch_loss", "epoch_reconstruction", "epoch_kl"):
        for split, prefix in (("train", ""), ("validation", "val_")):
            assert len(logged[split][tag]) == EPOCHS, (split, tag, logged)
            # The same numbers as the metrics file's per-epoch history.
            assert logged[split][tag] == pytest.approx(
                history[prefix + tag[len("epoch_"):]], rel=1e-5)
    rates = logged["train"]["epoch_learning_rate"]
    # The cosine schedule: a positive rate, falling to zero at the last step.
    assert len(rates) == EPOCHS and rates[0] > 0 and rates[-1] == pytest.approx(0)


def test_vae_logs_loss_terms_and_learning_rate(vae_run):
    check_vae_logs(vae_run)


def test_vae_logs_on_jax(tmp_path):
    backend_available("jax")
    result = run_script("variational_autoencoder.py", "--data", "sample", "--epochs",
                        EPOCHS, "--limit", 300, "--out-dir", tmp_path, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    check_vae_logs(tmp_path)


def test_each_run_its_own_folder_and_no_logs_writes_none(tmp_path):
    def train(*flags):
        result = run_script("simple_autoencoder.py", "--sparse", "--data", "sample",
                            "--epochs", EPOCHS, "--limit", 200, "--out-dir", tmp_path,
                            *flags)
        assert result.returncode == 0, result.stderr[-3000:]

    train()
    [first] = run_folders(tmp_path, "sparse_autoe")
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    train()  # a rerun lands beside the first, never in it
    runs = run_folders(tmp_path, "sparse_autoe")
    assert len(runs) == 2 and first in runs
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == before
    for run in runs:  # the sparse model's reconstruction term beside its loss
        logged = scalars(run)
        assert len(logged["train"]["epoch_reconstruction"]) == EPOCHS
        assert len(logged["validation"]["epoch_reconstruction"]) == EPOCHS
    train("--no-logs")
    assert run_folders(tmp_path, "sparse_autoe") == runs


def test_a_link_planted_at_the_logs_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "logs").symlink_to(elsewhere)
    result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 1,
                        "--limit", 100, "--out-dir", out)
    assert result.returncode == 2
    assert "logs" in result.stderr and "not a folder" in result.stderr
    assert not list(elsewhere.iterdir())


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tensorboard_serves_the_runs(vae_run):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(vae_run / "logs"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, runs = time.monotonic() + 90, []
        while time.monotonic() < deadline and not runs:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs",
                                            timeout=5) as reply:
                    runs = json.loads(reply.read())
            except OSError:
                time.sleep(1)
        [run] = run_folders(vae_run, "variational_autoe")
        name = f"variational_autoe/{run.name}"
        assert {f"{name}/train", f"{name}/validation"} <= set(runs), runs
        url = (f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?"
               f"run={name}/validation&tag=epoch_kl")
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert len(json.loads(reply.read())) == EPOCHS
    finally:
        server.terminate()
        server.wait(timeout=30)
