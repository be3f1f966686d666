"""The visualiser's reporting: its figures in words on the terminal, the maps' titles,
the table of --all, the grid of maps with its legend, and the page and projector
files of --html and --projector.

Text that comes from outside (a file's name, a data set's name from a run's record)
goes through ``safe_text`` wherever it is printed, written or drawn.
"""

import contextlib
import math
from pathlib import Path

import numpy as np

from plumbing import cli, figures
from plumbing.data import labels_of, title_of
from plumbing.loading import CLASS_COUNT
from plumbing.safe_text import plain, shown


def score_text(value):
    """A figure of merit to three decimals; "n/a" where there is none."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def model_title(codes):
    """The model and its data set, as every title and caption starts."""
    return f"{shown(codes.name)} on {shown(title_of(codes.data))}"


"""
## The terminal
"""


def announce(codes, number, total):
    step = f"[{number}/{total}] " if total > 1 else ""
    print(f"{step}{shown(codes.name)}: {len(codes.labels):,} codes "
          f"({codes.describe()}) of {shown(title_of(codes.data))} from "
          f"{shown(codes.path)}")
    if len(codes.labels) < codes.count:
        print(f"{shown(codes.name)}: a stratified sample of {len(codes.labels):,} of "
              f"{codes.count:,} codes (--max-points)")


def print_quality(codes, quality, neighbours):
    """The two figures in words, for the terminal."""
    print(f"{neighbours}-NN accuracy of the {codes.dims}-d codes (5-fold CV on "
          f"{len(codes.labels):,} test images): {score_text(quality['knn_accuracy'])}")
    if codes.dims == 2:
        print("Trustworthiness: n/a (2-D features plotted as is)")
    else:
        print(f"Trustworthiness of the t-SNE map ({neighbours} neighbours, "
              f"{quality['trust_points']:,} points): "
              f"{score_text(quality['trustworthiness'])}")


def print_table(panels, neighbours):
    """--all: one row per model with its two figures and its data set."""
    header = ("Model", "Code shape", "Dim", f"{neighbours}-NN accuracy",
              "Trustworthiness", "Data")
    table = [header]
    for codes, _, quality in panels:
        trust = "n/a (2-D, as is)" if codes.dims == 2 else \
            score_text(quality["trustworthiness"])
        table.append((shown(codes.name), "x".join(map(str, codes.features.shape[1:])),
                      str(codes.dims), score_text(quality["knn_accuracy"]), trust,
                      shown(title_of(codes.data))))
    print(f"\n{neighbours}-NN accuracy: 5-fold cross-validation on the test codes; "
          f"trustworthiness of the t-SNE map, {neighbours} neighbours:")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i < 2 or i == len(row) - 1 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    print()


"""
## The maps' titles and the figure
"""


def figures_in_words(codes, quality, neighbours):
    knn = f"{neighbours}-NN accuracy {score_text(quality['knn_accuracy'])}"
    if codes.dims == 2:
        return knn, "trustworthiness n/a (2-D)"
    return knn, f"trustworthiness {score_text(quality['trustworthiness'])}"


def map_title(codes, quality, neighbours, compact):
    """A map's title for matplotlib: the model and its data set, how many codes, how
    it was drawn, its two figures."""
    knn, trust = figures_in_words(codes, quality, neighbours)
    count = f"{len(codes.labels):,}"
    method = "plotted as is" if codes.dims == 2 else "t-SNE"
    model = model_title(codes)
    if compact:
        title = f"{model}\n{count} codes ({codes.describe()}), {method}\n{knn}, {trust}"
    elif codes.dims == 2:
        title = f"{model}: {count} test codes ({codes.describe()}) {method}\n" \
                f"{knn}  \u00b7  {trust}"
    else:
        title = f"{model}: {method} of {count} test codes ({codes.describe()})\n" \
                f"{knn}  \u00b7  {trust}"
    return plain(title)


def check_titles(models, neighbours):
    """Draw every title and legend entry the figure will have, before the t-SNE, so
    that text the figure cannot show fails now, in one line, not minutes later."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unknown = {"knn_accuracy": None, "trustworthiness": None}
    handles, title, columns = legend_entries(models, label_colours()[0])
    for codes in models:
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_title(map_title(codes, unknown, neighbours, compact=False))
        ax.set_xlabel(map_title(codes, unknown, neighbours, compact=True))
        fig.legend(handles=handles, title=title, ncols=columns)
        try:
            fig.canvas.draw()
        except Exception as error:  # whatever the text did to matplotlib, in a line
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            raise cli.UserError(f"{shown(codes.path)}: its name or its data set's "
                                "cannot be drawn in a title "
                                f"({type(error).__name__}: {reason})") from None


def label_colours():
    """The labels' colours (matplotlib's tab10, as on the page) and the norm that
    gives each whole label its own colour."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colours = ListedColormap(plt.get_cmap("tab10").colors[:CLASS_COUNT])
    return colours, BoundaryNorm(np.arange(CLASS_COUNT + 1) - 0.5, CLASS_COUNT)


def map_grid(count):
    """A figure for ``count`` maps, four to a row; returns it and one axes per map."""
    import matplotlib.pyplot as plt

    columns = min(4, count)
    rows = -(-count // columns)
    size = (4.3 * columns + 1, 4.8 * rows) if count > 1 else (8.5, 7)
    fig, axes = plt.subplots(rows, columns, squeeze=False, figsize=size)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:count])


def legend_entries(models, colours):
    """The legend's labels, a colour each. Models of MNIST and of Fashion-MNIST side
    by side get a column each, headed by their data sets: a colour means a digit in
    one, a class in the other."""
    from matplotlib.lines import Line2D

    namings = {}  # (kind, names) -> the titles of the data sets named so
    for codes in models:
        namings.setdefault(labels_of(codes.data), {})[title_of(codes.data)] = None
    handles = []
    for (kind, names), titles in namings.items():
        if len(namings) > 1:
            handles.append(Line2D([], [], linestyle="", label=plain(
                f"{', '.join(titles)}: {kind}")))
        handles += [Line2D([], [], marker="o", linestyle="", markersize=7,
                           color=colours(label), label=name)
                    for label, name in enumerate(names)]
    title = next(iter(namings))[0] if len(namings) == 1 else None
    return handles, title, len(namings)


def png_path(args, codes):
    """Where the picture goes: --output, DIR/all_latent_spaces.png with --all, or
    beside the features."""
    if args.output:
        return Path(args.output)
    if args.all is not None:
        return Path(args.all) / "all_latent_spaces.png"
    suffix = "_latent_2d.png" if codes.dims == 2 else "_tsne.png"
    return codes.path.with_name(codes.prefix + suffix)


def save_maps(fig, models, output, show):
    """Add the legend of labels to the grid of maps, lay it out and write it."""
    handles, title, columns = legend_entries(models, label_colours()[0])
    legend = fig.legend(handles=handles, title=title, ncols=columns,
                        loc="center right", frameon=False)
    if len(models) > 1:
        fig.suptitle("Latent spaces of the test images", fontsize=14)
    # The maps keep their size; the figure widens for a legend wider than the
    # digits' (clothes' names, or a column per naming).
    margin = legend.get_window_extent().width / fig.dpi + 0.1
    fig.set_figwidth(fig.get_figwidth() + max(0.0, margin - 0.9))
    fig.tight_layout(rect=(0, 0, 1 - max(margin, 0.9) / fig.get_figwidth(), 1))
    figures.save_figure(fig, output, show)
    print(f"Wrote {shown(output)}")


"""
## The explorer: --html and --projector
"""


def explore(codes, points, quality, args, neighbours):
    """Write the interactive page and the projector files that were asked for."""
    if not (args.html or args.projector):
        return
    from plumbing import explorer  # only here: the page's VAE plane imports Keras

    if args.html:
        # Beside the PNG; with --all, beside each model's features.
        folder = png_path(args, codes).parent if args.all is None else Path(args.all)
        page = folder / f"{codes.prefix}_explorer.html"
        if codes.dims == 2:
            how = "codes plotted as they are"
        else:
            how = (f"t-SNE: perplexity {args.perplexity:g}, {args.max_iter} "
                   f"iterations, seed {args.seed}")
        caption = [f"{shown(codes.name)}: {len(codes.labels):,} test codes "
                   f"({codes.describe()}) of {shown(title_of(codes.data))}",
                   *figures_in_words(codes, quality, neighbours), how]
        plane = None
        if codes.decoder:
            print(f"Decoding the latent plane with {shown(codes.decoder.name)}")
            plane = explorer.decode_plane(codes.decoder, points)
        with write_errors_in_one_line(page):
            explorer.write_page(page, title=f"{model_title(codes)}: latent space",
                                points=points, labels=codes.labels,
                                images=codes.images, caption=caption, plane=plane,
                                rows=codes.test_rows, data_name=codes.data)
        print(f"Wrote {shown(page)}")
    if args.projector:
        # Every model into the one folder: TensorBoard reads a projector config only
        # there (or beside event files), and lists the models in its tensor menu.
        folder = Path(args.projector)
        with write_errors_in_one_line(folder):
            # The config names the files in UTF-8, which any file name is once shown.
            explorer.write_projector(folder, name=shown(codes.prefix), codes=codes.rows,
                                     labels=codes.labels, images=codes.images,
                                     data_name=codes.data)
        print(f"Wrote the Embedding Projector files in {shown(folder)}/")


@contextlib.contextmanager
def write_errors_in_one_line(path):
    """A write into ``path`` that fails (a full disk, say) is a one-line error."""
    try:
        yield
    except OSError as error:
        raise cli.UserError(f"{shown(path)}: cannot write it "
                            f"({error.strerror or error})") from None
