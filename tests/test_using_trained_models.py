"""using_trained_models.py on models the training scripts saved, on every backend,
and the VAE's exact likelihood (plumbing.likelihood) checked against its bound, a
finer and a wider grid, and the importance-weighted estimate."""

import json
import shutil

import numpy as np
import pytest
from support import backend_available, copy_of, one_line_error, run_script
from support import trained as shared_run

TRAINED = ["denoise_autoe", "variational_autoe"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One folder with the MLP VAE and the denoiser, trained on TensorFlow once for
    the whole session (the denoiser is test_training.py's end-to-end run). The VAE
    sees the whole sample for a few hundred steps: a few steps leave a decoder whose
    likelihood lies far out in the plane, where no trained VAE puts it."""
    folder = tmp_path_factory.mktemp("trained")
    for run in (shared_run("variational_autoencoder.py", "--no-logs", epochs=8,
                           limit=None),
                shared_run("image_denoising.py", limit=300)):
        out, result = run
        assert result.returncode == 0, result.stderr[-3000:]
        copy_of(out, folder)
    return folder


def lesson(folder, backend="tensorflow"):
    result = run_script("using_trained_models.py", "--out-dir", folder, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def check_lesson_output(out, folder, backend):
    for prefix in TRAINED:
        assert f"{prefix}: trained on tensorflow, reloaded on {backend}" in out
        assert (folder / f"{prefix}_interpolation.png").stat().st_size > 0
    assert (folder / "variational_autoe_samples.png").stat().st_size > 0
    assert (folder / "denoise_autoe_cleaned.png").stat().st_size > 0
    # The untrained models are each named with the script that trains them.
    assert "deep_autoe: not trained in" in out and \
        "python deep_autoencoder.py trains it" in out
    assert "sparse_autoe: not trained in" in out and \
        "python simple_autoencoder.py --sparse trains it" in out
    assert "variational_autoe: exact test NLL" in out
    difference = float(out.split("test digits are within ")[1].split()[0])
    assert difference < 1e-4


def test_the_lesson_uses_every_trained_model(trained):
    check_lesson_output(lesson(trained), trained, "tensorflow")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_models_trained_on_tensorflow_drive_the_lesson_on(backend, trained,
                                                          tmp_path):
    backend_available(backend)
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    check_lesson_output(lesson(tmp_path, backend), tmp_path, backend)


def test_nothing_trained_is_one_line_naming_the_scripts(tmp_path):
    result = run_script("using_trained_models.py", "--out-dir", tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "no trained models in" in line and "variational_autoencoder.py" in line \
        and "image_denoising.py" in line
    assert result.stdout.count("not trained") == 0


def test_the_vae_lesson_records_its_exact_likelihood(trained):
    record = json.loads((trained / "variational_autoe_metrics.json").read_text())
    assert record["test_nll"] <= record["test_loss"]  # the NLL is below its bound
    assert record["nll_grid"]["extent_sd"] > 0 and "quadrature" in record["nll_method"]
    # Narrowing the grid by a standard deviation changes nothing that matters. (The
    # grid twice as coarse may: the finer grid is tested below.)
    assert abs(record["nll_grid_check"]["one_sd_narrower"]) < 0.05
    assert record["test_nll_binarised"] > 0


@pytest.fixture(scope="module")
def vae(trained):
    import keras
    from plumbing import data

    encoder, decoder = (keras.models.load_model(
        trained / f"variational_autoe_{part}.keras") for part in ("encoder", "decoder"))
    _, (x_test, _), _ = data.load_mnist("sample", shape=(784,))
    return encoder, decoder, x_test[:100]  # enough digits to compare the figures


def test_a_finer_or_wider_grid_moves_the_nll_by_under_005_nats(vae):
    from plumbing import likelihood

    _, decoder, x_test = vae
    default = likelihood.exact_nll(decoder, x_test, with_binarised=False)["test_nll"]
    finer = likelihood.exact_nll(decoder, x_test, spacing=likelihood.SPACING / 2,
                                 with_binarised=False)["test_nll"]
    wider = likelihood.exact_nll(decoder, x_test, extent=likelihood.EXTENT + 2,
                                 with_binarised=False)["test_nll"]
    assert abs(finer - default) < 0.05 and abs(wider - default) < 0.05
    assert 50 < default < 400  # nats per digit: a likelihood, not a per-pixel figure


def test_the_importance_weighted_estimate_agrees_within_half_a_nat(vae):
    from plumbing import likelihood

    encoder, decoder, x_test = vae
    exact = likelihood.exact_nll(decoder, x_test, with_binarised=False)["test_nll"]
    estimate = likelihood.importance_weighted_nll(encoder, decoder, x_test)
    # An upper bound in expectation, so mostly above; never far on either side.
    assert abs(estimate - exact) < 0.5


def test_coin_flip_digits_get_a_true_likelihood(vae):
    from plumbing import likelihood

    _, decoder, x_test = vae
    flips = likelihood.binarised(x_test)
    assert set(np.unique(flips)) <= {0.0, 1.0}
    result = likelihood.exact_nll(decoder, x_test)
    # Scored on its own, the binarised set gives the same figure as in the pair.
    alone = likelihood.exact_nll(decoder, flips, with_binarised=False)["test_nll"]
    assert abs(alone - result["test_nll_binarised"]) < 1e-6
    # Probabilities of binary digits: each digit's likelihood is at most 1.
    assert result["test_nll_binarised"] > 0


def test_the_quadrature_of_10000_digits_takes_under_a_minute():
    """results/likelihood.json (benchmarks/time_likelihood.py on full MNIST)."""
    from support import ROOT

    timing = json.loads((ROOT / "results" / "likelihood.json").read_text())
    assert timing["test_digits"] == 10_000
    assert timing["seconds_grey_digits"] <= 60
    assert timing["test_nll"] < timing["test_nll_binarised"] + 5  # same scale
    for moved in timing["grid_check"].values():
        assert abs(moved) < 0.05
