"""The visualiser's command line: its options, each checked before any work, and
where its inputs and its picture are.

Nothing here imports scikit-learn or matplotlib, so that ``--help`` answers at once.
"""

import argparse
import os
from pathlib import Path

from plumbing import cli, explorer
from plumbing.saved_codes import FEATURES_SUFFIX, MODEL_NAMES, prefix_of

DESCRIPTION = """\
Draw the codes a training script saved as a picture of the test digits: one dot
per digit, coloured by what digit it is. Wide codes are squeezed into two
dimensions by t-SNE; 2-D codes (the VAEs') are plotted as they are. Two numbers
say how good the codes are: how often a digit's 5 nearest neighbours among the
codes are the same digit (5-NN accuracy), and how faithfully the picture keeps
those neighbours (trustworthiness).
"""
EXAMPLES = """\
examples:
  python visualize_latent_space.py features/deep_autoe_features.pickle
  python visualize_latent_space.py features/variational_autoe_features.pickle --html
  python visualize_latent_space.py --all
  python visualize_latent_space.py --all runs/ --output comparison.png
"""


def tsne_iterations(text):
    """--max-iter: a whole number of t-SNE steps, scikit-learn's 250 at least."""
    value = cli.positive_int(text)
    if value < 250:  # scikit-learn's minimum: 250 iterations are early exaggeration
        raise argparse.ArgumentTypeError(f"must be at least 250, got {text}")
    return value


def make_parser():
    parser = cli.ArgumentParser(
        prog="visualize_latent_space.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
        description=DESCRIPTION,
    )
    parser.add_argument("features", nargs="?", metavar="FEATURES", type=cli.path,
                        help="The <prefix>_features.pickle a training script wrote "
                             "(leave it out with --all).")
    parser.add_argument("--all", nargs="?", const=cli.DEFAULT_OUT_DIR, metavar="DIR",
                        type=cli.path,
                        help="Draw every *_features.pickle in DIR side by side in one "
                             "figure and print a table of their two numbers (DIR "
                             f"defaults to {cli.DEFAULT_OUT_DIR}/).")
    parser.add_argument("--labels", metavar="PATH", type=cli.path,
                        help="The digits of the codes, as a pickle (default: "
                             "<prefix>_labels.pickle beside the features).")
    parser.add_argument("--output", metavar="PATH", type=cli.path,
                        help="The PNG to write (default: <prefix>_tsne.png beside the "
                             "features, <prefix>_latent_2d.png for 2-D codes, "
                             "DIR/all_latent_spaces.png with --all).")
    parser.add_argument("--perplexity", type=cli.positive_float, default=30.0,
                        metavar="P",
                        help="How many neighbours t-SNE tries to keep around each "
                             "point; larger values favour the overall layout "
                             "(default: %(default)s).")
    parser.add_argument("--max-iter", type=tsne_iterations, default=500, metavar="N",
                        help="How many t-SNE steps to take; 500 give maps as "
                             "trustworthy as scikit-learn's 1000, see "
                             "results/tuning.md (default: %(default)s).")
    parser.add_argument("--seed", type=cli.seed, default=1337,
                        help="The random seed of t-SNE and --max-points: the same seed "
                             "gives the same picture (default: %(default)s).")
    parser.add_argument("--max-points", type=cli.positive_int, metavar="N",
                        help="Draw only N of the test digits, each digit in its share, "
                             "to save time (default: all of them).")
    parser.add_argument("--threads", type=cli.positive_int, default=idle_cores(),
                        metavar="N",
                        help="How many CPU threads to use, as busy cores slow t-SNE "
                             "down badly (default: the cores idle now, %(default)s).")
    parser.add_argument("--no-cache", action="store_true",
                        help="Compute the t-SNE again even if a saved one matches "
                             "(default: reuse it).")
    parser.add_argument("--html", action="store_true",
                        help="Also write <prefix>_explorer.html beside the PNG, a "
                             "page to pan, zoom and see each dot's digit (default: "
                             "off).")
    parser.add_argument("--projector", metavar="DIR", type=cli.path,
                        help="Also write the codes into DIR for TensorBoard's "
                             "Embedding Projector, one folder per model with --all "
                             "(default: off).")
    parser.add_argument("--show", action="store_true",
                        help="Also open the figure in a window; it is always saved "
                             "(default: off).")
    return parser


def parse_args(argv=None):
    """The options, every one checked (output folders too) before any work."""
    args = make_parser().parse_args(argv)
    if (args.features is None) == (args.all is None):
        raise cli.UserError("give one FEATURES pickle or --all [DIR] (see --help)")
    if args.all is not None and args.labels:
        raise cli.UserError("--labels goes with one FEATURES pickle, not --all")
    if args.output:
        cli.check_output_file(args.output)
    if not args.output or (args.html and args.all is not None):
        check_default_folder(args)
    if args.projector:
        cli.check_output_dir(args.projector, option="--projector")
        explorer.read_projector_config(args.projector)
    return args


def check_default_folder(args):
    """The PNG goes beside the features (into DIR with --all), and with --all each
    page too: that folder must take a file, checked now rather than after t-SNE.
    A folder that is not there is left to the loading's clearer message."""
    if args.all is not None:
        folder, option, name = Path(args.all), "--all", None
    else:
        folder, option, name = Path(args.features).parent, "", args.features
    if folder.is_dir():
        cli.check_output_dir(folder, option=option, name=name,
                             hint="; the picture goes there unless --output PATH says "
                                  "where")


def idle_cores():
    """How many CPU cores no other program is busy with, judged by the load average.

    t-SNE's gradient runs in lock-step on every thread it is given: when another
    program (a training run, say) holds a core, each of its hundreds of steps waits
    for the thread that shares it (see results/tuning.md).
    """
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on Windows
        busy = 0.0
    return max(1, min(cores, round(cores - busy)))


def features_paths(args):
    """The features to plot: one file, or every one in --all's folder."""
    return [Path(args.features)] if args.all is None else find_features(args.all)


def find_features(directory):
    """Every ``*_features.pickle`` in ``directory``, in the order of the tutorial."""
    directory = Path(directory)
    if not directory.exists():
        raise cli.UserError(f"--all {directory}: no such directory")
    if not directory.is_dir():
        raise cli.UserError(f"--all {directory}: not a directory (to plot one file, "
                            "leave out --all)")
    try:
        paths = [p for p in directory.iterdir() if p.name.endswith(FEATURES_SUFFIX)
                 and not p.name.startswith(".")]
    except OSError as error:
        raise cli.UserError(f"--all {directory}: cannot read it "
                            f"({error.strerror})") from None
    if not paths:
        raise cli.UserError(f"--all {directory}: no *{FEATURES_SUFFIX} files; run a "
                            "training script first")
    known = list(MODEL_NAMES)

    def order(path):
        prefix = prefix_of(path)
        return (known.index(prefix), "") if prefix in known else (len(known), prefix)

    return sorted(paths, key=order)
