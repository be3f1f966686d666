"""Tests of visualize_latent_space.py on small, real files.

The key command-line behaviours (a PNG written, bad input and codes that could
crash scikit-learn refused with a one-line error, no deep-learning backend
imported, pipes and devices refused in seconds) are tested by running the script
as a subprocess. The many other cases call the same ``main`` in this process
through ``cli.main_guard``, as the script does, which is much faster (no
interpreter start per case). Codes that several tests map are made once for the
module with their t-SNE maps cached (``mapped_once``), and copied into each test's
own folder: only the tests of the t-SNE itself wait for one.
"""

import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, one_line_error, run_script

import plumbing
import visualize_latent_space as vls
from plumbing import cli, loading, map_report, safe_text, saved_codes
from plumbing import visualiser_options as options

# Few points and the fewest t-SNE iterations scikit-learn allows keep every run short.
FAST = ["--max-iter", "250"]


def digit_codes(n=300, dims=8, seed=0, spread=1.0):
    """Features with label structure: each digit's codes scattered around its centre."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    centres = rng.normal(0.0, 3.0, size=(10, dims))
    features = centres[labels] + rng.normal(0.0, spread, size=(n, dims))
    return features.astype(np.float32), labels


def write_pickle(obj, path, protocol=pickle.HIGHEST_PROTOCOL):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_pair(directory, prefix, features, labels):
    """<prefix>_features.pickle and <prefix>_labels.pickle, as training writes them."""
    features_path = write_pickle(features, directory / f"{prefix}_features.pickle")
    write_pickle(labels, directory / f"{prefix}_labels.pickle")
    return features_path


def visualize(*args):
    """The script in a subprocess, as a user runs it."""
    return run_script("visualize_latent_space.py", *args, timeout=120)


def visualize_after(setup, *args):
    """The script in a subprocess, after the Python code ``setup`` has run."""
    code = (f"{setup}\nimport runpy, sys\nsys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, "visualize_latent_space.py",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def in_process(capsys):
    """The script's main() in this process, with the script's error handling."""

    def call(*args):
        capsys.readouterr()
        try:
            cli.main_guard(lambda: vls.main([str(arg) for arg in args]))
            code = 0
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return call


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line_error(result)
    for fragment in fragments:
        assert fragment in line, line


def snapshot(directory):
    """Every file below ``directory`` and its bytes, to compare before and after."""
    return {path: path.read_bytes() for path in Path(directory).rglob("*")
            if path.is_file()}


@pytest.fixture(scope="module")
def mapped_once(tmp_path_factory):
    """Codes made once for the module: two models' with their t-SNE maps already
    cached (as FAST computes them), and a VAE's 2-d codes."""
    folder = tmp_path_factory.mktemp("mapped")
    for prefix in ("deep_autoe", "simple_autoe"):
        vls.main([str(write_pair(folder, prefix, *digit_codes())), *FAST])
    write_pair(folder, "variational_autoe", *digit_codes(dims=2))
    for png in folder.glob("*.png"):
        png.unlink()
    return folder


@pytest.fixture
def mapped(mapped_once, tmp_path):
    """Copy one model's files (codes, digits, cached map) from ``mapped_once`` into
    the test's own folder; return its features' path."""

    def copy(prefix):
        for source in mapped_once.glob(f"{prefix}_*"):
            shutil.copy2(source, tmp_path / source.name)
        return tmp_path / f"{prefix}_features.pickle"

    return copy


def quality_from(stdout):
    knn = re.search(r"5-NN accuracy .*: (\S+)", stdout).group(1)
    trust = re.search(r"Trustworthiness.*: (.+)", stdout).group(1)
    return knn, trust


# ---------------------------------------------------------------------------------
# One file from the command line
# ---------------------------------------------------------------------------------


def test_single_file_writes_png_cache_and_quality_figures(tmp_path):
    features, labels = digit_codes()
    path = write_pair(tmp_path, "deep_autoe", features, labels)

    result = visualize(path, *FAST)

    assert result.returncode == 0, result.stderr
    png = tmp_path / "deep_autoe_tsne.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Deep autoencoder" in result.stdout
    assert "iteration 200/250" in result.stdout  # progress while t-SNE runs
    knn, trust = quality_from(result.stdout)
    assert 0.5 < float(knn) <= 1.0  # chance would be about 0.1
    assert 0.5 < float(trust) <= 1.0
    record = json.loads((tmp_path / "deep_autoe_tsne.json").read_text())
    assert record["settings"]["max_iter"] == 250
    assert record["features_sha256"] == sha256(path)
    points = loading.load_pickle(tmp_path / "deep_autoe_tsne.pickle")
    assert points.shape == (300, 2) and points.dtype == np.float32


def test_wide_features_are_flattened_and_named(tmp_path, in_process):
    features, labels = digit_codes(dims=2 * 2 * 4)
    path = write_pair(tmp_path, "conv_autoe", features.reshape(-1, 2, 2, 4), labels)
    output = tmp_path / "elsewhere" / "map.png"

    result = in_process(path, "--output", output, *FAST)

    assert result.returncode == 0, result.stderr
    assert "2x2x4 = 16-d" in result.stdout
    assert output.exists() and not (tmp_path / "conv_autoe_tsne.png").exists()
    assert float(quality_from(result.stdout)[0]) > 0.5


def test_2d_features_are_plotted_without_tsne(tmp_path, in_process):
    features, labels = digit_codes(dims=2)
    path = write_pair(tmp_path, "variational_autoe", features, labels)

    result = in_process(path)

    assert result.returncode == 0, result.stderr
    assert "t-SNE of" not in result.stdout
    assert quality_from(result.stdout)[1] == "n/a (2-D features plotted as is)"
    assert (tmp_path / "variational_autoe_latent_2d.png").exists()
    assert not (tmp_path / "variational_autoe_tsne.pickle").exists()
    # The VAE script's own variational_autoe_latent.png is not overwritten.
    assert not (tmp_path / "variational_autoe_latent.png").exists()


def test_labels_flag_for_files_with_other_names(tmp_path, in_process):
    features, labels = digit_codes(dims=2)
    write_pickle(features, tmp_path / "codes.pickle")
    write_pickle(labels, tmp_path / "digits.pickle")

    without = in_process(tmp_path / "codes.pickle")
    with_labels = in_process(tmp_path / "codes.pickle", "--labels",
                             tmp_path / "digits.pickle")

    assert_one_line_error(without, "codes.pickle", "--labels")
    assert with_labels.returncode == 0, with_labels.stderr
    assert (tmp_path / "codes_latent_2d.png").exists()


# ---------------------------------------------------------------------------------
# Bad input: one line, exit status 2, no traceback, nothing overwritten
# ---------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command: what a malicious pickle would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def bad_features(tmp_path):
    """name -> (features bytes, labels bytes, words the error must contain)."""
    features, labels = digit_codes(n=50)
    good, good_labels = pickle.dumps(features), pickle.dumps(labels)
    nan = features.copy()
    nan[3, 4] = np.nan
    return {
        "not a pickle": (b"x_test,y_test\n0.1,3\n", good_labels, "not a pickled"),
        "truncated": (good[: len(good) // 2], good_labels, "truncated"),
        "empty file": (b"", good_labels, "empty file"),
        "a dict": (pickle.dumps({"features": features}), good_labels, "dict"),
        "a list": (pickle.dumps(features.tolist()), good_labels, "list"),
        "0-d": (pickle.dumps(np.float32(1.5)), good_labels, "0-d"),
        "0-d array": (pickle.dumps(np.array(1.5)), good_labels, "0-d"),
        "empty": (pickle.dumps(np.zeros((0, 8), np.float32)), pickle.dumps(labels[:0]),
                  "empty array"),
        "1-d": (pickle.dumps(labels.astype(np.float32)), good_labels, "1-d"),
        "strings": (pickle.dumps(np.array([["a", "b"]] * 50)), good_labels, "dtype"),
        "non-finite": (pickle.dumps(nan), good_labels, "non-finite"),
        "short labels": (good, pickle.dumps(labels[:-1]), "49 labels for 50 rows"),
        "2-d labels": (good, pickle.dumps(labels[:, None]), "shape (50, 1)"),
        "labels not digits": (good, pickle.dumps(labels + 10), "outside the digits"),
        "bad labels pickle": (good, b"garbage bytes\n", "not a pickled"),
        "a zip file": (b"PK\x03\x04zip", good_labels, "not a pickled"),
        "malicious labels": (good, pickle.dumps(Payload(tmp_path / "MARKER")),
                             "refused"),
    }


BAD_CASES = list(bad_features(Path("/unused")))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_error_and_nothing_is_overwritten(tmp_path, in_process,
                                                              case):
    features_bytes, labels_bytes, words = bad_features(tmp_path)[case]
    (tmp_path / "deep_autoe_features.pickle").write_bytes(features_bytes)
    (tmp_path / "deep_autoe_labels.pickle").write_bytes(labels_bytes)
    earlier = {name: f"{name} from an earlier run".encode() for name in
               ("deep_autoe_tsne.png", "deep_autoe_tsne.pickle",
                "deep_autoe_tsne.json")}
    for name, content in earlier.items():
        (tmp_path / name).write_bytes(content)

    result = in_process(tmp_path / "deep_autoe_features.pickle", *FAST)

    culprit = "labels" if "labels" in case else "features"
    assert_one_line_error(result, f"deep_autoe_{culprit}.pickle", words)
    for name, content in earlier.items():
        assert (tmp_path / name).read_bytes() == content
    assert not (tmp_path / "MARKER").exists()


def test_missing_files_are_named(tmp_path, in_process):
    features, labels = digit_codes(n=50)
    write_pickle(features, tmp_path / "deep_autoe_features.pickle")

    no_features = in_process(tmp_path / "simple_autoe_features.pickle")
    no_labels = in_process(tmp_path / "deep_autoe_features.pickle")
    directory = in_process(tmp_path)

    assert_one_line_error(no_features, "simple_autoe_features.pickle", "no such file")
    assert_one_line_error(no_labels, "deep_autoe_labels.pickle", "no such file",
                          "--labels")
    assert_one_line_error(directory, str(tmp_path), "is a directory")


def test_malicious_pickle_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "MARKER"
    evil = write_pickle(Payload(marker), tmp_path / "deep_autoe_features.pickle")
    write_pickle(digit_codes(n=50)[1], tmp_path / "deep_autoe_labels.pickle")

    result = visualize(evil)

    assert_one_line_error(result, str(evil), "refused", "system")
    assert not marker.exists()
    # The file really is dangerous: plain pickle.load runs its command.
    subprocess.run([sys.executable, "-c", "import pickle, sys; "
                    "pickle.load(open(sys.argv[1], 'rb'))", str(evil)], check=True)
    assert marker.exists()


def test_bad_command_lines(tmp_path, in_process):
    features_path = write_pair(tmp_path, "deep_autoe", *digit_codes(n=50))

    nothing = in_process()
    both = in_process(features_path, "--all", tmp_path)
    too_few_iterations = in_process(features_path, "--max-iter", "100")
    too_high_perplexity = in_process(features_path, "--perplexity", "80", *FAST)

    assert_one_line_error(nothing, "FEATURES", "--all")
    assert_one_line_error(both, "FEATURES", "--all")
    assert_one_line_error(too_few_iterations, "--max-iter", "at least 250")
    assert_one_line_error(too_high_perplexity, "--perplexity 80", "there are 50")
    assert not (tmp_path / "deep_autoe_tsne.png").exists()


def test_help_shows_every_flag_with_its_default():
    result = visualize("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in ("--all", "--labels", "--output", "--perplexity", "--max-iter",
                 "--seed", "--max-points", "--threads", "--no-cache", "--html",
                 "--projector", "--show"):
        assert flag in text
    for default in ("(default: 30.0)", "(default: 500)", "(default: 1337)"):
        assert default in text


# ---------------------------------------------------------------------------------
# Safe loading, directly
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_loader_reads_arrays_of_every_protocol(tmp_path, protocol):
    features = digit_codes(n=20)[0].reshape(20, 2, 2, 2)
    path = write_pickle(features, tmp_path / "f.pickle", protocol)
    loaded = loading.load_pickle(path)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, features)
    assert loading.load_pickle(write_pickle([1, 2.5, (3,)], tmp_path / "l.pickle",
                                        protocol)) == [1, 2.5, (3,)]


def test_safe_loader_reads_files_written_under_numpy_1(tmp_path):
    # numpy 1 called numpy._core "numpy.core"; protocol 2 names it in plain text.
    data = pickle.dumps(np.arange(4, dtype=np.int64), protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    path = tmp_path / "old.pickle"
    path.write_bytes(old)
    assert np.array_equal(loading.load_pickle(path), np.arange(4))


def test_load_array_for_other_scripts(tmp_path):
    labels = digit_codes(n=20)[1]
    path = write_pickle(labels, tmp_path / "l.pickle")
    assert np.array_equal(loading.load_array(path), labels)
    with pytest.raises(cli.UserError, match="contains a dict"):
        loading.load_array(write_pickle({"labels": labels}, tmp_path / "d.pickle"))
    with pytest.raises(cli.UserError, match="refused"):
        loading.load_array(write_pickle(Payload(tmp_path / "MARKER"),
                                    tmp_path / "e.pickle"))
    assert not (tmp_path / "MARKER").exists()


def test_safe_loader_refuses_other_classes(tmp_path):
    from collections import OrderedDict

    path = write_pickle(OrderedDict(a=np.zeros(3)), tmp_path / "odict.pickle")
    with pytest.raises(cli.UserError, match="collections.OrderedDict"):
        loading.load_pickle(path)


# ---------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------


def tsne_run(path, *args):
    """Run main() in this process; return the t-SNE map it cached."""
    vls.main([str(path), *FAST, "--threads", "1", *map(str, args)])
    points = loading.load_pickle(path.with_name(path.name.replace("features", "tsne")))
    return points


def test_cache_is_reused_only_while_nothing_changed(tmp_path, capsys, mapped):
    path = mapped("deep_autoe")  # its map computed and cached by an earlier run
    cache = tmp_path / "deep_autoe_tsne.pickle"
    first = loading.load_pickle(cache)
    stamp = cache.stat().st_mtime_ns

    again = tsne_run(path)
    out = capsys.readouterr().out
    assert "using the cached t-SNE" in out and "t-SNE done" not in out
    assert cache.stat().st_mtime_ns == stamp
    assert np.array_equal(first, again)

    # Retrained model: new features under the same name -> a new map.
    write_pickle(digit_codes(seed=1)[0], path)
    retrained = tsne_run(path)
    assert "t-SNE done" in capsys.readouterr().out
    assert not np.array_equal(first, retrained)
    record = json.loads((tmp_path / "deep_autoe_tsne.json").read_text())
    assert record["features_sha256"] == sha256(path)

    # Other settings -> recomputed; the same settings again -> cached.
    tsne_run(path, "--perplexity", "10")
    assert "t-SNE done" in capsys.readouterr().out
    tsne_run(path, "--perplexity", "10")
    assert "using the cached t-SNE" in capsys.readouterr().out

    # --no-cache recomputes even though the cache matches.
    stamp = cache.stat().st_mtime_ns
    tsne_run(path, "--perplexity", "10", "--no-cache")
    assert "t-SNE done" in capsys.readouterr().out
    assert cache.stat().st_mtime_ns != stamp


def test_new_labels_or_a_tampered_cache_are_not_trusted(tmp_path, capsys, mapped):
    labels = digit_codes()[1]
    path = mapped("deep_autoe")  # its map cached

    write_pickle(np.roll(labels, 1), tmp_path / "deep_autoe_labels.pickle")
    tsne_run(path)
    assert "t-SNE done" in capsys.readouterr().out

    # A map left by an interrupted run no longer matches the record's hash.
    cache = tmp_path / "deep_autoe_tsne.pickle"
    write_pickle(np.zeros((300, 2), np.float32), cache)
    points = tsne_run(path)
    assert "t-SNE done" in capsys.readouterr().out
    assert points.std() > 0


def test_same_seed_same_picture(tmp_path):
    features, _ = digit_codes()
    args = options.parse_args(["--all", str(tmp_path), *FAST, "--seed", "7"])
    with vls.threadpool_limits(limits=1):
        a = vls.run_tsne(features, args)
        b = vls.run_tsne(features, args)
    assert a.shape == (300, 2) and np.array_equal(a, b)


def test_max_points_plots_a_stratified_sample(tmp_path, capsys):
    features, labels = digit_codes()
    path = write_pair(tmp_path, "deep_autoe", features, labels)

    points = tsne_run(path, "--max-points", "100")

    out = capsys.readouterr().out
    assert "a stratified sample of 100 of 300 codes" in out
    assert "5-fold CV on 100 test images" in out and "100 points" in out
    assert points.shape == (100, 2)
    keep = saved_codes.stratified_subsample(labels, 100, 1337)
    assert np.array_equal(np.bincount(labels[keep]), np.full(10, 10))
    assert not np.array_equal(keep, saved_codes.stratified_subsample(labels, 100, 1338))
    assert np.array_equal(saved_codes.stratified_subsample(labels, 500, 0),
                          np.arange(300))


# ---------------------------------------------------------------------------------
# Quality figures
# ---------------------------------------------------------------------------------


def test_knn_accuracy_sees_structure_and_flattens():
    features, labels = digit_codes(n=500, spread=2.0)
    accuracy = vls.knn_accuracy(features, labels)
    assert 0.6 < accuracy <= 1.0
    shuffled = vls.knn_accuracy(features, np.random.default_rng(0).permutation(labels))
    assert shuffled < 0.3
    assert vls.knn_accuracy(features.reshape(500, 2, 2, 2), labels) == accuracy
    assert np.isnan(vls.knn_accuracy(features[:3], labels[:3]))


# ---------------------------------------------------------------------------------
# --all
# ---------------------------------------------------------------------------------


def test_all_draws_one_panel_per_model_in_a_fixed_order(tmp_path, in_process,
                                                         mapped):
    # Unknown models' codes are 2-d here: the order is what counts, not their t-SNE.
    write_pair(tmp_path, "zeta_model", *digit_codes(dims=2, seed=5))
    write_pair(tmp_path, "variational_autoe", *digit_codes(dims=2, seed=1))
    conv, labels = digit_codes(dims=8, seed=2)
    write_pair(tmp_path, "conv_autoe", conv.reshape(-1, 2, 2, 2), labels)
    write_pair(tmp_path, "alpha_model", *digit_codes(dims=2, seed=4))
    mapped("simple_autoe")  # its t-SNE cached

    result = in_process("--all", tmp_path, *FAST)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "all_latent_spaces.png").read_bytes()[:4] == b"\x89PNG"
    assert "Simple autoencoder: using the cached t-SNE" in result.stdout
    table = result.stdout[result.stdout.index("Model"):].splitlines()[1:6]
    rows = [re.split(r"\s{2,}", line.strip()) for line in table]
    assert [row[0] for row in rows] == [
        "Simple autoencoder", "Convolutional autoencoder", "Variational autoencoder",
        "alpha_model", "zeta_model"]
    assert rows[1][1:3] == ["2x2x2", "8"]  # flattened
    assert rows[2][4] == "n/a (2-D, as is)"
    for row in rows:
        assert float(row[3]) > 0.5  # kNN accuracy; chance is about 0.1


def test_all_directory_problems(tmp_path, in_process, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a directory")

    missing = in_process("--all", tmp_path / "nowhere")
    empty = in_process("--all", tmp_path / "empty")
    a_file = in_process("--all", tmp_path / "notes.txt")

    assert_one_line_error(missing, "nowhere", "no such directory")
    assert_one_line_error(empty, "empty", "no *_features.pickle files")
    assert_one_line_error(a_file, "notes.txt", "not a directory")

    # Unreadable directory (chmod cannot make one unreadable for root, so simulate it).
    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(cli.UserError, match="cannot read it .Permission denied"):
        vls.main(["--all", str(tmp_path / "empty")])


def test_all_checks_every_file_before_any_work(tmp_path, in_process):
    write_pair(tmp_path, "simple_autoe", *digit_codes())
    (tmp_path / "deep_autoe_features.pickle").write_bytes(b"not a pickle")

    result = in_process("--all", tmp_path, *FAST)

    assert_one_line_error(result, "deep_autoe_features.pickle", "not a pickled")
    assert "t-SNE" not in result.stdout
    assert not (tmp_path / "all_latent_spaces.png").exists()


# ---------------------------------------------------------------------------------
# Degenerate codes: refused with one line, never a crash
# ---------------------------------------------------------------------------------


def degenerate_codes():
    """name -> (features, prefix, words the error must contain), for 300 codes."""
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(300, 8)).astype(np.float32)
    return {
        "all zeros": (np.zeros((300, 8), np.float32), "deep_autoe", "identical"),
        "all rows equal": (np.tile(np.arange(8, dtype=np.float32), (300, 1)),
                           "deep_autoe", "identical"),
        "four distinct codes": (np.repeat(spread[:4], 75, axis=0), "deep_autoe",
                                "only 4 distinct codes among 300"),
        "fewer distinct codes than the perplexity": (
            np.repeat(spread[:20], 15, axis=0), "deep_autoe",
            "--perplexity 30 needs more than 30 distinct codes, there are 20"),
        "spread too small for float32": (spread * np.float32(1e-30), "deep_autoe",
                                         "hardly differ"),
        "spread too large for float32": (spread * np.float32(1e30), "deep_autoe",
                                         "too far"),
        "2-d codes all equal": (np.ones((300, 2), np.float32), "variational_autoe",
                                "identical"),
    }


# scikit-learn's t-SNE dies with a segmentation fault on constant codes and on codes
# spread too little (or too much) for float32: the script must refuse them first.
# Those cases run in a process of their own, which a regression would kill instead
# of the test session: one process for all of them, each case in its own folder.
MAY_CRASH = ["all zeros", "all rows equal", "spread too small for float32",
             "spread too large for float32"]
EACH_IN_TURN = """
import contextlib, io, json, sys
import visualize_latent_space as vls
from plumbing import cli
results = []
for path in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main_guard(lambda: vls.main([path, "--max-iter", "250"]))
            code = 0
        except SystemExit as exit:
            code = exit.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def crash_cases(tmp_path_factory):
    """case -> (the script's result, its folder's files before) for MAY_CRASH."""
    folders, before = [], []
    for case in MAY_CRASH:
        features, prefix, _ = degenerate_codes()[case]
        folders.append(tmp_path_factory.mktemp("degenerate"))
        write_pair(folders[-1], prefix, features, digit_codes()[1])
        before.append(snapshot(folders[-1]))
    paths = [next(folder.glob("*_features.pickle")) for folder in folders]
    child = subprocess.run([sys.executable, "-c", EACH_IN_TURN, *map(str, paths)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr  # no case crashed the process
    results = json.loads(child.stdout.splitlines()[-1])
    return {case: (subprocess.CompletedProcess(case, *result), folder, snapshot_)
            for case, result, folder, snapshot_
            in zip(MAY_CRASH, results, folders, before)}


@pytest.mark.parametrize("case", list(degenerate_codes()))
def test_degenerate_features_are_refused_not_crashed_on(tmp_path, in_process, case,
                                                        crash_cases):
    features, prefix, words = degenerate_codes()[case]
    if case in MAY_CRASH:
        result, folder, before = crash_cases[case]
    else:
        folder = tmp_path
        path = write_pair(folder, prefix, features, digit_codes()[1])
        before = snapshot(folder)
        result = in_process(path, *FAST)

    assert result.returncode == 2, (result.returncode, result.stderr)
    assert_one_line_error(result, f"{prefix}_features.pickle", words)
    assert "t-SNE of" not in result.stdout
    assert snapshot(folder) == before


def test_all_refuses_degenerate_features_before_any_work(tmp_path):
    write_pair(tmp_path, "simple_autoe", *digit_codes())
    write_pair(tmp_path, "deep_autoe", np.zeros((300, 8), np.float32),
               digit_codes()[1])
    before = snapshot(tmp_path)

    result = visualize("--all", tmp_path, *FAST)

    assert result.returncode == 2, (result.returncode, result.stderr)
    assert_one_line_error(result, "deep_autoe_features.pickle", "identical")
    assert "t-SNE" not in result.stdout
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------
# Options: every one checked before any work
# ---------------------------------------------------------------------------------

BAD_OPTIONS = {
    "negative seed": (["--seed", "-1"], "--seed"),
    "seed above 2**32-1": (["--seed", str(2**32)], "--seed"),
    "fractional seed": (["--seed", "1.5"], "--seed"),
    "zero perplexity": (["--perplexity", "0"], "--perplexity"),
    "negative perplexity": (["--perplexity", "-3"], "--perplexity"),
    "NaN perplexity": (["--perplexity", "nan"], "--perplexity"),
    "infinite perplexity": (["--perplexity", "inf"], "--perplexity"),
    "zero iterations": (["--max-iter", "0"], "--max-iter"),
    "too few iterations": (["--max-iter", "100"], "--max-iter"),
    "iterations in words": (["--max-iter", "many"], "--max-iter"),
    "zero points": (["--max-points", "0"], "--max-points"),
    "negative points": (["--max-points", "-5"], "--max-points"),
    "zero threads": (["--threads", "0"], "--threads"),
    "threads in words": (["--threads", "two"], "--threads"),
    "empty --output": (["--output", ""], "--output"),
    "empty --labels": (["--labels", ""], "--labels"),
    "empty --projector": (["--projector", ""], "--projector"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_are_one_line_errors(tmp_path, in_process, case):
    bad, option = BAD_OPTIONS[case]
    path = write_pair(tmp_path, "deep_autoe", *digit_codes())
    before = snapshot(tmp_path)

    # The script checks its options before its slow imports, as main() does here;
    # one case goes through a process of its own, as a user runs it.
    result = visualize(path, *bad) if case == "negative seed" else \
        in_process(path, *bad)

    assert_one_line_error(result, option)
    assert snapshot(tmp_path) == before


def test_empty_paths_are_one_line_errors(tmp_path):
    empty_features = visualize("", *FAST)
    empty_all = visualize("--all", "", *FAST)
    assert_one_line_error(empty_features, "FEATURES", "must not be empty")
    assert_one_line_error(empty_all, "--all", "must not be empty")


def test_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path):
    path = write_pair(tmp_path, "deep_autoe", *digit_codes())
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    before = snapshot(tmp_path)

    result = visualize(path, "--output", tmp_path / "notes.txt" / "map.png", *FAST)

    assert_one_line_error(result, "--output", "notes.txt", "not a directory")
    assert "t-SNE" not in result.stdout
    assert snapshot(tmp_path) == before


def test_projector_folder_that_is_a_file_is_refused_before_any_work(tmp_path):
    path = write_pair(tmp_path, "deep_autoe", *digit_codes())
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    before = snapshot(tmp_path)

    result = visualize(path, "--projector", tmp_path / "notes.txt", *FAST)

    assert_one_line_error(result, "--projector", "notes.txt", "not a directory")
    assert snapshot(tmp_path) == before


def test_unwritable_output_is_one_line_error(tmp_path):
    path = write_pair(tmp_path, "variational_autoe", *digit_codes(dims=2))
    png = tmp_path / "variational_autoe_latent_2d.png"
    png.write_bytes(b"the figure of an earlier run")

    # Where nothing can be written: found before any work.
    nowhere = visualize(path, "--output", "/proc/map.png")
    # A write that fails once the figure is drawn (a full disk, say).
    disk_full = visualize_after(
        "import plumbing.figures\n"
        "def full(path):\n"
        "    raise OSError(28, 'No space left on device')\n"
        "plumbing.figures.atomic_path = full", path)

    assert_one_line_error(nowhere, "--output /proc/map.png", "cannot write")
    assert_one_line_error(disk_full, str(png), "No space left on device")
    assert png.read_bytes() == b"the figure of an earlier run"


# ---------------------------------------------------------------------------------
# Files from different runs
# ---------------------------------------------------------------------------------


def write_record(directory, prefix, names, wrong=()):
    """The training run's <prefix>_metrics.json, with the sha256 of each file of
    ``names`` (of another run for those in ``wrong``)."""
    hashes = {name: "0" * 64 if name in wrong else sha256(directory / name)
              for name in names}
    (directory / f"{prefix}_metrics.json").write_text(json.dumps({"files": hashes}))


def test_files_from_different_runs_are_refused(tmp_path, in_process, mapped):
    path = mapped("deep_autoe")
    names = ["deep_autoe_features.pickle", "deep_autoe_labels.pickle"]
    write_record(tmp_path, "deep_autoe", names, wrong=["deep_autoe_labels.pickle"])
    before = snapshot(tmp_path)

    single = visualize(path, *FAST)
    every = in_process("--all", tmp_path, *FAST)

    for result in (single, every):
        assert_one_line_error(result, "deep_autoe_labels.pickle",
                              "deep_autoe_metrics.json", "different runs")
    assert "t-SNE" not in single.stdout + every.stdout
    assert snapshot(tmp_path) == before

    write_record(tmp_path, "deep_autoe", names)  # the set belongs together
    assert in_process(path, *FAST).returncode == 0


def test_old_folders_without_a_files_record_still_plot(tmp_path, in_process):
    path = write_pair(tmp_path, "variational_autoe", *digit_codes(dims=2))
    (tmp_path / "variational_autoe_metrics.json").write_text('{"test_loss": 150.0}')

    result = in_process(path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "variational_autoe_latent_2d.png").exists()


# ---------------------------------------------------------------------------------
# --html and --projector: wired to plumbing.explorer (a stand-in here)
# ---------------------------------------------------------------------------------


def digit_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


@pytest.fixture
def explorer(monkeypatch):
    """A stand-in for plumbing.explorer that records its calls (and writes a page)."""
    calls = []
    stub = types.ModuleType("plumbing.explorer")

    def write_page(path, **kwargs):
        calls.append(("write_page", Path(path), kwargs))
        Path(path).write_text("<html></html>")

    def decode_plane(decoder_path, points):
        calls.append(("decode_plane", Path(decoder_path), {"points": points}))
        return "the plane"

    def write_projector(directory, **kwargs):
        calls.append(("write_projector", Path(directory), kwargs))

    stub.write_page, stub.decode_plane = write_page, decode_plane
    stub.write_projector = write_projector
    monkeypatch.setitem(sys.modules, "plumbing.explorer", stub)
    monkeypatch.setattr(plumbing, "explorer", stub, raising=False)
    return calls


def test_html_and_projector_get_the_map_codes_and_images(tmp_path, in_process,
                                                         explorer):
    features, labels = digit_codes()
    images = digit_images(300)
    conv = write_pair(tmp_path, "conv_autoe", features.reshape(-1, 2, 2, 2), labels)
    write_pickle(images, tmp_path / "conv_autoe_images.pickle")
    out = tmp_path / "figures" / "map.png"

    result = in_process(conv, "--html", "--projector", tmp_path / "projector",
                        "--output", out, "--max-points", "100", *FAST)

    assert result.returncode == 0, result.stderr
    (page_call, page, page_args), (projector_call, folder, projector_args) = explorer
    assert (page_call, page) == ("write_page", tmp_path / "figures" /
                                 "conv_autoe_explorer.html")
    keep = saved_codes.stratified_subsample(labels, 100, 1337)
    cached = loading.load_pickle(tmp_path / "conv_autoe_tsne.pickle")
    assert np.array_equal(page_args["points"], cached)  # the PNG's map
    assert page_args["points"].dtype == np.float32
    assert page_args["labels"].dtype == np.int64
    assert np.array_equal(page_args["labels"], labels[keep])
    assert np.array_equal(page_args["images"], images[keep])
    assert page_args["plane"] is None
    caption = " ".join(page_args["caption"])
    assert "Convolutional autoencoder" in caption and "5-NN accuracy" in caption
    assert "trustworthiness" in caption and "perplexity 30" in caption
    assert (projector_call, folder) == ("write_projector", tmp_path / "projector")
    assert projector_args["codes"].shape == (100, 8)
    assert projector_args["codes"].dtype == np.float32
    assert np.array_equal(projector_args["images"], images[keep])
    assert (tmp_path / "figures" / "conv_autoe_explorer.html").exists()


def test_html_of_2d_codes_decodes_the_plane_when_a_decoder_is_there(
        tmp_path, in_process, explorer):
    path = write_pair(tmp_path, "variational_autoe", *digit_codes(dims=2))
    write_pickle(digit_images(300), tmp_path / "variational_autoe_images.pickle")

    without = in_process(path, "--html")
    # A real decoder file: it is inspected as a zip before the plane is decoded.
    from plumbing import backend

    keras = backend.import_keras()
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Dense(784)(inputs)).save(
        tmp_path / "variational_autoe_decoder.keras")
    with_decoder = in_process(path, "--html")

    assert without.returncode == 0 and with_decoder.returncode == 0
    assert "no plane of decoded digits" in without.stdout
    assert [call[0] for call in explorer] == ["write_page", "decode_plane",
                                              "write_page"]
    assert explorer[0][2]["plane"] is None
    assert explorer[1][1] == tmp_path / "variational_autoe_decoder.keras"
    assert explorer[2][2]["plane"] == "the plane"
    assert "codes plotted as they are" in explorer[2][2]["caption"]


def test_all_writes_one_page_per_model_and_one_projector_folder(tmp_path, in_process,
                                                                explorer, mapped):
    mapped("simple_autoe")
    mapped("variational_autoe")
    for prefix in ("simple_autoe", "variational_autoe"):
        write_pickle(digit_images(300), tmp_path / f"{prefix}_images.pickle")

    result = in_process("--all", tmp_path, "--html", "--projector",
                        tmp_path / "projector", "--output", tmp_path / "x" / "all.png",
                        *FAST)

    assert result.returncode == 0, result.stderr
    written = [(call[0], call[1]) for call in explorer]
    assert written == [
        ("write_page", tmp_path / "simple_autoe_explorer.html"),
        ("write_projector", tmp_path / "projector"),
        ("write_page", tmp_path / "variational_autoe_explorer.html"),
        ("write_projector", tmp_path / "projector")]


def test_missing_images_file_is_said_and_the_page_has_none(tmp_path, in_process,
                                                           explorer, mapped):
    path = mapped("deep_autoe")

    result = in_process(path, "--html", *FAST)

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "images.pickle" in line]
    assert len(lines) == 1
    assert "No deep_autoe_images.pickle beside the features" in lines[0]
    assert "no digit images" in lines[0] and "retrain" in lines[0]
    assert explorer[0][2]["images"] is None


@pytest.mark.parametrize("images, words", [
    (digit_images(299), "shape (299, 28, 28)"),
    (digit_images(300).astype(np.float32), "float32"),
    (digit_images(300)[:, :14], "shape (300, 14, 28)"),
])
def test_bad_images_file_is_refused(tmp_path, in_process, explorer, images, words):
    path = write_pair(tmp_path, "deep_autoe", *digit_codes())
    write_pickle(images, tmp_path / "deep_autoe_images.pickle")

    result = in_process(path, "--html", *FAST)

    assert_one_line_error(result, "deep_autoe_images.pickle", words)
    assert not explorer


def test_images_from_another_run_are_refused(tmp_path, in_process, explorer, mapped):
    path = mapped("deep_autoe")
    write_pickle(digit_images(300), tmp_path / "deep_autoe_images.pickle")
    names = ["deep_autoe_features.pickle", "deep_autoe_labels.pickle",
             "deep_autoe_images.pickle"]
    write_record(tmp_path, "deep_autoe", names, wrong=["deep_autoe_images.pickle"])

    plain = in_process(path, *FAST)  # without --html the images are not used
    page = in_process(path, "--html", *FAST)

    assert plain.returncode == 0, plain.stderr
    assert_one_line_error(page, "deep_autoe_images.pickle", "different runs")


def test_real_html_page_end_to_end(tmp_path, mapped):
    pytest.importorskip("bokeh")
    pytest.importorskip("plumbing.explorer")
    path = mapped("deep_autoe")
    write_pickle(digit_images(300), tmp_path / "deep_autoe_images.pickle")

    result = visualize(path, "--html", *FAST)

    assert result.returncode == 0, result.stderr
    page = (tmp_path / "deep_autoe_explorer.html").read_text()
    assert "Deep autoencoder" in page and "5-NN accuracy" in page


# ---------------------------------------------------------------------------------
# No deep-learning backend, and a quick --help
# ---------------------------------------------------------------------------------

BACKENDS = ("keras", "tensorflow", "jax", "jaxlib", "torch")
# Refuses and records every import of a backend, even one inside try/except: a user
# who installed only requirements.txt may lack any of them (JAX, for one).
BLOCK_BACKENDS = f"""
import atexit, importlib.abc, sys
tried = []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BACKENDS!r}:
            tried.append(name)
            raise ImportError(name + " is not installed")
sys.meta_path.insert(0, Block())
atexit.register(lambda: print("TRIED", *tried, "\\nMODULES", *sorted(sys.modules)))
"""


def imported(result):
    """The backends a run tried to import, and every module it imported."""
    tried = re.search(r"^TRIED(.*)$", result.stdout, re.M).group(1).split()
    modules = re.search(r"^MODULES(.*)$", result.stdout, re.M).group(1).split()
    return tried, {name.split(".")[0] for name in modules}


def test_visualiser_imports_no_deep_learning_backend(tmp_path, mapped):
    # --all loads, maps and draws a t-SNE model and 2-d codes: all one file does.
    mapped("deep_autoe")
    mapped("variational_autoe")

    result = visualize_after(BLOCK_BACKENDS, "--all", tmp_path, *FAST, "--no-cache")

    assert result.returncode == 0, result.stderr
    tried, modules = imported(result)
    assert tried == [] and not modules & set(BACKENDS)
    assert "sklearn" in modules and "t-SNE done" in result.stdout  # it did the work
    assert (tmp_path / "all_latent_spaces.png").exists()


def test_help_is_quick_and_starts_in_plain_words():
    start = time.perf_counter()
    result = visualize_after(BLOCK_BACKENDS, "--help")
    seconds = time.perf_counter() - start

    assert result.returncode == 0, result.stderr
    tried, modules = imported(result)
    # scikit-learn and matplotlib take seconds to import; --help needs neither.
    assert tried == [] and not modules & {*BACKENDS, "sklearn", "matplotlib"}
    assert seconds < 10
    description = result.stdout.split("\n\n")[1]
    assert description.startswith("Draw the codes a training script saved as a "
                                  "picture of the test digits")


# ---------------------------------------------------------------------------------
# Names and files planted by others: never a broken figure, never a hang
# ---------------------------------------------------------------------------------

MEMORY_LIMIT = 3 << 30  # bytes of address space for a child fed a pipe or a device


def bounded_visualize(*args, timeout=120):
    """The script in a subprocess under MEMORY_LIMIT and a timeout; the result has
    ``seconds``."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    start = time.perf_counter()
    result = subprocess.run([sys.executable, "visualize_latent_space.py",
                             *map(str, args)], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, preexec_fn=limit)
    result.seconds = time.perf_counter() - start
    return result


def test_names_with_dollar_signs_and_backslashes_are_drawn_as_written(tmp_path,
                                                                      in_process):
    # matplotlib reads text between two $ as mathematics: "$x^2$" would be typeset,
    # and a malformed one ("$\\frac$") stops the figure.
    prefix = "$x^2$_a\\b"
    path = write_pair(tmp_path, prefix, *digit_codes(dims=2))
    (tmp_path / f"{prefix}_metrics.json").write_text(
        json.dumps({"data": {"name": "my_$\\frac{$digits.npz"}}))

    result = in_process(path, "--html")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"{prefix}_latent_2d.png").read_bytes()[:4] == b"\x89PNG"
    assert f"of my_$\\frac{{$digits.npz from {path}" in result.stdout
    page = (tmp_path / f"{prefix}_explorer.html").read_text()
    assert "my_$\\frac{$digits.npz" in page  # a page shows it as it is, unescaped
    assert safe_text.plain("$x^2$ \\ $") == "\\$x^2\\$ \\ \\$"


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path, in_process):
    pytest.importorskip("bokeh")
    pytest.importorskip("tensorboard")
    prefix = os.fsdecode(b"\xff$x")  # a byte that no UTF-8 text holds
    path = write_pair(tmp_path, prefix, *digit_codes(dims=2))

    result = in_process(path, "--html", "--projector", tmp_path / "projector")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"{prefix}_latent_2d.png").exists()
    assert "\\udcff$x" in (tmp_path / f"{prefix}_explorer.html").read_text()
    config = (tmp_path / "projector" / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "\\\\udcff$x_tensors.tsv"' in config
    assert (tmp_path / "projector" / "\\udcff$x_tensors.tsv").exists()


def test_text_a_figure_cannot_draw_fails_before_the_tsne(tmp_path, in_process,
                                                         monkeypatch):
    path = write_pair(tmp_path, "$\\frac$", *digit_codes())
    monkeypatch.setattr(map_report, "plain", safe_text.shown)  # no escaping

    result = in_process(path, *FAST)

    assert_one_line_error(result, "$\\frac$_features.pickle", "cannot be drawn")
    assert "t-SNE of" not in result.stdout


@pytest.mark.parametrize("planted", ["pipe", "huge"])
def test_a_projector_config_that_is_no_config_is_refused_before_any_work(tmp_path,
                                                                         planted):
    path = write_pair(tmp_path, "deep_autoe", *digit_codes())
    folder = tmp_path / "projector"
    folder.mkdir()
    config = folder / "projector_config.pbtxt"
    if planted == "pipe":
        os.mkfifo(config)
    else:
        with open(config, "wb") as f:  # sparse: no disk space taken
            f.truncate(64 << 20)

    result = bounded_visualize(path, "--projector", folder, *FAST)

    expected = "not a regular file" if planted == "pipe" else "MiB, more than"
    assert_one_line_error(result, "projector_config.pbtxt", expected)
    assert "t-SNE" not in result.stdout and result.seconds < 60
    assert sorted(p.name for p in folder.iterdir()) == ["projector_config.pbtxt"]


@pytest.mark.parametrize("planted", ["pipe", "link to /dev/zero"])
def test_a_decoder_that_is_no_file_is_refused_in_seconds(tmp_path, planted):
    path = write_pair(tmp_path, "variational_autoe", *digit_codes(dims=2))
    decoder = tmp_path / "variational_autoe_decoder.keras"
    if planted == "pipe":
        os.mkfifo(decoder)
    else:
        decoder.symlink_to("/dev/zero")
    names = ["variational_autoe_features.pickle", "variational_autoe_labels.pickle"]
    write_record(tmp_path, "variational_autoe", names)  # the record check hashes

    result = bounded_visualize(path, "--html")

    assert_one_line_error(result, "variational_autoe_decoder.keras",
                          "not a regular file")
    assert result.seconds < 60  # the imports alone take seconds on a busy machine
    assert not (tmp_path / "variational_autoe_latent_2d.png").exists()
