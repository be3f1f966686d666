"""Tests of plumbing/explorer.py as a user meets its outputs.

The page is opened from disk in a real headless Chromium (driven by Selenium) with
every network request sent to a dead proxy, and used with the pointer: hovering a
point, clicking a legend entry, moving across a VAE's latent plane. The projector
files are served by a real ``tensorboard`` process and read back through the
projector's own HTTP endpoints.

Chromium, ChromeDriver, Selenium, Bokeh and TensorBoard are optional here: missing,
their tests are skipped, unless REQUIRE_BROWSER=1 (as in CI), where they fail.
"""

import base64
import io
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from plumbing import cli, explorer
from support import ROOT, one_line_error

REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"
TIMEOUT = 120  # s: the longest any test waits for the browser or TensorBoard (slow
# to start on a busy machine)


def need(module=None, program=None):
    """Skip (or, with REQUIRE_BROWSER=1, fail) unless the module and program exist."""
    missing = []
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module}")
    if program is not None and shutil.which(program) is None:
        missing.append(f"the program {program}")
    if missing:
        why = " and ".join(missing) + " not installed"
        if REQUIRED:
            pytest.fail(f"{why} (REQUIRE_BROWSER=1)")
        pytest.skip(why)


def digits(n=120, seed=0):
    """Points on a jittered grid (each far enough from the next to hover it alone),
    their digits, and a distinct noise image per row standing in for MNIST."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(12), np.arange(-(-n // 12))), -1)
    grid = grid.reshape(-1, 2)[:n]
    points = (grid + rng.uniform(-0.2, 0.2, grid.shape)).astype(np.float32)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return points, labels, images


def decode_png(data):
    from PIL import Image

    if isinstance(data, str):
        data = base64.b64decode(data.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


@pytest.fixture(scope="module")
def digit_page(tmp_path_factory):
    """The page of ``digits()`` with their images, written once for the tests that
    only read it or open it."""
    need("bokeh")
    points, labels, images = digits()
    path = tmp_path_factory.mktemp("page") / "m_explorer.html"
    explorer.write_page(path, title="m", points=points, labels=labels, images=images,
                        caption=["5-NN accuracy 0.950", "t-SNE perplexity 30"])
    return path


# The page, without a browser


def test_page_is_one_self_contained_file(digit_page):
    images = digits()[2]
    text = digit_page.read_text()
    # Nothing is loaded from elsewhere: no external script, style or image.
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=[\"']?(https?:)?//",
                         text, re.I)
    assert "5-NN accuracy 0.950" in text and "t-SNE perplexity 30" in text
    assert all(explorer.png_data_uri(image) in text for image in images)
    assert list(digit_page.parent.iterdir()) == [digit_page]  # no temporary file left


def test_missing_bokeh_or_tensorboard_is_a_one_line_user_error(tmp_path, monkeypatch):
    points, labels, images = digits(n=12)
    monkeypatch.setitem(sys.modules, "bokeh", None)  # makes `import bokeh` fail
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(cli.UserError, match=r"^--html needs bokeh: pip install bokeh$"):
        explorer.write_page(tmp_path / "p.html", title="m", points=points,
                            labels=labels, images=images, caption=[])
    with pytest.raises(cli.UserError, match=r"^--projector needs tensorboard: "):
        explorer.write_projector(tmp_path, name="m", codes=points, labels=labels,
                                 images=images)
    assert not any(tmp_path.iterdir())


# The page in a browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    need("selenium", "chromium")
    need(program="chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Chromium's profile and the temporary folders it leaves behind after quitting
    # (a profile copy, a singleton socket) go under pytest's own temporary folder,
    # which pytest prunes, rather than piling up in /tmp run after run.
    scratch = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    options.add_argument(f"--user-data-dir={scratch / 'profile'}")
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--force-device-scale-factor=1",
                     # Offline: any request the page makes to a server goes nowhere.
                     "--proxy-server=http://127.0.0.1:9",
                     "--proxy-bypass-list=<-loopback>"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(
        shutil.which("chromedriver"), env={**os.environ, "TMPDIR": str(scratch)}))
    driver.set_script_timeout(TIMEOUT)
    yield driver
    driver.quit()


# JavaScript run in the page. Bokeh draws inside shadow DOMs, so queries descend
# into them; screen positions come from the map's own scales.
FIND = """
function find(root, selector, found = []) {
    root.querySelectorAll(selector).forEach(e => found.push(e));
    root.querySelectorAll('*').forEach(
        e => e.shadowRoot && find(e.shadowRoot, selector, found));
    return found;
}
"""
MAP = "[...Bokeh.index.all_views()].find(v => v.model.name === 'map')"


def open_page(driver, path):
    driver.get(path.as_uri())
    deadline = time.monotonic() + TIMEOUT
    while not driver.execute_script(
            f"return !!(window.Bokeh && Bokeh.index && {MAP} && {MAP}.has_finished())"):
        assert time.monotonic() < deadline, "the page did not finish drawing"
        time.sleep(0.05)


def point_to(driver, x, y):
    """Move the pointer to the data coordinates (x, y) of the map."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    sx, sy = driver.execute_script(f"""
        const view = {MAP}, box = view.canvas_view.el.getBoundingClientRect();
        return [box.left + view.frame_view.x_scale.compute(arguments[0]),
                box.top + view.frame_view.y_scale.compute(arguments[1])];""", x, y)
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(round(sx), round(sy))
    actions.perform()
    time.sleep(0.2)  # the tooltip and the panel update on the next animation frame


def tooltips(driver):
    """[(text, img src or None, img width)] of the tooltips on screen."""
    return [tuple(tip) for tip in driver.execute_script(FIND + """
        return find(document, '.bk-Tooltip')
            .filter(t => t.getBoundingClientRect().width > 0)
            .map(t => { const tip = find(t.shadowRoot, '.explorer-tooltip')[0];
                        const img = tip.querySelector('img');
                        return [tip.innerText.trim(), img ? img.src : null,
                                img ? img.naturalWidth : 0]; });""")]


def legend_entry(driver, text):
    return driver.execute_script(FIND + """
        return find(document, '.bk-item')
            .find(e => e.innerText.trim() === arguments[0]);""", text)


def renderer_visible(driver, digit):
    return driver.execute_script(
        f"return Bokeh.documents[0].get_model_by_name('digit-{digit}').visible")


def colour_pixels(driver):
    """For each digit, how many pixels of the map show its colour (as an isolated
    point, drawn at the page's opacity over the white background)."""
    from PIL import Image

    box = driver.execute_script(f"""
        const r = {MAP}.canvas_view.el.getBoundingClientRect();
        return [r.left, r.top, r.right, r.bottom];""")
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    pixels = np.asarray(shot.crop(tuple(round(v) for v in box)), dtype=float)
    counts = []
    for colour in explorer.PALETTE:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        blended = explorer.POINT_ALPHA * rgb + (1 - explorer.POINT_ALPHA) * 255
        counts.append(int((np.abs(pixels - blended).max(axis=-1) < 8).sum()))
    return counts


def test_hover_shows_the_test_digit_its_label_and_row(browser, digit_page):
    points, labels, images = digits()
    open_page(browser, digit_page)
    for row in [7, 64]:
        point_to(browser, *map(float, points[row]))
        [(text, src, width)] = tooltips(browser)
        assert text == f"digit {labels[row]}, row {row}"
        assert src == explorer.png_data_uri(images[row])
        np.testing.assert_array_equal(decode_png(src), images[row])
        assert width == 28  # the browser decoded and drew it
    point_to(browser, 5.5, 4.5)  # between the points: no tooltip
    assert tooltips(browser) == []
    # The page loaded nothing over the network, and every digit's colour is drawn.
    assert browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map(e => e.name).filter(n => /^https?:/.test(n))") == []
    assert all(count > 0 for count in colour_pixels(browser))


def test_legend_click_hides_and_shows_a_digit(browser, digit_page):
    points, labels, _ = digits()
    open_page(browser, digit_page)
    three = int(np.flatnonzero(labels == 3)[0])
    assert colour_pixels(browser)[3] > 0

    legend_entry(browser, "3").click()
    assert not renderer_visible(browser, 3)
    assert all(renderer_visible(browser, d) for d in range(10) if d != 3)
    assert colour_pixels(browser)[3] == 0
    point_to(browser, *map(float, points[three]))
    assert tooltips(browser) == []  # a hidden digit shows no tooltip either

    legend_entry(browser, "3").click()  # the legend redraws its entries: find it anew
    assert renderer_visible(browser, 3) and colour_pixels(browser)[3] > 0
    point_to(browser, *map(float, points[three]))
    assert [text for text, *_ in tooltips(browser)] == [f"digit 3, row {three}"]


def test_page_without_images_says_so_and_still_shows_label_and_row(browser, tmp_path):
    need("bokeh")
    points, labels, _ = digits()
    path = tmp_path / "m_explorer.html"
    explorer.write_page(path, title="m", points=points, labels=labels, images=None,
                        caption=["no images here"])
    open_page(browser, path)
    assert "test images were not available" in browser.execute_script(
        FIND + "return find(document, 'p').map(e => e.innerText).join(' ')")
    point_to(browser, *map(float, points[5]))
    assert tooltips(browser) == [(f"digit {labels[5]}, row 5", None, 0)]


def test_fashion_mnist_page_names_the_classes_in_legend_and_hover(browser, tmp_path):
    need("bokeh")
    from plumbing.data import FASHION_CLASSES

    points, labels, images = digits()
    path = tmp_path / "m_explorer.html"
    explorer.write_page(path, title="m", points=points, labels=labels, images=images,
                        caption=[], data_name="fashion_mnist")
    open_page(browser, path)
    boot = int(np.flatnonzero(labels == 9)[0])
    point_to(browser, *map(float, points[boot]))
    assert [text for text, *_ in tooltips(browser)] == [f"class Ankle boot, row {boot}"]
    legend_entry(browser, "Ankle boot").click()  # the legend's entries are the names
    assert not renderer_visible(browser, 9)
    assert all(legend_entry(browser, name) for name in FASHION_CLASSES)


# The VAE plane


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """Two untrained decoders of the real ones' shapes: (N, 2) -> (N, 784) and
    (N, 2) -> (N, 28, 28, 1); random weights make every code's digit different."""
    import keras

    folder = tmp_path_factory.mktemp("decoders")
    paths = {}
    for name, head in [("mlp", []), ("deconv", [keras.layers.Reshape((28, 28, 1))])]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)),
                                  keras.layers.Dense(784, activation="sigmoid",
                                                     kernel_initializer="he_normal"),
                                  *head])
        paths[name] = folder / f"{name}_decoder.keras"
        model.save(paths[name])
    wrong_input = keras.Sequential([keras.Input((3,)), keras.layers.Dense(784)])
    paths["wrong_input"] = folder / "wrong_input.keras"
    wrong_input.save(paths["wrong_input"])
    wrong_output = keras.Sequential([keras.Input((2,)), keras.layers.Dense(100)])
    paths["wrong_output"] = folder / "wrong_output.keras"
    wrong_output.save(paths["wrong_output"])
    return paths


def cell_centre(plane, r, c):
    x0, x1, y0, y1 = plane.extent
    rows, cols = plane.images.shape[:2]
    return (x0 + (c + 0.5) * (x1 - x0) / cols, y1 - (r + 0.5) * (y1 - y0) / rows)


@pytest.mark.parametrize("kind", ["mlp", "deconv"])
def test_decode_plane_decodes_a_grid_over_the_codes(decoders, kind):
    import keras

    points = np.random.default_rng(1).normal(size=(300, 2)).astype(np.float32)
    plane = explorer.decode_plane(decoders[kind], points)
    rows, cols = plane.images.shape[:2]
    assert plane.images.shape[2:] == (28, 28) and plane.images.dtype == np.uint8
    assert max(rows, cols) >= explorer.PLANE_CELLS
    x0, x1, y0, y1 = plane.extent
    assert x0 < points[:, 0].min() and points[:, 0].max() < x1
    assert y0 < points[:, 1].min() and points[:, 1].max() < y1
    # Row 0 is the top of the plane: each cell is the decoder's digit at its centre.
    model = keras.models.load_model(decoders[kind])
    for r, c in [(0, 0), (rows - 1, 5), (rows // 2, cols - 1)]:
        expected = model.predict(np.array([cell_centre(plane, r, c)], np.float32),
                                 verbose=0).reshape(28, 28)
        assert np.abs(plane.images[r, c] / 255 - expected).max() <= 1 / 255


def test_decode_plane_errors_are_one_line_user_errors(decoders, tmp_path):
    points = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    (tmp_path / "not_a_model.keras").write_text("hello")
    cases = [(tmp_path / "missing.keras", points, "no such decoder file"),
             (tmp_path / "not_a_model.keras", points, "cannot load the decoder"),
             (decoders["wrong_input"], points, "cannot decode 2-d codes"),
             (decoders["wrong_output"], points, "expected 28x28 images"),
             (decoders["mlp"], np.zeros((50, 3), np.float32), "needs 2-d codes")]
    for path, codes, message in cases:
        with pytest.raises(cli.UserError, match=message) as error:
            explorer.decode_plane(path, codes)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("planted", ["pipe", "link to /dev/zero"])
def test_decode_plane_refuses_a_decoder_that_is_no_file_in_seconds(tmp_path, planted):
    decoder = tmp_path / "variational_autoe_decoder.keras"
    if planted == "pipe":
        os.mkfifo(decoder)
    else:
        decoder.symlink_to("/dev/zero")

    def limit():  # a read of /dev/zero would fill it and fail, not take the machine
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "import sys, numpy as np; "
         "from plumbing import cli, explorer; cli.main_guard(lambda: "
         "explorer.decode_plane(sys.argv[1], np.ones((5, 2), np.float32)))",
         str(decoder)], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
        preexec_fn=limit)

    assert result.returncode == 2, result.stderr
    assert str(decoder) in one_line_error(result)
    assert "not a regular file" in result.stderr
    assert time.monotonic() - start < TIMEOUT / 2


def test_the_plane_follows_the_pointer(browser, decoders, tmp_path):
    need("bokeh")
    _, labels, images = digits()
    points = np.random.default_rng(2).normal(size=(len(labels), 2)).astype(np.float32)
    plane = explorer.decode_plane(decoders["deconv"], points)
    path = tmp_path / "vae_explorer.html"
    explorer.write_page(path, title="vae", points=points, labels=labels, images=images,
                        caption=["2-d codes"], plane=plane)
    open_page(browser, path)
    rows, cols = plane.images.shape[:2]
    seen = []
    # Two far-apart cells, then the next cell over: each shows its own digit.
    for r, c in [(2, 3), (rows - 3, cols - 4), (rows - 3, cols - 5)]:
        x, y = cell_centre(plane, r, c)
        point_to(browser, x, y)
        src, text = browser.execute_script(FIND + """
            const panel = find(document, 'img[alt="decoded digit"]')[0];
            return [panel.src, panel.parentElement.innerText];""")
        assert src == explorer.png_data_uri(plane.images[r, c])
        # The pointer lands on a whole pixel: within a fraction of a cell of (x, y).
        shown = np.array(re.search(r"z = \((\S+), (\S+)\)", text).groups(), float)
        cell = (plane.extent[1] - plane.extent[0]) / cols
        assert np.abs(shown - (x, y)).max() < cell / 4
        seen.append(src)
    assert len(set(seen)) == 3
    # Neighbouring cells differ, but only a little: the grid is fine enough to glide.
    step = np.abs(np.diff(plane.images.astype(float), axis=1)).mean()
    far = np.abs(plane.images[2, 3].astype(float) - plane.images[-3, -4]).mean()
    assert 0 < step < far / 4


# The TensorBoard projector


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tensorboard(tmp_path):
    """Yield (DIR, start): ``start()`` runs `tensorboard --logdir DIR` on a free port
    and returns the URL of its projector plugin once it answers.

    Started after the files are written, as a user must: TensorBoard reads the
    projector's config once and misses one that appears later.
    """
    need("tensorboard")
    logdir = tmp_path / "projector"
    logdir.mkdir()
    log = tmp_path / "tensorboard.log"
    started = []

    def start():
        port = free_port()
        with open(log, "w") as output:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                 "--host", "127.0.0.1", "--port", str(port)],
                stdout=output, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}/data/plugin/projector"
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"{base}/runs", timeout=5).read()
                return base
            except (urllib.error.URLError, ConnectionError):
                assert started[0].poll() is None, log.read_text()
                assert time.monotonic() < deadline, "tensorboard did not answer"
                time.sleep(0.3)

    yield logdir, start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(url):
    import json

    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    if response.headers.get_content_type() == "application/json":
        return json.loads(body)
    return body


def test_tensorboard_projector_serves_codes_digits_and_sprite(tensorboard):
    logdir, start = tensorboard
    points, labels, images = digits(n=130)
    codes = np.random.default_rng(3).normal(size=(130, 32)).astype(np.float32)
    explorer.write_projector(logdir, name="simple_autoe", codes=codes * 0,
                             labels=labels, images=images)
    # Written again (a retrained model) and beside a second model (`--all`), whose
    # test images are not at hand: both stay in one config, once each.
    explorer.write_projector(logdir, name="simple_autoe", codes=codes, labels=labels,
                             images=images)
    explorer.write_projector(logdir, name="vae", codes=points, labels=labels,
                             images=images)
    explorer.write_projector(logdir, name="vae", codes=points, labels=labels,
                             images=None)
    assert not (logdir / "vae_sprite.png").exists()  # no longer listed: removed
    base = start()

    assert get(f"{base}/runs") == ["."]
    info = get(f"{base}/info?run=.")
    embeddings = {e["tensorName"]: e for e in info["embeddings"]}
    assert sorted(embeddings) == ["simple_autoe", "vae"]
    assert embeddings["simple_autoe"]["tensorShape"] == [130, 32]
    assert embeddings["simple_autoe"]["sprite"]["singleImageDim"] == [28, 28]
    assert "sprite" not in embeddings["vae"]

    tensor = np.frombuffer(get(f"{base}/tensor?run=.&name=simple_autoe"), np.float32)
    np.testing.assert_allclose(tensor.reshape(130, 32), codes, rtol=1e-5, atol=1e-6)
    tensor = np.frombuffer(get(f"{base}/tensor?run=.&name=vae"), np.float32)
    np.testing.assert_allclose(tensor.reshape(130, 2), points, rtol=1e-5, atol=1e-6)

    metadata = get(f"{base}/metadata?run=.&name=simple_autoe").decode().splitlines()
    assert metadata == [str(label) for label in labels]  # one column: no header

    sprite = decode_png(get(f"{base}/sprite_image?run=.&name=simple_autoe"))
    per_row = 12  # ceil(sqrt(130)): the sheet is square, row by row
    assert sprite.shape == (per_row * 28, per_row * 28)
    for i in [0, 11, 12, 129]:
        r, c = divmod(i, per_row)
        np.testing.assert_array_equal(sprite[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28],
                                      images[i])
    with pytest.raises(urllib.error.HTTPError):  # no images, no sprite
        get(f"{base}/sprite_image?run=.&name=vae")
