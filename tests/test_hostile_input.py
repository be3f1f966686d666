"""Hostile and unlucky input, as a user would hit it: files planted where a run
saves, pipes and huge files where a pickle or an .npz should be, pickles and .npz
files that declare gigabytes, and inputs that used to blame the wrong cause.

A test of a bomb runs its child under an address-space limit and a timeout, so that
a regression fails the test instead of taking the machine down.
"""

import io
import os
import pickle
import resource
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy

from plumbing import backend, cli, data, explorer, figures, files, latent, npz
from support import ROOT, one_line_error, run_script

MEMORY_LIMIT = 4 << 30  # bytes of address space for a child fed a bomb
DEAD_PID = 999_999_999  # above any pid_max: never a live run


def bounded(*command, timeout=60, env=None):
    """Run ``python COMMAND`` under MEMORY_LIMIT and a timeout; the result has
    ``seconds``."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    start = time.perf_counter()
    result = subprocess.run([sys.executable, *map(str, command)], cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            preexec_fn=limit, capture_output=True, text=True,
                            timeout=timeout)
    result.seconds = time.perf_counter() - start
    return result


def load_array_in_child(path):
    return bounded("-c", "import sys; from plumbing import cli, latent; "
                   "cli.main_guard(lambda: latent.load_array(sys.argv[1]))", path)


def write_codes(folder, prefix="deep_autoe", count=300, dims=2, labels=None):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    features = folder / f"{prefix}_features.pickle"
    files.save_pickle(rng.normal(size=(count, dims)).astype(np.float32), features)
    labels = np.arange(count) % 10 if labels is None else labels
    files.save_pickle(np.asarray(labels, dtype=np.int64),
                      folder / f"{prefix}_labels.pickle")
    return features


# 1. Confinement: recovery touches only the files of a run's own set


def staging_with_journal(out, names, prefix="simple_autoe", pid=DEAD_PID):
    staging = out / f".{prefix}.saving-{pid}"
    staging.mkdir(parents=True)
    (staging / files.JOURNAL).write_text("\n".join(names))
    return staging


@pytest.mark.parametrize("name", ["../victim", "simple_autoe_x/../../victim",
                                  "/tmp/victim", ".simple_autoe_hidden",
                                  "deep_autoe_features.pickle", ""])
def test_a_journal_naming_other_files_is_refused_and_nothing_moves(tmp_path, name):
    out = tmp_path / "out"
    staging = staging_with_journal(out, ["simple_autoe_features.pickle", name])
    (staging / "simple_autoe_features.pickle").write_text("staged")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    with pytest.raises(cli.UserError) as refused:
        files.recover(out)
    assert "nothing in it was touched" in str(refused.value)
    assert victim.read_text() == "precious"
    assert (staging / "simple_autoe_features.pickle").read_text() == "staged"
    assert not (out / "simple_autoe_features.pickle").exists()


def test_a_staging_name_that_is_a_link_is_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "simple_autoe_features.pickle").write_text("precious")
    (elsewhere / files.JOURNAL).write_text("simple_autoe_features.pickle")
    out = tmp_path / "out"
    out.mkdir()
    link = out / f".simple_autoe.saving-{DEAD_PID}"
    link.symlink_to(elsewhere)
    with pytest.raises(cli.UserError) as refused:
        files.check_staging(out)
    assert str(link) in str(refused.value) and "a link" in str(refused.value)
    assert sorted(p.name for p in elsewhere.iterdir()) == [
        files.JOURNAL, "simple_autoe_features.pickle"]
    assert link.is_symlink()


def test_a_journal_entry_that_is_a_link_is_not_moved(tmp_path):
    out = tmp_path / "out"
    staging = staging_with_journal(out, ["simple_autoe_features.pickle"])
    secret = tmp_path / "secret"
    secret.write_text("precious")
    (staging / "simple_autoe_features.pickle").symlink_to(secret)
    with pytest.raises(cli.UserError, match="not a regular file"):
        files.recover(out)
    assert not (out / "simple_autoe_features.pickle").exists()
    assert secret.read_text() == "precious"


def test_a_staging_folder_with_links_inside_is_removed_without_following_them(
        tmp_path):
    out = tmp_path / "out"
    staging = out / f".simple_autoe.saving-{DEAD_PID}"  # no journal: discarded
    staging.mkdir(parents=True)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file").write_text("precious")
    (staging / "simple_autoe_link").symlink_to(keep)
    files.recover(out)
    assert not staging.exists() and (keep / "file").read_text() == "precious"


def test_something_planted_at_this_runs_staging_name_is_said(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    planted = out / f".simple_autoe.saving-{os.getpid()}"
    planted.write_text("not a folder")
    with pytest.raises(cli.UserError, match="it is a file, not a folder"):
        files.check_staging(out)
    planted.unlink()
    outputs = files.OutputSet(out, "simple_autoe")  # checked free: then planted
    planted.mkdir()
    with pytest.raises(cli.UserError, match="appeared during training"):
        with outputs:
            pass
    assert planted.is_dir()  # not ours: left alone


def test_a_planted_staging_link_stops_training_before_it_starts(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f".simple_autoe.saving-{DEAD_PID}").symlink_to(tmp_path)
    result = run_script("simple_autoencoder.py", "--data", "sample", "--epochs", 1,
                        "--limit", 300, "--out-dir", out)
    assert result.returncode == 2
    line = one_line_error(result)
    assert f".simple_autoe.saving-{DEAD_PID}" in line and "a link" in line, line
    assert "Epoch" not in result.stdout


# 2. Bounded reads: only a regular file of a size that fits its purpose


def test_a_pipe_for_features_is_refused_at_once(tmp_path):
    fifo = tmp_path / "deep_autoe_features.pickle"
    os.mkfifo(fifo)
    result = bounded("visualize_latent_space.py", fifo, timeout=60)
    assert result.returncode == 2
    assert "not a regular file" in one_line_error(result)
    assert result.seconds < 30


@pytest.mark.parametrize("what", ["pipe", "huge"])
def test_a_pipe_or_a_huge_file_for_data_is_refused(tmp_path, what):
    path = tmp_path / "mnist.npz"
    if what == "pipe":
        os.mkfifo(path)
    else:
        with open(path, "wb") as f:  # sparse: no disk space taken
            f.truncate(npz.DATA_MAX_BYTES + 1)
    with pytest.raises(cli.UserError) as refused:
        data.load_mnist(str(path))
    expected = "not a regular file" if what == "pipe" else "more than an .npz file"
    assert expected in str(refused.value) and str(path) in str(refused.value)


def test_huge_features_are_refused_before_reading(tmp_path):
    path = tmp_path / "deep_autoe_features.pickle"
    with open(path, "wb") as f:
        f.truncate(latent.FEATURES_MAX_BYTES + 1)
    with pytest.raises(cli.UserError, match="MiB, more than a .pickle file can be"):
        latent.load_array(path)


def test_an_unreadable_decoder_is_not_called_missing(tmp_path, monkeypatch):
    decoder = tmp_path / "variational_autoe_decoder.keras"
    decoder.write_bytes(b"PK")
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path) == str(decoder):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", denied)  # root reads whatever chmod says
    with pytest.raises(cli.UserError) as refused:
        explorer._load_decoder(decoder)
    assert "cannot read it (Permission denied)" in str(refused.value)
    assert "not found" not in str(refused.value).lower()


# 3. Allocation bombs: a small pickle that asks numpy for gigabytes


class Reduce:
    """Pickles as ``func(*args)`` (then ``state`` set by BUILD)."""

    def __init__(self, func, args, state=None):
        self.value = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.value


RECONSTRUCT = np._core.multiarray._reconstruct
BOMBS = {
    "huge shape": Reduce(RECONSTRUCT, (np.ndarray, (1 << 33,), b"b")),
    "huge state": Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
                         (1, (1 << 33,), np.dtype("f8"), False, b"")),
    "subarray dtype": Reduce(RECONSTRUCT, (np.ndarray, (8,),
                                           np.dtype(("f4", (1 << 28,))))),
    "frombuffer": Reduce(np._core.numeric._frombuffer,
                         (b"", np.dtype("f8"), (1 << 33,), "C")),
    "scalar": Reduce(np._core.multiarray.scalar, (np.dtype(("f4", (1 << 28,))), b"")),
    "ndarray call": Reduce(np.ndarray, ((1 << 33,),)),
}


def bomb_bytes(case):
    if case == "bytearray8":  # protocol 5: "a bytearray of 1 TB follows"
        return b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"."
    if case == "many instructions":
        return b"\x80\x02]" + b"K\x01a" * 50_000 + b"."
    return pickle.dumps(BOMBS[case], protocol=2)


@pytest.mark.parametrize("case", [*BOMBS, "bytearray8", "many instructions"])
def test_a_pickle_bomb_is_refused_before_allocating(tmp_path, case):
    path = tmp_path / "bomb.pickle"
    path.write_bytes(bomb_bytes(case))
    assert path.stat().st_size < 400_000
    result = load_array_in_child(path)
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_line_error(result)
    assert "refused to load" in line or "truncated" in line, line
    assert "MemoryError" not in line


def test_the_visualiser_refuses_a_pickle_bomb_in_one_line(tmp_path):
    path = tmp_path / "deep_autoe_features.pickle"
    path.write_bytes(bomb_bytes("huge shape"))
    result = bounded("visualize_latent_space.py", path)
    assert result.returncode == 2
    assert "more than its" in one_line_error(result)


def test_real_arrays_still_load_under_the_checks(tmp_path):
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        for array in (np.arange(12, dtype=np.float32).reshape(3, 4),
                      np.float32(1.5),
                      np.asfortranarray(np.ones((3, 2)))):
            path = tmp_path / f"{protocol}.pickle"
            path.write_bytes(pickle.dumps(array, protocol=protocol))
            assert np.array_equal(latent.load_pickle(path), array)


# 4. Decompression bombs: an .npz declaring gigabytes


def write_npz(path, **arrays):
    rng = np.random.default_rng(0)
    members = {"x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
               "y_train": np.arange(20) % 10,
               "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
               "y_test": np.arange(10) % 10, **arrays}
    np.savez(path, **members)
    return path


def test_an_npz_declaring_gigabytes_is_refused_from_its_header(tmp_path):
    path = write_npz(tmp_path / "bomb.npz")
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                        "shape": (5_000_000, 28, 28)})  # 3.9 GB
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x_test.npy.tmp", b"")  # keep zipfile quiet about duplicates
    members = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    members["x_train.npy"] = header.getvalue()
    del members["x_test.npy.tmp"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    result = bounded("-c", "import sys; from plumbing import cli, data; "
                     "cli.main_guard(lambda: data.load_mnist(sys.argv[1]))", path)
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_line_error(result)
    assert "(5000000, 28, 28)" in line and "forged" in line, line
    assert result.seconds < 30


def test_too_many_images_are_refused_from_the_headers(tmp_path):
    shapes = {"x_train": ((200_000, 28, 28), np.dtype("u1")),
              "y_train": ((200_000,), np.dtype("u1")),
              "x_test": ((200_000, 28, 28), np.dtype("u1")),
              "y_test": ((200_000,), np.dtype("u1"))}
    with pytest.raises(cli.UserError, match="400,000 images, more than"):
        npz._check_headers(shapes, tmp_path / "big.npz")


def test_colour_images_are_refused_in_one_line(tmp_path):
    path = write_npz(tmp_path / "rgb.npz",
                     x_train=np.zeros((20, 28, 28, 3), np.uint8),
                     x_test=np.zeros((10, 28, 28, 3), np.uint8))
    result = run_script("benchmarks/compare_speed.py", "--data", path, timeout=60)
    assert result.returncode == 2
    assert "colour images? MNIST is grayscale" in one_line_error(result)


# 5. One line, always


def test_the_vae_plane_with_a_bad_backend_is_one_line(tmp_path):
    features = write_codes(tmp_path, prefix="variational_autoe", dims=2)
    (tmp_path / "variational_autoe_decoder.keras").write_bytes(b"PK\x05\x06" + bytes(18))
    result = run_script("visualize_latent_space.py", features, "--html",
                        backend="nonsense", timeout=120)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "KERAS_BACKEND=nonsense" in line and "tensorflow, jax or torch" in line


def test_import_keras_names_a_missing_backend(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setattr(backend, "backend_installed", lambda name: False)
    with pytest.raises(cli.UserError, match="torch is not installed: pip install"):
        backend.import_keras()


@pytest.mark.parametrize("argv, expected", [
    (["benchmarks/run_all.py", "--only", "nonsense", "deep_autoe"],
     "--only nonsense: no such model"),
    (["benchmarks/compare_speed.py", "--data", "x.npz", "--epochs", "1"],
     "must be at least 2"),
])
def test_benchmarks_refuse_bad_options_in_one_line(argv, expected):
    result = run_script(*argv, timeout=60)
    assert result.returncode == 2
    assert expected in one_line_error(result)


def test_compare_speed_names_a_backend_that_is_not_installed(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import compare_speed
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setattr(compare_speed, "backend_installed", lambda name: name != "jax")
    monkeypatch.setattr(sys, "argv", ["compare_speed.py", "--data",
                                      str(write_npz(tmp_path / "m.npz")),
                                      "--backends", "tensorflow", "jax"])
    with pytest.raises(cli.UserError, match="--backends jax: not installed"):
        compare_speed.main()


# 6. The right cause


def test_too_few_codes_blame_limit_not_a_collapse(tmp_path):
    features = write_codes(tmp_path, count=5, dims=32)
    result = run_script("visualize_latent_space.py", features, timeout=60)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "only 5 codes" in line and "--limit" in line and "collapse" not in line


def test_blank_training_images_are_refused_before_training(tmp_path):
    path = write_npz(tmp_path / "blank.npz", x_train=np.zeros((20, 28, 28), np.uint8))
    with pytest.raises(cli.UserError, match="training images are blank"):
        data.load_mnist(str(path))


# 7. No silently wrong results


def test_complex_features_are_refused(tmp_path):
    with pytest.raises(cli.UserError, match="complex numbers"):
        latent.check_features(np.ones((10, 4), np.complex64) * 1j, tmp_path / "f")


def test_one_digit_only_gives_no_accuracy(tmp_path):
    features = write_codes(tmp_path, labels=np.full(300, 3))
    result = run_script("visualize_latent_space.py", features, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "every label" in result.stdout and "the digit 3" in result.stdout
    assert "5-NN accuracy of the 2-d codes (5-fold CV on 300 test images): n/a" \
        in result.stdout


# 8. Checks made before the work, not after


def test_an_unwritable_picture_folder_is_refused_before_tsne(tmp_path, monkeypatch):
    features = write_codes(tmp_path / "codes", dims=32)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", refuse)  # root writes anywhere
    with pytest.raises(cli.UserError) as refused:
        latent.parse_args([str(features)])
    line = str(refused.value)
    assert "cannot write in" in line and "--output PATH" in line, line


@pytest.mark.parametrize("reconstruction, kl", [(189.44, 5.94), (189.46, 5.96),
                                                (0.05, 0.05)])
def test_the_vae_terms_add_up_as_printed(reconstruction, kl):
    line = figures.format_terms(reconstruction, kl)
    total, terms = line.split(" = ")
    parts = [float(part.split()[-1]) for part in terms.split(" + ")]
    assert float(total) == pytest.approx(sum(parts))
