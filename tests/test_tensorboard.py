"""TensorBoard logs: every training script passes Keras' TensorBoard callback to fit.

Each run writes its own run folder, DIR/logs/<prefix>/<time>/{train,validation},
read back here with TensorBoard's own event reader, and served by a real
`tensorboard` process on 127.0.0.1. (Every script's logs, on every backend, are
checked in test_training.py's end-to-end runs.)
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from support import run_script, tensorboard_scalars

EPOCHS = 2


def run_folders(out_dir, prefix):
    return sorted((out_dir / "logs" / prefix).iterdir())


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    result = run_script("variational_autoencoder.py", "--data", "sample", "--epochs",
                        EPOCHS, "--limit", 300, "--out-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def check_vae_logs(out):
    [run] = run_folders(out, "variational_autoe")
    logged = tensorboard_scalars(run)
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


def test_each_run_its_own_folder(tmp_path):
    """A rerun lands beside the first run, never in it; the sparse model logs its
    reconstruction term beside its loss. (`--no-logs`: test_training.py.)"""
    def train():
        result = run_script("simple_autoencoder.py", "--sparse", "--data", "sample",
                            "--epochs", EPOCHS, "--limit", 200, "--out-dir", tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]

    train()
    [first] = run_folders(tmp_path, "sparse_autoe")
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    train()
    runs = run_folders(tmp_path, "sparse_autoe")
    assert len(runs) == 2 and first in runs
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == before
    for run in runs:
        logged = tensorboard_scalars(run)
        assert len(logged["train"]["epoch_reconstruction"]) == EPOCHS
        assert len(logged["validation"]["epoch_reconstruction"]) == EPOCHS


@pytest.mark.parametrize("planted", ["logs", "logs/simple_autoe"])
def test_a_link_planted_in_the_logs_path_is_refused(planted, tmp_path):
    from types import SimpleNamespace

    from plumbing import cli, training

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / planted).parent.mkdir(parents=True, exist_ok=True)
    (out / planted).symlink_to(elsewhere)
    with pytest.raises(cli.UserError, match="not a folder"):
        training.log_dir(SimpleNamespace(out_dir=str(out)), "simple_autoe")
    assert not list(elsewhere.iterdir())


def test_each_call_makes_a_new_run_folder(tmp_path):
    from types import SimpleNamespace

    from plumbing import training

    args = SimpleNamespace(out_dir=str(tmp_path))
    folders = {training.log_dir(args, "deep_autoe") for _ in range(3)}
    assert len(folders) == 3  # the same second: _2, _3 after the first


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
