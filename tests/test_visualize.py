"""Tests of visualize_latent_space.py on small, real files made in each test.

The key command-line behaviours (a PNG written, a malicious pickle refused, a one-line
error without traceback) are tested by running the script as a subprocess. The many
other cases call the same ``main`` in this process through ``common.main_guard``, as
the script does, which is much faster (no interpreter start per case).
"""

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "visualize_latent_space.py"
sys.path.insert(0, str(REPO))

import common  # noqa: E402
import visualize_latent_space as vls  # noqa: E402

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
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli(capsys):
    """The script's main() in this process, with the script's error handling."""

    def call(*args):
        capsys.readouterr()
        try:
            common.main_guard(lambda: vls.main([str(arg) for arg in args]))
            code = 0
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return call


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


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
    points = vls.load_pickle(tmp_path / "deep_autoe_tsne.pickle")
    assert points.shape == (300, 2) and points.dtype == np.float32


def test_wide_features_are_flattened_and_named(tmp_path, cli):
    features, labels = digit_codes(dims=2 * 2 * 4)
    path = write_pair(tmp_path, "conv_autoe", features.reshape(-1, 2, 2, 4), labels)
    output = tmp_path / "elsewhere" / "map.png"

    result = cli(path, "--output", output, *FAST)

    assert result.returncode == 0, result.stderr
    assert "2x2x4 = 16-d" in result.stdout
    assert output.exists() and not (tmp_path / "conv_autoe_tsne.png").exists()
    assert float(quality_from(result.stdout)[0]) > 0.5


def test_2d_features_are_plotted_without_tsne(tmp_path, cli):
    features, labels = digit_codes(dims=2)
    path = write_pair(tmp_path, "variational_autoe", features, labels)

    result = cli(path)

    assert result.returncode == 0, result.stderr
    assert "t-SNE of" not in result.stdout
    assert quality_from(result.stdout)[1] == "n/a (2-D features plotted as is)"
    assert (tmp_path / "variational_autoe_latent_2d.png").exists()
    assert not (tmp_path / "variational_autoe_tsne.pickle").exists()
    # The VAE script's own variational_autoe_latent.png is not overwritten.
    assert not (tmp_path / "variational_autoe_latent.png").exists()


def test_labels_flag_for_files_with_other_names(tmp_path, cli):
    features, labels = digit_codes(dims=2)
    write_pickle(features, tmp_path / "codes.pickle")
    write_pickle(labels, tmp_path / "digits.pickle")

    without = cli(tmp_path / "codes.pickle")
    with_labels = cli(tmp_path / "codes.pickle", "--labels", tmp_path / "digits.pickle")

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
def test_bad_input_is_one_line_error_and_nothing_is_overwritten(tmp_path, cli, case):
    features_bytes, labels_bytes, words = bad_features(tmp_path)[case]
    (tmp_path / "deep_autoe_features.pickle").write_bytes(features_bytes)
    (tmp_path / "deep_autoe_labels.pickle").write_bytes(labels_bytes)
    earlier = {name: f"{name} from an earlier run".encode() for name in
               ("deep_autoe_tsne.png", "deep_autoe_tsne.pickle",
                "deep_autoe_tsne.json")}
    for name, content in earlier.items():
        (tmp_path / name).write_bytes(content)

    result = cli(tmp_path / "deep_autoe_features.pickle", *FAST)

    culprit = "labels" if "labels" in case else "features"
    assert_one_line_error(result, f"deep_autoe_{culprit}.pickle", words)
    for name, content in earlier.items():
        assert (tmp_path / name).read_bytes() == content
    assert not (tmp_path / "MARKER").exists()


def test_missing_files_are_named(tmp_path, cli):
    features, labels = digit_codes(n=50)
    write_pickle(features, tmp_path / "deep_autoe_features.pickle")

    no_features = visualize(tmp_path / "simple_autoe_features.pickle")  # a process
    no_labels = cli(tmp_path / "deep_autoe_features.pickle")
    directory = cli(tmp_path)

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


def test_bad_command_lines(tmp_path, cli):
    features_path = write_pair(tmp_path, "deep_autoe", *digit_codes(n=50))

    nothing = cli()
    both = cli(features_path, "--all", tmp_path)
    too_few_iterations = cli(features_path, "--max-iter", "100")
    too_high_perplexity = cli(features_path, "--perplexity", "80", *FAST)

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
                 "--seed", "--max-points", "--threads", "--no-cache", "--show"):
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
    loaded = vls.load_pickle(path)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, features)
    assert vls.load_pickle(write_pickle([1, 2.5, (3,)], tmp_path / "l.pickle",
                                        protocol)) == [1, 2.5, (3,)]


def test_safe_loader_reads_files_written_under_numpy_1(tmp_path):
    # numpy 1 called numpy._core "numpy.core"; protocol 2 names it in plain text.
    data = pickle.dumps(np.arange(4, dtype=np.int64), protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data
    path = tmp_path / "old.pickle"
    path.write_bytes(old)
    assert np.array_equal(vls.load_pickle(path), np.arange(4))


def test_load_array_for_other_scripts(tmp_path):
    labels = digit_codes(n=20)[1]
    assert np.array_equal(vls.load_array(write_pickle(labels, tmp_path / "l.pickle")),
                          labels)
    with pytest.raises(common.UserError, match="contains a dict"):
        vls.load_array(write_pickle({"labels": labels}, tmp_path / "d.pickle"))
    with pytest.raises(common.UserError, match="refused"):
        vls.load_array(write_pickle(Payload(tmp_path / "MARKER"),
                                    tmp_path / "e.pickle"))
    assert not (tmp_path / "MARKER").exists()


def test_safe_loader_refuses_other_classes(tmp_path):
    from collections import OrderedDict

    path = write_pickle(OrderedDict(a=np.zeros(3)), tmp_path / "odict.pickle")
    with pytest.raises(common.UserError, match="collections.OrderedDict"):
        vls.load_pickle(path)


# ---------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------


def tsne_run(path, *args):
    """Run main() in this process; return the t-SNE map it cached."""
    vls.main([str(path), *FAST, "--threads", "1", *map(str, args)])
    points = vls.load_pickle(path.with_name(path.name.replace("features", "tsne")))
    return points


def test_cache_is_reused_only_while_nothing_changed(tmp_path, capsys):
    features, labels = digit_codes()
    path = write_pair(tmp_path, "deep_autoe", features, labels)
    cache = tmp_path / "deep_autoe_tsne.pickle"

    first = tsne_run(path)
    assert "t-SNE done" in capsys.readouterr().out
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


def test_new_labels_or_a_tampered_cache_are_not_trusted(tmp_path, capsys):
    features, labels = digit_codes()
    path = write_pair(tmp_path, "deep_autoe", features, labels)
    tsne_run(path)
    capsys.readouterr()

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
    settings = vls.tsne_settings(vls.make_parser().parse_args([*FAST, "--seed", "7"]))
    with vls.threadpool_limits(limits=1):
        a = vls.run_tsne(features, settings)
        b = vls.run_tsne(features, settings)
    assert a.shape == (300, 2) and np.array_equal(a, b)


def test_max_points_plots_a_stratified_sample(tmp_path, capsys):
    features, labels = digit_codes()
    path = write_pair(tmp_path, "deep_autoe", features, labels)

    points = tsne_run(path, "--max-points", "100")

    out = capsys.readouterr().out
    assert "a stratified sample of 100 of 300 codes" in out
    assert "5-fold CV on 100 test digits" in out and "100 points" in out
    assert points.shape == (100, 2)
    keep = vls.stratified_subsample(labels, 100, 1337)
    assert np.array_equal(np.bincount(labels[keep]), np.full(10, 10))
    assert not np.array_equal(keep, vls.stratified_subsample(labels, 100, 1338))
    assert np.array_equal(vls.stratified_subsample(labels, 500, 0), np.arange(300))


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


def test_all_draws_one_panel_per_model_in_a_fixed_order(tmp_path, cli):
    write_pair(tmp_path, "zeta_model", *digit_codes(seed=5))
    write_pair(tmp_path, "variational_autoe", *digit_codes(dims=2, seed=1))
    conv, labels = digit_codes(dims=8, seed=2)
    write_pair(tmp_path, "conv_autoe", conv.reshape(-1, 2, 2, 2), labels)
    write_pair(tmp_path, "alpha_model", *digit_codes(seed=4))
    simple = write_pair(tmp_path, "simple_autoe", *digit_codes(seed=3))
    assert cli(simple, *FAST).returncode == 0  # its t-SNE is then cached

    result = visualize("--all", tmp_path, *FAST)

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


def test_all_directory_problems(tmp_path, cli, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a directory")

    missing = cli("--all", tmp_path / "nowhere")
    empty = cli("--all", tmp_path / "empty")
    a_file = cli("--all", tmp_path / "notes.txt")

    assert_one_line_error(missing, "nowhere", "no such directory")
    assert_one_line_error(empty, "empty", "no *_features.pickle files")
    assert_one_line_error(a_file, "notes.txt", "not a directory")

    # Unreadable directory (chmod cannot make one unreadable for root, so simulate it).
    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(common.UserError, match="cannot read it .Permission denied"):
        vls.main(["--all", str(tmp_path / "empty")])


def test_all_checks_every_file_before_any_work(tmp_path, cli):
    write_pair(tmp_path, "simple_autoe", *digit_codes())
    (tmp_path / "deep_autoe_features.pickle").write_bytes(b"not a pickle")

    result = cli("--all", tmp_path, *FAST)

    assert_one_line_error(result, "deep_autoe_features.pickle", "not a pickled")
    assert "t-SNE" not in result.stdout
    assert not (tmp_path / "all_latent_spaces.png").exists()
