"""The visualiser's interactive page and the TensorBoard projector's files.

Three entry points, each called by the visualiser's reporting (``map_report``):

* ``write_page``: ``<prefix>_explorer.html``, one self-contained Bokeh page (its
  JavaScript inline, every digit image a ``data:`` URI) that works opened straight
  from disk with no network. It shows the same 2-D map as the PNG, one scatter per
  digit so that clicking a legend entry hides that digit; hovering a point shows its
  test image, digit and row. For a 2-d VAE it also shows, beside the map, the digit
  the decoder draws wherever the pointer is on the latent plane.
* ``decode_plane``: that plane, decoded in advance with the saved decoder (a page
  cannot run Keras), as a grid of images fine enough that neighbouring cells differ
  only a little.
* ``write_projector``: the codes, their digits and a sprite sheet of the test images
  in the format of TensorBoard's Embedding Projector (``tensorboard --logdir DIR``);
  a config already there is read bounded (``read_projector_config``, which the
  options also call, to refuse a pipe or a device there before any work).

Bokeh, Keras, Pillow and TensorBoard are imported inside the functions that need
them: the visualiser must start without any of them.
"""

import base64
import html
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plumbing import backend, cli, files, loading
from plumbing.data import labels_of

IMAGE_SIDE = 28
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",  # matplotlib's
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]  # tab10, as the PNG
POINT_ALPHA = 0.65  # overlapping points stay visible through each other
TOOLTIP_SIDE = 84  # px: each image pixel drawn as a 3x3 block
PANEL_SIDE = 224  # px: the plane's digit at the pointer, 8x
# The plane's panel, filled in by Python for the first view and by JavaScript after.
PANEL = ('<div style="font-size:13px"><b>the decoder at the pointer</b>'
         '<img src="{uri}" width="%d" height="%d" alt="decoded digit" '
         'style="image-rendering:pixelated;display:block;margin:6px 0">'
         'z = ({x}, {y})</div>') % (PANEL_SIDE, PANEL_SIDE)

# The plane: cells along its longer side. 63 cells over the usual VAE extent (about
# 8 units) are 0.13 apart, where the decoder's digits change by a few grey levels
# from one cell to the next; the page carries one small PNG per cell (about 1.5 MB).
PLANE_CELLS = 63
PLANE_MARGIN = 0.1  # of the codes' range, on each side: room beyond the outermost codes
MOSAIC_STEP = 3  # the faint backdrop of the map shows every 3rd cell's digit

SPRITE_LIMIT = 8192  # px: the largest sprite sheet TensorBoard's projector accepts
PROJECTOR_CONFIG = "projector_config.pbtxt"  # the name TensorBoard looks for
# A config lists each model's files in a few lines: 1 MiB is thousands of models.
PROJECTOR_CONFIG_MAX_BYTES = files.MiB


@dataclass(frozen=True)
class Plane:
    """Digits decoded over a rectangle of a 2-d latent space.

    ``images[r, c]`` (uint8, 28x28) is decoded at the centre of cell (r, c); row 0 is
    the top of the rectangle (largest z[1]), as in an image. ``extent`` is
    (x0, x1, y0, y1), the rectangle's edges.
    """

    extent: tuple
    images: np.ndarray


# The page


def write_page(path, *, title, points, labels, images, caption, plane=None,
               rows=None, data_name="mnist"):
    """Write the explorer page for ``points`` (N, 2) to ``path``, atomically.

    ``images`` (N, 28, 28) uint8, or None when the test images are not at hand (the
    page then says so and its tooltips show digit and row only); ``caption``: lines
    of text shown above the map; ``plane``: a ``decode_plane`` result, or None;
    ``rows``: each point's row in the test set (default 0 to N-1), for a sample;
    ``data_name``: whose labels these are (``data.labels_of``), for the legend and
    the tooltips.
    """
    _import("bokeh", "--html")
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import Div
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    points = np.asarray(points, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if points.ndim != 2 or points.shape[1] != 2 or labels.shape != (len(points),):
        raise ValueError(f"expected points (N, 2) and labels (N,), got "
                         f"{points.shape} and {labels.shape}")
    if images is not None and np.shape(images) != (len(points), IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"expected images ({len(points)}, 28, 28), got "
                         f"{np.shape(images)}")

    fig = figure(width=900, height=720, tools="pan,wheel_zoom,box_zoom,reset,save",
                 active_scroll="wheel_zoom", match_aspect=plane is not None,
                 name="map", toolbar_location="above")
    if plane is not None:
        fig.xaxis.axis_label, fig.yaxis.axis_label = "z[0]", "z[1]"
        _draw_backdrop(fig, plane)
    size = float(np.clip(400 / math.sqrt(max(len(points), 1)), 4, 10))  # px
    kind, names = labels_of(data_name)
    renderers = _draw_digits(fig, points, labels, size, names)
    _add_tooltips(fig, points, labels, images, rows, size, renderers, kind, names)
    legend = fig.legend[0]
    legend.title = f"{kind} (click: hide/show)"
    legend.click_policy = "hide"
    fig.add_layout(legend, "right")

    header = Div(text=_header(title, caption, images is not None, plane is not None,
                              kind),
                 width=1100, name="caption", disable_math=True)
    body = fig if plane is None else row(fig, _plane_panel(fig, plane))
    page = column(header, body)
    with files.atomic_path(path) as tmp:
        tmp.write_text(file_html(page, INLINE, title=title), encoding="utf-8")


def _draw_digits(fig, points, labels, size, names):
    """One scatter per label: the legend can only hide whole renderers."""
    renderers = []
    for digit in np.unique(labels):
        rows = labels == digit
        renderers.append(fig.scatter(
            points[rows, 0], points[rows, 1], size=size,
            color=PALETTE[digit % len(PALETTE)], alpha=POINT_ALPHA, line_width=0,
            legend_label=names[digit], name=f"digit-{digit}"))
    return renderers


def _add_tooltips(fig, points, labels, images, rows, size, digit_renderers, kind,
                  names):
    """Tooltips from one transparent layer holding every point.

    Hovering the digits' own renderers would give one tooltip per digit under the
    pointer, stacked on one another with the highest digit's on top. One layer gives
    one tooltip (limit=1: a point under the pointer). The layer follows the legend,
    so that a hidden digit shows no tooltips either.
    """
    from bokeh.models import (BooleanFilter, CDSView, ColumnDataSource, CustomJS,
                              HoverTool)

    rows = np.arange(len(points)) if rows is None else np.asarray(rows)
    data = {"x": points[:, 0], "y": points[:, 1], "row": rows,
            "label": labels, "name": [names[label] for label in labels]}
    if images is not None:
        data["image"] = [png_data_uri(image) for image in images]
    source = ColumnDataSource(data)
    shown = BooleanFilter(booleans=None)  # None: every point, until a legend click
    layer = fig.scatter("x", "y", source=source, view=CDSView(filter=shown), size=size,
                        alpha=0, name="tooltip-layer")
    follow_legend = CustomJS(
        args=dict(renderers=digit_renderers, source=source, shown=shown,
                  digits=[int(d) for d in np.unique(labels)]),
        code="""
            const hidden = new Set(digits.filter((digit, i) => !renderers[i].visible));
            shown.booleans = Array.from(source.data.label, label => !hidden.has(label));
        """)
    for renderer in digit_renderers:
        renderer.js_on_change("visible", follow_legend)
    fig.add_tools(HoverTool(renderers=[layer],
                            tooltips=_tooltip(images is not None, kind), limit=1,
                            name="hover"))


def _tooltip(with_images, kind):
    image = (f'<img src="@image" width="{TOOLTIP_SIDE}" height="{TOOLTIP_SIDE}" '
             f'alt="{kind} @name" style="image-rendering:pixelated;display:block">'
             if with_images else "")
    return (f'<div class="explorer-tooltip">{image}'
            f'<div style="font-size:13px">{kind} <b>@name</b>, row @row</div></div>')


def _header(title, caption, with_images, with_plane, kind):
    lines = "<br>".join(html.escape(line) for line in caption)
    how = (f"Drag to pan, scroll to zoom; hover a point to see its test image; click "
           f"a {kind} in the legend to hide or show it.")
    if with_plane:
        how += (" The panel on the right shows the digit the decoder draws where the "
                "pointer is on the latent plane (faintly drawn behind the codes).")
    missing = "" if with_images else (
        "<p><b>The test images were not available:</b> hovering shows each point's "
        f"{kind} and row only.</p>")
    return (f"<h2 style='margin:0 0 6px'>{html.escape(title)}</h2>"
            f"<p style='margin:0 0 6px'>{lines}</p><p style='margin:0;color:#555'>"
            f"{how}</p>{missing}")


def _plane_panel(fig, plane):
    """The decoded digit at the pointer: a cell lookup in the browser, no model."""
    from bokeh import events
    from bokeh.models import CustomJS, Div

    rows, cols = plane.images.shape[:2]
    cells = [png_data_uri(image)
             for image in plane.images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)]
    x0, x1, y0, y1 = plane.extent
    panel = Div(text=PANEL.format(uri=cells[(rows // 2) * cols + cols // 2],
                                  x=f"{(x0 + x1) / 2:.2f}", y=f"{(y0 + y1) / 2:.2f}"),
                width=PANEL_SIDE + 40, name="plane", disable_math=True)
    markup = PANEL.format(uri="${cells[r * cols + c]}", x="${cb_obj.x.toFixed(2)}",
                          y="${cb_obj.y.toFixed(2)}")
    code = """
        const [x0, x1, y0, y1] = extent;
        const c = Math.floor((cb_obj.x - x0) / (x1 - x0) * cols);
        const r = Math.floor((y1 - cb_obj.y) / (y1 - y0) * rows);
        if (c < 0 || c >= cols || r < 0 || r >= rows) {
            return;  // off the plane: the last digit stays
        }
        panel.text = `""" + markup + "`;"
    fig.js_on_event(events.MouseMove, CustomJS(
        args=dict(panel=panel, cells=cells, extent=[x0, x1, y0, y1], rows=int(rows),
                  cols=int(cols)), code=code))
    return panel


def _draw_backdrop(fig, plane):
    """Every MOSAIC_STEP-th cell's digit, tiled over the plane, drawn faintly."""
    step = MOSAIC_STEP
    tiles = plane.images[step // 2::step, step // 2::step]
    rows, cols = tiles.shape[:2]
    mosaic = tiles.transpose(0, 2, 1, 3).reshape(rows * IMAGE_SIDE, cols * IMAGE_SIDE)
    x0, x1, y0, y1 = plane.extent
    # Dark ink on white, so that the coloured codes stay readable on top.
    fig.image_url(url=[png_data_uri(255 - mosaic)], x=x0, y=y1, w=x1 - x0, h=y1 - y0,
                  anchor="top_left", global_alpha=0.35, name="plane-backdrop")


def png_data_uri(image):
    """A uint8 greyscale image as a ``data:image/png;base64,...`` URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# The VAE plane


def decode_plane(decoder_path, points):
    """Decode a grid over the extent of the 2-d ``points`` with the saved decoder.

    The grid's cells are square, PLANE_CELLS along the longer side of the points'
    extent plus a margin; returns a ``Plane``.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or not len(points):
        raise cli.UserError(f"the latent plane needs 2-d codes, got shape "
                            f"{points.shape}")
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.maximum(high - low, 1e-3)  # all codes equal: still a small plane
    low, high = low - PLANE_MARGIN * span, high + PLANE_MARGIN * span
    cell = float((high - low).max()) / PLANE_CELLS
    # Whole backdrop tiles: the counts are multiples of MOSAIC_STEP.
    cols, rows = (MOSAIC_STEP * np.ceil((high - low) / cell / MOSAIC_STEP)).astype(int)
    centre = (low + high) / 2
    x0, x1 = centre[0] - cols * cell / 2, centre[0] + cols * cell / 2
    y0, y1 = centre[1] - rows * cell / 2, centre[1] + rows * cell / 2
    xs = x0 + (np.arange(cols) + 0.5) * cell
    ys = y1 - (np.arange(rows) + 0.5) * cell
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)

    decoder = _load_decoder(decoder_path)
    try:
        decoded = np.asarray(decoder.predict(grid, batch_size=1024, verbose=0))
    except Exception as error:  # Keras raises many kinds for a model of another shape
        raise cli.UserError(f"{decoder_path}: cannot decode 2-d codes with it "
                            f"({type(error).__name__}: {_first_line(error)})") from None
    if decoded.size != len(grid) * IMAGE_SIDE * IMAGE_SIDE:
        raise cli.UserError(f"{decoder_path}: expected 28x28 images from the decoder, "
                            f"got shape {decoded.shape}")
    images = np.clip(decoded.reshape(rows, cols, IMAGE_SIDE, IMAGE_SIDE), 0, 1)
    return Plane(extent=(float(x0), float(x1), float(y0), float(y1)),
                 images=np.round(images * 255).astype(np.uint8))


def _load_decoder(path):
    path = Path(path)
    loading.check_decoder(path)  # before Keras, or anything, reads a byte of it
    keras = backend.import_keras()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # a damaged zip, a foreign file, unsafe layers...
        raise cli.UserError(f"{path}: cannot load the decoder "
                            f"({type(error).__name__}: {_first_line(error)})") from None


def _first_line(error):
    return (str(error).strip().splitlines() or [""])[0][:200]


# The TensorBoard projector


def write_projector(directory, *, name, codes, labels, images, data_name="mnist"):
    """Write ``name``'s codes for TensorBoard's Embedding Projector into ``directory``.

    Files: ``<name>_tensors.tsv`` (one code per line), ``<name>_metadata.tsv`` (its
    label, named as ``data_name``'s are: a digit, or a Fashion-MNIST class),
    ``<name>_sprite.png`` (the test images, unless ``images`` is None) and
    ``projector_config.pbtxt``, which lists them. Other embeddings already in that
    config stay, so several models can share one directory, as ``--all`` needs:
    ``tensorboard --logdir DIR`` reads the config in DIR itself, but in a subfolder
    only if that holds TensorFlow event files too (a "run").
    """
    _import("tensorboard", "--projector")
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    codes = np.asarray(codes, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if codes.ndim != 2 or labels.shape != (len(codes),):
        raise ValueError(f"expected codes (N, D) and labels (N,), got {codes.shape} "
                         f"and {labels.shape}")
    directory = Path(directory)
    cli.check_output_dir(directory, option="--projector")
    existing = read_projector_config(directory)  # refused before anything is written
    tensors, metadata, sprite = (f"{name}_tensors.tsv", f"{name}_metadata.tsv",
                                 f"{name}_sprite.png")

    with files.atomic_path(directory / tensors) as tmp:
        np.savetxt(tmp, codes, fmt="%.6g", delimiter="\t")
    # A single column has no header: the projector reads every line as a label.
    names = labels_of(data_name)[1]
    with files.atomic_path(directory / metadata) as tmp:
        tmp.write_text("".join(f"{names[label]}\n" for label in labels))
    side = None
    if images is not None:
        side = _write_sprite(directory / sprite, np.asarray(images, dtype=np.uint8))
    else:
        (directory / sprite).unlink(missing_ok=True)  # an earlier run's, now unlisted

    config = ProjectorConfig()
    if existing is not None:
        try:
            text_format.Parse(existing.decode("utf-8"), config)
        except (text_format.ParseError, UnicodeDecodeError):
            config = ProjectorConfig()  # not one we can extend: ours replaces it
    kept = [e for e in config.embeddings if e.tensor_name != name]
    del config.embeddings[:]
    config.embeddings.extend(kept)
    embedding = config.embeddings.add()
    embedding.tensor_name = name
    embedding.tensor_path = tensors
    embedding.tensor_shape.extend(codes.shape)
    embedding.metadata_path = metadata
    if side is not None:
        embedding.sprite.image_path = sprite
        embedding.sprite.single_image_dim.extend([side, side])
    # Written last: TensorBoard never finds a config naming files not yet there.
    with files.atomic_path(directory / PROJECTOR_CONFIG) as tmp:
        tmp.write_text(text_format.MessageToString(config))


def read_projector_config(directory):
    """The bytes of the projector config already in ``directory``, or None if there
    is none; one that is not a regular file of a config's size is refused."""
    path = Path(directory) / PROJECTOR_CONFIG
    if not os.path.lexists(path):
        return None
    return files.read_regular(path, PROJECTOR_CONFIG_MAX_BYTES,
                              f"a projector config ({PROJECTOR_CONFIG})")


def _write_sprite(path, images):
    """The images row by row in a square sheet; returns each image's side in px."""
    from PIL import Image

    count = len(images)
    per_row = max(1, math.ceil(math.sqrt(count)))
    # More than 292 x 292 digits would exceed the projector's sheet: shrink them.
    side = min(IMAGE_SIDE, SPRITE_LIMIT // per_row)
    if side < IMAGE_SIDE:
        images = np.stack([np.asarray(Image.fromarray(im).resize((side, side),
                                                                 Image.BILINEAR))
                           for im in images])
    # Square, as in TensorBoard's own examples; the unused cells stay black.
    sheet = np.zeros((per_row * per_row, side, side), dtype=np.uint8)
    sheet[:count] = images
    sheet = sheet.reshape(per_row, per_row, side, side).transpose(0, 2, 1, 3)
    with files.atomic_path(path) as tmp:
        Image.fromarray(sheet.reshape(per_row * side, per_row * side)).save(tmp, "PNG")
    return side


def _import(module, option):
    try:
        __import__(module)
    except ImportError:
        raise cli.UserError(f"{option} needs {module}: pip install {module}") from None
