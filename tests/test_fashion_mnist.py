"""`--data fashion_mnist`: Keras' real loader, offline refusal, and class names in
every figure, the explorer page and the projector's metadata.

Keras' loader reads the four gzipped IDX files from its cache when they are there;
the tests write small ones in that format into a temporary KERAS_HOME, so the real
loading path runs with the network cut (a dead proxy, as in CI).
"""

import gzip
import json
import struct

import numpy as np
import pytest
from support import one_line_error, run_script

import visualize_latent_space as vls
from plumbing import cli, data, figures, loading, saved_codes

FASHION = list(data.FASHION_CLASSES)
DIGIT_NAMES = [str(digit) for digit in range(10)]
# Every download goes to a port where nothing listens: no network, at once.
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "NO_PROXY": "", "no_proxy": ""}


def write_idx_gz(path, array):
    """``array`` (uint8) as a gzipped IDX file, the format of the Fashion-MNIST
    downloads: a magic number (uint8 data, ndim), each size big-endian, the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", size)
                                                      for size in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def fashion_cache(keras_home, train=200, test=100):
    """A Keras cache holding a small Fashion-MNIST: each class its own brightness
    band, so that codes can separate the classes. Returns the test labels."""
    folder = keras_home / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_labels = None
    for split, count in (("train", train), ("t10k", test)):
        labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
        images = (labels[:, None, None] * 25 +
                  rng.integers(0, 30, (count, 28, 28))).astype(np.uint8)
        write_idx_gz(folder / f"{split}-labels-idx1-ubyte.gz", labels)
        write_idx_gz(folder / f"{split}-images-idx3-ubyte.gz", images)
        test_labels = labels
    return test_labels


def test_fashion_mnist_trains_through_keras_cache_and_names_its_classes(
        tmp_path, capsys, monkeypatch):
    home = tmp_path / "keras"
    test_labels = fashion_cache(home)
    out = tmp_path / "out"
    # A few gentle steps: one step at the recipe's rate can overshoot on such data.
    result = run_script("simple_autoencoder.py", "--data", "fashion_mnist",
                        "--epochs", 1, "--batch-size", 50, "--learning-rate", 1e-3,
                        "--out-dir", out, env={"KERAS_HOME": str(home), **OFFLINE})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "200 training and 100 test images from keras.datasets.fashion_mnist" \
        in result.stdout
    metrics = json.loads((out / "simple_autoe_metrics.json").read_text())
    assert metrics["data"]["name"] == "fashion_mnist"
    labels = loading.load_array(out / "simple_autoe_labels.pickle")
    np.testing.assert_array_equal(labels, test_labels)

    # The visualiser finds the data set in the metrics: the map's title, legend,
    # explorer page and projector metadata name Fashion-MNIST and its classes.
    pytest.importorskip("bokeh")
    pytest.importorskip("tensorboard")
    drawn = capture_figures(monkeypatch)
    run_visualiser(capsys, out / "simple_autoe_features.pickle", "--html",
                   "--projector", tmp_path / "projector", "--max-iter", 250)
    [fig] = drawn
    assert "Simple autoencoder on Fashion-MNIST" in fig.axes[0].get_title()
    assert legends(fig) == [("class", FASHION)]
    page = (out / "simple_autoe_explorer.html").read_text()
    assert "Simple autoencoder on Fashion-MNIST" in page
    assert "Ankle boot" in page and "class (click: hide/show)" in page
    metadata = (tmp_path / "projector" / "simple_autoe_metadata.tsv").read_text()
    assert metadata.splitlines() == [FASHION[label] for label in test_labels]


def test_offline_without_a_cached_copy_fails_in_one_line_and_writes_nothing(tmp_path):
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    result = run_script("simple_autoencoder.py", "--data", "fashion_mnist",
                        "--out-dir", out, cwd=cwd,
                        env={"KERAS_HOME": str(tmp_path / "empty"), **OFFLINE})
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith("simple_autoencoder.py: error: --data fashion_mnist:"), line
    assert "go online once" in line and "--data PATH.npz" in line, line
    assert "Epoch" not in result.stdout
    assert not out.exists() and not list(cwd.iterdir())


def test_help_lists_the_data_sets():
    from plumbing import cli

    recipe = dict(epochs=1, batch_size=1, optimizer="adam", learning_rate=1.0,
                  schedule="constant", warmup=0)
    parser = cli.training_parser("Description: x", {"ours": recipe, "tutorial": recipe})
    text = " ".join(parser.format_help().split())
    for choice in ("mnist (downloaded by Keras", "fashion_mnist", "sample", ".npz",
                   "(default: mnist)"):
        assert choice in text


@pytest.mark.parametrize("name,kind,names", [("fashion_mnist", "class", FASHION),
                                             ("mnist", "digit", DIGIT_NAMES),
                                             ("my_data.npz", "digit", DIGIT_NAMES)])
def test_vae_latent_figure_names_the_classes(name, kind, names):
    figures.use_window(False)
    z = np.random.default_rng(0).normal(size=(50, 2))
    fig = figures.latent_scatter(z, np.arange(50) % 10, "t", data_name=name)
    assert legends(fig) == [(kind, names)]


def test_all_shows_each_panels_data_set_and_a_legend_for_each_naming(
        tmp_path, capsys, monkeypatch):
    write_model(tmp_path, "simple_autoe", {"data": {"name": "fashion_mnist"}})
    write_model(tmp_path, "deep_autoe", None)  # an older run: MNIST
    write_model(tmp_path, "conv_autoe", {"data": {"source": "an old record"}})
    drawn = capture_figures(monkeypatch)

    run_visualiser(capsys, "--all", tmp_path, "--max-iter", 250)

    [fig] = drawn
    titles = [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title()]
    assert titles == ["Simple autoencoder on Fashion-MNIST",
                      "Deep autoencoder on MNIST", "Convolutional autoencoder on MNIST"]
    # A column for each naming of the labels, headed by its data sets.
    assert legends(fig) == [("", ["Fashion-MNIST: class", *FASHION,
                                  "MNIST: digit", *DIGIT_NAMES])]
    assert fig.legends[0]._ncols == 2
    table = capsys.readouterr().out
    assert "Data" in table and "Fashion-MNIST" in table


@pytest.mark.parametrize("record,expected", [
    ({"data": {"name": "fashion_mnist"}}, "fashion_mnist"),
    ({"data": {"name": "mine.npz"}}, "mine.npz"),
    ({"data": {"source": "keras.datasets.mnist"}}, "mnist"),  # before names
    ({"data": {"name": ["not", "text"]}}, "mnist"),
    ({"data": {"name": "two\nlines"}}, "mnist"),
    ({"data": {"name": "x" * 1000}}, "mnist"),
    ([1, 2], "mnist"),
    ("not json", "mnist"),
    ("[" * 100_000, "mnist"),  # nested too deep for Python's json
    (None, "mnist"),
])
def test_data_set_of_a_run_is_read_from_its_metrics(tmp_path, record, expected):
    path = tmp_path / "m_features.pickle"
    if record is not None:
        text = record if isinstance(record, str) else json.dumps(record)
        (tmp_path / "m_metrics.json").write_text(text)
    assert saved_codes.data_name_of(path, "m") == expected


def test_explorer_page_and_projector_name_fashion_classes(tmp_path):
    pytest.importorskip("bokeh")
    pytest.importorskip("tensorboard")
    from plumbing import explorer

    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 2)).astype(np.float32)
    labels = np.arange(30) % 10
    explorer.write_page(tmp_path / "p.html", title="t", points=points, labels=labels,
                        images=None, caption=["c"], data_name="fashion_mnist")
    page = (tmp_path / "p.html").read_text()
    assert all(name in page for name in ("T-shirt/top", "Ankle boot", "Sneaker"))
    assert "class (click: hide/show)" in page  # the hover: tests/test_explorer.py
    explorer.write_projector(tmp_path / "proj", name="m", codes=points,
                             labels=labels, images=None, data_name="fashion_mnist")
    explorer.write_projector(tmp_path / "proj", name="d", codes=points,
                             labels=labels, images=None)
    fashion = (tmp_path / "proj" / "m_metadata.tsv").read_text().splitlines()
    assert fashion == [FASHION[label] for label in labels]
    digits = (tmp_path / "proj" / "d_metadata.tsv").read_text().splitlines()
    assert digits == [str(label) for label in labels]  # MNIST keeps its digits


# Helpers


def write_model(folder, prefix, record):
    rng = np.random.default_rng(len(prefix))
    labels = rng.permutation(np.arange(100) % 10).astype(np.int64)
    features = (rng.normal(0, 3, (10, 8))[labels] +
                rng.normal(size=(100, 8))).astype(np.float32)
    (folder / f"{prefix}_features.pickle").write_bytes(_pickle(features))
    (folder / f"{prefix}_labels.pickle").write_bytes(_pickle(labels))
    if record is not None:
        (folder / f"{prefix}_metrics.json").write_text(json.dumps(record))


def _pickle(array):
    import pickle

    return pickle.dumps(array)


def capture_figures(monkeypatch):
    """The figures the visualiser saves, kept open to be inspected."""
    drawn, save = [], figures.save_figure

    def keep(fig, path, show=False):
        drawn.append(fig)
        save(fig, path, show=True)  # show=True: saved, but not closed

    monkeypatch.setattr(figures, "save_figure", keep)
    return drawn


def run_visualiser(capsys, *args):
    """visualize_latent_space.py's main() in this process, with its error handling;
    a failure fails the test with the error the user would see."""
    try:
        cli.main_guard(lambda: vls.main([str(arg) for arg in args]))
    except SystemExit as exit:
        pytest.fail(f"exit {exit.code}: {capsys.readouterr().err}")


def legends(fig):
    """[(title, [entry texts])] of the figure's legends and its axes' legends."""
    found = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [(legend.get_title().get_text(), [t.get_text() for t in legend.get_texts()])
            for legend in found]


def test_codes_of_the_sample_are_titled_the_mnist_sample(tmp_path, capsys,
                                                         monkeypatch):
    write_model(tmp_path, "deep_autoe", {"data": {"name": data.SAMPLE_NAME}})
    drawn = capture_figures(monkeypatch)
    run_visualiser(capsys, tmp_path / "deep_autoe_features.pickle", "--max-iter", 250)
    [fig] = drawn
    assert "Deep autoencoder on the MNIST sample" in fig.axes[0].get_title()
    assert legends(fig) == [("digit", DIGIT_NAMES)]
