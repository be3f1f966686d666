"""The figures: learning curves, rows of digits, code maps, a VAE's latent means and
its manifold.

Every function here returns a matplotlib figure; ``save_figure`` writes one as a PNG
(atomically) and opens a window only when asked (``--show``).
"""

import numpy as np

from plumbing import cli
from plumbing.data import IMAGE_SHAPE, labels_of
from plumbing.files import atomic_path


def format_terms(reconstruction, kl, decimals=1):
    """A VAE's loss as the sum of its two terms, "195.3 = reconstruction 189.4 + KL
    5.9": each term rounded, the total the sum of the rounded terms, so that the
    line adds up as printed (rounding the loss itself can miss by a last digit)."""
    terms = round(reconstruction, decimals), round(kl, decimals)
    return (f"{sum(terms):.{decimals}f} = reconstruction {terms[0]:.{decimals}f} + "
            f"KL {terms[1]:.{decimals}f}")


def save_figure(fig, path, show=False):
    """Write ``fig`` to ``path`` as PNG; a write that fails is a one-line error."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    except OSError as error:
        raise cli.UserError(f"{path}: cannot write the figure "
                            f"({error.strerror or error})") from None
    if not show:
        plt.close(fig)


def use_window(show):
    """Before any figure: a window only with --show; otherwise no display is needed.
    (A notebook keeps its own backend, which shows each figure below its cell.)"""
    if not show and not cli.in_notebook():
        import matplotlib

        matplotlib.use("Agg")


def show_figures(show):
    if show:
        import matplotlib.pyplot as plt

        plt.show()


# The loss's unit, by the terms a run logs: a KL term marks a VAE, whose loss is in
# nats per image; the autoencoders' losses are the mean cross-entropy of a pixel.
NATS, PER_PIXEL = "nats per image", "per-pixel binary cross-entropy"
# From this many epochs on, the steep start sits at the left edge of the log plot,
# leaving its upper right free for an inset of the flat tail.
INSET_FROM = 30


def learning_curves(history, title, unit=None, learning_rate=None):
    """Train and test loss per epoch (``history``: Keras' History.history), the terms
    of a loss that has several (a VAE's two, the sparse model's reconstruction
    beside its penalty), each in a panel of its own, and the learning rate below.

    The whole run is drawn on a logarithmic y axis, so that the steep first epochs
    and the slow late ones both show; in a long run an inset redraws the loss after
    the first tenth of the epochs on a linear scale, where over-fitting shows. ``unit`` labels
    the y axis (by default nats per image when the history has a KL term, else
    per-pixel binary cross-entropy). ``learning_rate`` is the rate of each epoch;
    by default the history's ``learning_rate``, if it logged one.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    unit = unit or (NATS if "kl" in history else PER_PIXEL)
    if learning_rate is None:
        learning_rate = history.get("learning_rate")
    # A term that is the whole loss (the plain autoencoders' reconstruction) would
    # only draw the loss twice.
    panels = [("loss", "loss")] + [
        (name, label) for name, label in (("reconstruction", "reconstruction term"),
                                          ("kl", "KL term"))
        if name in history and not np.allclose(history[name], history["loss"])]
    has_rate = learning_rate is not None and len(learning_rate) > 0
    fig = plt.figure(figsize=(5.5 * len(panels), 5.5 if has_rate else 4))
    grid = fig.add_gridspec(2 if has_rate else 1, len(panels),
                            height_ratios=[3, 1] if has_rate else [1])
    axes = [fig.add_subplot(grid[0, column]) for column in range(len(panels))]
    # A loss with terms that are not all drawn beside it (the sparse model's L1
    # penalty) is more than the reconstruction term's unit says.
    penalty = len(panels) == 2 and panels[1][0] == "reconstruction"
    for ax, (name, label) in zip(axes, panels):
        values = {"train": history[name], "test": history.get(f"val_{name}", [])}
        _curves(ax, values, with_inset=name == "loss")
        ax.set_ylabel(f"{unit} + penalty" if penalty and name == "loss" else unit)
        ax.set_title(label)
    if has_rate:
        ax = fig.add_subplot(grid[1, :])
        epochs = np.arange(1, len(learning_rate) + 1)
        ax.plot(epochs, learning_rate, color="tab:gray")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _curves(ax, values, with_inset):
    """Train (solid) and test (dashed) curves on a log y axis when every value is
    positive, and, for a run long enough that its tail flattens, an inset of the
    later epochs."""
    from matplotlib.ticker import LogLocator, MaxNLocator, ScalarFormatter

    epochs = np.arange(1, len(values["train"]) + 1)
    marker = "o" if len(epochs) <= 20 else None  # a short run: show each epoch
    for split, style in (("train", "-"), ("test", "--")):
        if len(values[split]):
            ax.plot(epochs, values[split], style, marker=marker, label=split)
    everything = np.concatenate([np.asarray(v, dtype=float)
                                 for v in values.values() if len(v)])
    finite = everything[np.isfinite(everything)]
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")
        # Plain numbers on the log axis: its span is often under one decade.
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_locator(LogLocator(subs=np.arange(1.0, 10.0)))
        for axis_formatter in (ax.yaxis.set_major_formatter,
                               ax.yaxis.set_minor_formatter):
            formatter = ScalarFormatter()
            formatter.set_scientific(False)
            axis_formatter(formatter)
        ax.tick_params(axis="y", which="minor", labelsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3, which="both")
    if with_inset and len(epochs) >= INSET_FROM and finite.size:
        # Left of the inset and above the flat tail, where a long run's curves
        # seldom go.
        ax.legend(loc="center left", bbox_to_anchor=(0.08, 0.6))
        _tail_inset(ax, values, epochs)
    else:
        ax.legend()


def _tail_inset(ax, values, epochs):
    """The epochs after the first tenth, on a linear scale fitted to them."""
    from matplotlib.ticker import MaxNLocator

    first = len(epochs) // 10
    inset = ax.inset_axes([0.42, 0.42, 0.55, 0.52])
    later = []
    for split, style in (("train", "-"), ("test", "--")):
        tail = np.asarray(values[split][first:], dtype=float)
        if len(tail):
            inset.plot(epochs[first:first + len(tail)], tail, style)
            later.append(tail[np.isfinite(tail)])
    later = np.concatenate(later)
    if later.size:
        low, high = later.min(), later.max()
        margin = 0.05 * (high - low) or 0.01 * abs(high) or 0.01
        inset.set_ylim(low - margin, high + margin)
    inset.set_title(f"from epoch {first + 1}", fontsize="small")
    inset.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    inset.yaxis.set_major_locator(MaxNLocator(nbins=4))
    inset.tick_params(labelsize="small")
    inset.grid(alpha=0.3)


def digit_rows(rows, title):
    """One row of 28x28 grey digits per (label, images) pair: originals over
    reconstructions, say."""
    import matplotlib.pyplot as plt

    columns = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), columns, squeeze=False,
                             figsize=(1.6 * columns, 1.8 * len(rows)))
    for (label, images), row in zip(rows, axes):
        for ax, image in zip(row, images):
            ax.imshow(np.reshape(image, IMAGE_SHAPE), cmap="gray", vmin=0, vmax=1)
        for ax in row:
            ax.set_axis_off()
        row[0].set_title(label, loc="left", fontsize=11)
    fig.suptitle(title)
    return fig


def code_maps(codes, title):
    """Each image's (h, w, c) code as its c maps side by side, one row per image."""
    import matplotlib.pyplot as plt

    codes = np.asarray(codes)
    n, h, w, c = codes.shape
    tiles = codes.transpose(0, 1, 3, 2).reshape(n, h, c * w)  # the c maps side by side
    fig, axes = plt.subplots(n, 1, figsize=(max(4, c * w / 4), 0.9 * n + 0.6))
    for ax, tile in zip(np.atleast_1d(axes), tiles):
        ax.imshow(tile, cmap="gray")
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


def latent_scatter(z, labels, title, data_name="mnist"):
    """2-d codes, one colour per label, named as ``data_name``'s labels are (the
    ``name`` in load_mnist's info: digits for MNIST, clothes for Fashion-MNIST)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    kind, names = labels_of(data_name)
    for label, name in enumerate(names):
        mask = labels == label
        ax.scatter(z[mask, 0], z[mask, 1], s=3, color=cmap(label), label=name)
    ax.legend(title=kind, markerscale=4, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    return fig


def digit_canvas(digits, extent, title):
    """An (n, n, 28, 28) grid of digits as one picture, on axes spanning ``extent``
    (x0, x1, y0, y1); row 0 is drawn at the top."""
    import matplotlib.pyplot as plt

    n = len(digits)
    digits = np.reshape(digits, (n, n, *IMAGE_SHAPE))
    canvas = digits.transpose(0, 2, 1, 3).reshape(n * IMAGE_SHAPE[0], n * IMAGE_SHAPE[1])
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, extent=extent)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    return fig


def vae_figures(name, history, digits, reconstructed, z_mean, labels, decoder,
                data_name="mnist"):
    """The figures both VAE lessons draw, by file name: the learning curves, test
    ``digits`` over their ``reconstructed`` versions, the latent means ``z_mean``
    coloured by ``labels``, and the manifold that ``decoder`` draws."""
    return {
        "history": learning_curves(history.history, title=f"{name}: learning"),
        "reconstructions": digit_rows(
            [("original", digits[:len(reconstructed)]), ("reconstructed", reconstructed)],
            title=f"{name}: test digits"),
        "latent": latent_scatter(z_mean, labels,
                                 title=f"{name}: latent means of the test images",
                                 data_name=data_name),
        "manifold": decoded_manifold(
            decoder, title=f"{name}: digits decoded across the latent space"),
    }


def decoded_manifold(decoder, title, n=15):
    """The digits ``decoder`` draws from an n x n grid over a 2-d latent space.

    The prior is N(0, I), so the grid is spaced by evenly spaced probabilities
    (Gaussian quantiles), not evenly spaced z: it then sits where the codes live.
    """
    from scipy.stats import norm

    quantiles = norm.ppf(np.linspace(0.05, 0.95, n)).astype(np.float32)
    zx, zy = np.meshgrid(quantiles, quantiles[::-1])  # z[1] grows upwards
    grid = np.stack([zx.ravel(), zy.ravel()], axis=1)
    digits = decoder.predict(grid, batch_size=len(grid), verbose=0)
    extent = (quantiles[0], quantiles[-1], quantiles[0], quantiles[-1])
    return digit_canvas(np.reshape(digits, (n, n, *IMAGE_SHAPE)), extent, title)
