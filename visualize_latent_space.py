"""
Title: Seeing a latent space: t-SNE maps of the saved codes
Description: Plot the codes a model learned as a 2-D map of the test digits, measure
how well they separate the digits, and compare the models side by side.

Every training script saves the bottleneck codes of the test digits as
`<prefix>_features.pickle` (their digits in `<prefix>_labels.pickle`). This script
squeezes the codes into two dimensions with t-SNE, colours each test image by its
digit, and prints two numbers that say more than the colours.

    python visualize_latent_space.py features/deep_autoe_features.pickle
    python visualize_latent_space.py features/conv_autoe_features.pickle --perplexity 50
    python visualize_latent_space.py features/variational_autoe_features.pickle --html
    python visualize_latent_space.py --all                  # every model in features/
    python visualize_latent_space.py --all runs/ --output comparison.png

One file gives `<prefix>_tsne.png` beside it (`<prefix>_latent_2d.png` for the VAEs'
2-D codes, which need no t-SNE), `--all` gives `all_latent_spaces.png`, `--html` a
page to explore the map, `--projector DIR` files for TensorBoard. The chores are in
`plumbing/`: the command line (`visualiser_options.py`), safe loading (`loading.py`,
`saved_codes.py`), the t-SNE cache (`tsne_cache.py`) and the reporting
(`map_report.py`).
"""

"""
## Setup

No deep-learning backend is needed: the codes are numpy arrays, scikit-learn does
the rest. The options are checked before its imports, which take a second or two.
"""

from plumbing import cli, figures, map_report, saved_codes, tsne_cache
from plumbing import visualiser_options as options

if __name__ == "__main__":
    cli.main_guard(options.parse_args)

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

NEIGHBOURS = 5  # for both quality figures: kNN accuracy and trustworthiness
# t-SNE approximates far-away points more coarsely than scikit-learn's 0.5, and
# wide codes are first reduced by PCA, as its documentation advises: much faster,
# and as trustworthy (see results/tuning.md).
ANGLE = 0.8
PCA_DIMS = 50
# Trustworthiness compares full N x N distance matrices (about 2 GB for 10,000
# points); beyond this many points it is measured on a stratified sample.
TRUST_MAX_POINTS = 10_000

"""
## Loading the codes

Features arrive in their natural shape: N x 32 for the dense models, N x 4 x 4 x 8 or
N x 7 x 7 x 32 for the convolutional ones, N x 2 for the VAEs. t-SNE and the nearest
neighbours compare flat vectors, so each code becomes one row (4 x 4 x 8 -> 128
numbers). Codes that cannot be mapped (all alike: a collapsed model) are refused
before any slow work.
"""


def load(features_path, args):
    codes = saved_codes.Codes(features_path, args)  # unpickled safely, checked
    codes.rows = codes.features.reshape(len(codes.features), -1)
    saved_codes.check_mappable(codes, args.perplexity, NEIGHBOURS)
    return codes


"""
## Two numbers that describe a latent space

A map is easy to over-read, so we measure two things:

* **kNN accuracy**: classify each test digit by a vote of its 5 nearest neighbours in
  the code space (raw, unscaled codes, 5-fold stratified cross-validation within the
  test set). High accuracy means digits of a kind sit together in the codes
  themselves, before any t-SNE. Chance is about 0.1.
* **Trustworthiness** of the 2-D map (1.0 is perfect): are the 5 nearest neighbours of
  a point on the map also near it in the code space? It tells how far the picture can
  be trusted. 2-D codes are plotted as they are, so there is nothing to measure.
"""


def knn_accuracy(features, labels, folds=5):
    """Mean cross-validated accuracy of a 5-nearest-neighbour classifier, or NaN when
    a digit has too few examples or there is only one digit (every vote would be
    right). ``features`` are flattened, one row per image."""
    features = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    counts = np.unique(labels, return_counts=True)[1]
    folds = min(folds, counts.min()) if counts.size else 0  # every digit in each fold
    if counts.size < 2 or folds < 2 or len(labels) * (folds - 1) // folds < NEIGHBOURS:
        return float("nan")
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=NEIGHBOURS), features,
                             labels, cv=StratifiedKFold(n_splits=folds))
    return float(scores.mean())


def map_trustworthiness(rows, points, labels, seed):
    """Trustworthiness of ``points`` (2-D) as a map of ``rows``; how many it used."""
    keep = saved_codes.stratified_subsample(labels, TRUST_MAX_POINTS, seed)
    if len(keep) <= 2 * NEIGHBOURS:
        return float("nan"), len(keep)
    trust = trustworthiness(rows[keep], points[keep], n_neighbors=NEIGHBOURS)
    return float(trust), len(keep)


"""
## t-SNE

t-SNE places codes that are close in the code space close together on a plane. It
keeps neighbourhoods, not distances: the map's axes mean nothing, and neither do the
gaps between clusters. It takes tens of seconds for 10,000 codes, so the map is
cached beside the features until the features, labels or settings change.
"""


def run_tsne(rows, args):
    """The 2-D t-SNE map of ``rows`` (float32), printing progress while it runs."""
    if rows.shape[1] > PCA_DIMS and len(rows) > PCA_DIMS:
        print(f"PCA: {rows.shape[1]} -> {PCA_DIMS} dimensions before t-SNE")
        rows = PCA(n_components=PCA_DIMS, random_state=args.seed).fit_transform(rows)
    print(f"t-SNE of {len(rows):,} points x {rows.shape[1]} dims (perplexity "
          f"{args.perplexity:g}, {args.max_iter} iterations, seed {args.seed})")
    tsne = TSNE(n_components=2, perplexity=args.perplexity, max_iter=args.max_iter,
                init="pca", learning_rate="auto", angle=ANGLE, random_state=args.seed)
    with tsne_cache.tsne_progress(tsne):
        return tsne.fit_transform(rows).astype(np.float32)


def latent_map(codes, args):
    """The 2-D points to draw for one model, and its two quality figures."""
    rows, labels = codes.rows, codes.labels
    if codes.dims == 2:  # a VAE's codes are a map already
        return rows, {"knn_accuracy": knn_accuracy(rows, labels)}
    # Everything the map depends on: a cached map is reused only if all of it matches.
    settings = {"perplexity": args.perplexity, "seed": args.seed,
                "max_points": args.max_points, "max_iter": args.max_iter, "init": "pca",
                "angle": ANGLE, "pca_dims_above": PCA_DIMS,
                "trust_max_points": TRUST_MAX_POINTS}
    cached = None if args.no_cache else tsne_cache.read_cache(codes, settings)
    if cached:
        return cached
    points = run_tsne(rows, args)
    trust, trust_points = map_trustworthiness(rows, points, labels, args.seed)
    quality = {"knn_accuracy": knn_accuracy(rows, labels), "trustworthiness": trust,
               "trust_points": trust_points}
    tsne_cache.write_cache(codes, settings, points, quality)
    return points, quality


"""
## Drawing

One scatter call for all digits, in a shuffled order: plotting digit by digit would
paint the 9s over everything else. Ten discrete colours, one per digit (the norm
gives each whole label its own). With `--all`, one map per model in a grid; the
grid, its legend of the colours and the layout are chores for `map_report`.
"""


def draw_map(ax, codes, points, quality, compact):
    colours, norm = map_report.label_colours()
    order = np.random.default_rng(0).permutation(len(points))
    size = float(np.clip(30_000 / len(points), 1, 20))  # fewer points, bigger dots
    ax.scatter(points[order, 0], points[order, 1], c=codes.labels[order], s=size,
               cmap=colours, norm=norm, linewidths=0, alpha=0.8)
    if codes.dims == 2:
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
    else:
        ax.set_xticks([])  # t-SNE axes have no meaning, only neighbourhoods do
        ax.set_yticks([])
    ax.set_title(map_report.map_title(codes, quality, NEIGHBOURS, compact),
                 fontsize=10 if compact else None)


"""
## Putting it together

Every file is loaded and checked first, and every title drawn once, so that a bad
one fails in a second rather than after minutes of t-SNE on the others; then each
model is mapped and measured, and the maps are drawn side by side.
"""


def main(argv=None):
    args = options.parse_args(argv)
    figures.use_window(args.show)
    models = [load(path, args) for path in options.features_paths(args)]
    map_report.check_titles(models, NEIGHBOURS)
    panels = []
    # t-SNE's threads work in lock-step: one on a busy core holds up all the others.
    with threadpool_limits(limits=args.threads):
        for number, codes in enumerate(models, 1):
            map_report.announce(codes, number, len(models))
            points, quality = latent_map(codes, args)
            map_report.print_quality(codes, quality, NEIGHBOURS)
            panels.append((codes, points, quality))
    if args.all is not None:
        map_report.print_table(panels, NEIGHBOURS)

    fig, axes = map_report.map_grid(len(panels))
    for ax, panel in zip(axes, panels):
        draw_map(ax, *panel, compact=len(panels) > 1)
    map_report.save_maps(fig, models, map_report.png_path(args, models[0]), args.show)
    for panel in panels:
        map_report.explore(*panel, args, NEIGHBOURS)
    figures.show_figures(args.show)


if __name__ == "__main__":
    cli.main_guard(main)
