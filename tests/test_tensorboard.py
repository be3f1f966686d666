"""TensorBoard logs: every training script passes Keras' TensorBoard callback to fit.

Each run writes its own run folder, DIR/logs/<prefix>/<time>/{train,validation},
read back here with TensorBoard's own event reader, and served by a real
`tensorboard` process on 127.0.0.1. (Every script's logs, on every backend, are
checked in test_training.py's end-to-end runs: every term of the loss and the
learning rate, epoch by epoch. The runs here are those runs, trained once.)
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from support import copy_of, run_script, tensorboard_scalars, trained

EPOCHS = 2  # the end-to-end MLP VAE's


def run_folders(out_dir, prefix):
    return sorted((out_dir / "logs" / prefix).iterdir())


@pytest.fixture(scope="module")
def vae_run():
    out, result = trained("variational_autoencoder.py", epochs=EPOCHS, limit=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_each_run_its_own_folder(tmp_path):
    """A rerun lands beside the first run, never in it; the sparse model logs its
    reconstruction term beside its loss. (`--no-logs`: test_training.py.)"""
    first_run, result = trained("simple_autoencoder.py", "--sparse", limit=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = copy_of(first_run, tmp_path / "out")
    [first] = run_folders(out, "sparse_autoe")
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    again = run_script("simple_autoencoder.py", "--sparse", "--data", "sample",
                       "--epochs", 1, "--limit", 300, "--out-dir", out)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = run_folders(out, "sparse_autoe")
    assert len(runs) == 2 and first in runs
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == before
    for run in runs:
        logged = tensorboard_scalars(run)
        assert len(logged["train"]["epoch_reconstruction"]) == 1
        assert len(logged["validation"]["epoch_reconstruction"]) == 1


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
