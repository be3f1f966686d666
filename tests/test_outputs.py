"""A run's outputs are one consistent set, whatever happens: interrupts at any moment
of the save (Ctrl-C, `kill`, SIGKILL), failed writes, and runs that diverged."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from support import ROOT, copy_of, one_line_error, run_script, trained

RUN = ["--data", "sample", "--epochs", 1, "--limit", 200]


def snapshot(folder):
    """Every file in ``folder`` (hidden ones too) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def consistent(folder, prefix):
    """The set in ``folder`` matches the sha256 list in its metrics record."""
    from plumbing import files

    record = json.loads((folder / f"{prefix}_metrics.json").read_text())
    return all(files.sha256(folder / name) == digest
               for name, digest in record["files"].items())


def only_the_training_log(folder):
    """Nothing of the run's output set, only TensorBoard's log of the failed run,
    which is written as training goes and kept to show what went wrong."""
    return [p.name for p in folder.iterdir()] == ["logs"] and \
        [p.name for p in (folder / "logs").iterdir()] == ["simple_autoe"]


@pytest.fixture
def previous_run(tmp_path):
    """A folder holding a complete set from an earlier run (seed 1): one run,
    trained once for every test here (and test_training.py's seed test), copied into
    each test's own folder."""
    out, result = trained("simple_autoencoder.py", "--seed", 1, limit=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return copy_of(out, tmp_path)


def interrupted(signal_name, when, out_dir):
    return run_script("tests/support/interrupt_save.py", signal_name, when,
                      "simple_autoencoder.py", *RUN, "--seed", 2, "--out-dir", out_dir)


@pytest.mark.parametrize("signal_name", ["INT", "TERM"])  # Ctrl-C, `kill`
def test_interrupt_while_writing_keeps_the_previous_set(signal_name, previous_run):
    before = snapshot(previous_run)
    result = interrupted(signal_name, "writing", previous_run)
    assert result.returncode == 130
    assert "nothing was saved, files from earlier runs were left as they were" in \
        one_line_error(result)
    assert snapshot(previous_run) == before  # byte for byte, no stray files
    assert not [p for p in previous_run.iterdir() if p.name.startswith(".")]


def test_interrupt_while_moving_completes_the_new_set(previous_run):
    before = snapshot(previous_run)
    result = interrupted("TERM", "moving", previous_run)
    assert result.returncode == 130
    assert "interrupted after the outputs were saved complete" in one_line_error(result)
    after = snapshot(previous_run)
    assert after.keys() == before.keys()  # the same set of files, no strays
    assert after["simple_autoe_features.pickle"] != \
        before["simple_autoe_features.pickle"]
    assert consistent(previous_run, "simple_autoe")


def test_sigkill_while_writing_is_tidied_by_the_next_run(previous_run):
    before = snapshot(previous_run)
    result = interrupted("KILL", "writing", previous_run)
    assert result.returncode == -signal.SIGKILL
    visible = {k: v for k, v in snapshot(previous_run).items()}
    assert visible == before  # the staging folder is hidden and apart
    assert consistent(previous_run, "simple_autoe")
    again = run_script("simple_autoencoder.py", *RUN, "--seed", 3, "--out-dir",
                       previous_run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [p for p in previous_run.iterdir() if p.name.startswith(".")]
    assert consistent(previous_run, "simple_autoe")


def test_sigkill_while_moving_is_detected_then_finished(previous_run):
    """Killed outright between two moves, the folder holds a mixed set for a moment:
    the visualiser says so in one line, and the next run finishes the moves."""
    result = interrupted("KILL", "moving", previous_run)
    assert result.returncode == -signal.SIGKILL
    assert not consistent(previous_run, "simple_autoe")
    seen = run_script("visualize_latent_space.py",
                      previous_run / "simple_autoe_features.pickle")
    assert seen.returncode == 2
    assert "interrupted" in one_line_error(seen)

    again = run_script("deep_autoencoder.py", *RUN, "--out-dir", previous_run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert consistent(previous_run, "simple_autoe")  # the killed run's set, finished
    assert not [p for p in previous_run.iterdir() if p.name.startswith(".")]


def test_ctrl_c_during_the_save_leaves_one_whole_set(previous_run):
    """A real Ctrl-C from outside, as soon as training has finished: whenever it
    lands, the folder holds the old set or the new one, whole."""
    before = snapshot(previous_run)
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "simple_autoencoder.py"), *map(str, RUN), "--seed",
         "2", "--out-dir", str(previous_run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})
    for line in child.stdout:
        if line.startswith("Test loss"):  # printed just before the outputs are written
            child.send_signal(signal.SIGINT)
            break
    child.wait(timeout=120)
    stderr = child.stderr.read()
    after = snapshot(previous_run)
    assert after.keys() == before.keys()
    assert after == before or consistent(previous_run, "simple_autoe")
    if child.returncode:
        assert child.returncode == 130 and len(stderr.splitlines()) == 1, stderr


def test_a_write_that_fails_while_saving_is_one_line(previous_run):
    """A folder that becomes unwritable after the check at start-up (a full disk,
    a permission change) gives a one-line error and keeps the previous set."""
    before = snapshot(previous_run)
    result = run_script("tests/support/interrupt_save.py", "INT", "unwritable",
                        "simple_autoencoder.py", *RUN, "--seed", 2, "--out-dir",
                        previous_run)
    assert result.returncode == 2
    assert "cannot save the outputs" in one_line_error(result)
    assert snapshot(previous_run) == before


def test_a_loss_that_explodes_stops_the_run_and_saves_nothing(previous_run):
    before = snapshot(previous_run)
    result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 3,
                        "--limit", 1000, "--warmup", 0, "--learning-rate", 100,
                        "--out-dir", previous_run)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "diverged" in line and "worse than the untrained model" in line
    assert "--learning-rate" in line
    assert snapshot(previous_run) == before


def test_the_guard_lets_an_early_overshoot_pass_but_not_a_worse_model():
    """A test loss above the untrained model's while the training loss improves is
    an early overshoot (RMSprop's first steps on a few batches), not divergence; both
    losses above it is; and a run that ends worse than its start saves nothing."""
    import types

    from plumbing import cli, training

    def guard_after(*epochs):
        guard = training.DivergenceGuard(None, 100)
        guard.set_model(types.SimpleNamespace(stop_training=False))
        guard.untrained_loss = 543.5
        for epoch, (loss, test_loss) in enumerate(epochs):
            guard.on_epoch_end(epoch, {"loss": loss, "val_loss": test_loss})
        return guard

    overshoot = guard_after((509.1, 590.2), (426.1, 348.2))  # measured: torch, 300 digits
    assert overshoot.problem is None and not overshoot.model.stop_training
    overshoot.on_train_end()  # nothing raised: the model is saved

    exploded = guard_after((509.1, 348.2), (900.0, 1e4))
    assert exploded.model.stop_training and "epoch 2" in exploded.problem
    with pytest.raises(cli.TrainingDiverged, match="diverged.*--learning-rate"):
        exploded.on_train_end()

    worse = guard_after((509.1, 590.2))
    with pytest.raises(cli.TrainingDiverged, match="worse than the untrained one"):
        worse.on_train_end()


def test_a_nan_loss_stops_the_run_and_saves_nothing(tmp_path):
    result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 3,
                        "--limit", 500, "--learning-rate", 1e30, "--out-dir", tmp_path)
    assert result.returncode == 1
    assert "diverged" in one_line_error(result)
    assert only_the_training_log(tmp_path)


def test_codes_that_collapsed_are_refused(tmp_path):
    """A rate too high for the simple model kills every ReLU code unit: the loss is
    finite and better than the untrained model's, but every code is the same."""
    result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 3,
                        "--limit", 1000, "--warmup", 0, "--learning-rate", 5,
                        "--out-dir", tmp_path)
    assert result.returncode == 1
    assert "collapsed" in one_line_error(result)
    assert only_the_training_log(tmp_path)


def test_a_healthy_run_is_never_refused():
    """The collapse check measures spread, not a tuned threshold: real codes pass,
    codes with one live unit pass, constant codes do not."""
    from plumbing import cli, training

    rng = np.random.default_rng(0)
    training.refuse_collapsed(rng.random((100, 32), dtype=np.float32))
    one_live = np.zeros((100, 32), np.float32)
    one_live[:, 3] = rng.random(100)
    training.refuse_collapsed(one_live)
    with pytest.raises(cli.TrainingDiverged):
        training.refuse_collapsed(np.full((100, 4, 4, 8), 0.7, np.float32))
    with pytest.raises(cli.TrainingDiverged):
        training.refuse_collapsed(np.full((100, 2), np.nan, np.float32))


def test_interrupted_single_file_write_keeps_the_old_file(tmp_path):
    from plumbing import files

    class Explodes:
        def __reduce__(self):
            raise RuntimeError("disk pulled out mid-write")

    path = tmp_path / "x_tsne.pickle"
    files.save_pickle(np.arange(3, dtype=np.float32), path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        files.save_pickle([np.ones((500, 500), np.float32), Explodes()], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_killed_single_file_write_keeps_the_old_file(tmp_path):
    from plumbing import files

    path = tmp_path / "x_tsne.pickle"
    files.save_pickle(np.arange(3, dtype=np.float32), path)
    before = path.read_bytes()
    result = run_script("tests/support/killed_write.py", path)
    assert result.returncode == -9, result.stderr[-2000:]
    assert path.read_bytes() == before
