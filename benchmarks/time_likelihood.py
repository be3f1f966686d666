"""
Title: Time the VAE's exact likelihood
Description: Times plumbing.likelihood.exact_nll (the quadrature over the latent
plane) on a saved VAE decoder and the test digits of --data, and writes the
figures, the date and the machine to results/likelihood.json.

    python benchmarks/time_likelihood.py --out-dir DIR --data mnist.npz
    python benchmarks/time_likelihood.py --trained DIR2 --data mnist.npz

DIR holds variational_autoe_decoder.keras (from python variational_autoencoder.py
--out-dir DIR, with the same --data). With --trained, the VAEs trained at their
default recipes in DIR2 are measured instead, each under "trained" in the results
file: the exact NLL of every test digit beside the run's negative ELBO, the grid
moved finer and wider on the first 1,000 digits, and the importance-weighted
cross-check on the same digits.
"""

import argparse
import datetime
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plumbing import cli  # noqa: E402


def main():
    parser = cli.ArgumentParser(description=__doc__.strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out-dir", metavar="DIR",
                      help="time the quadrature on the decoder in DIR "
                           "(variational_autoe_decoder.keras)")
    what.add_argument("--trained", metavar="DIR",
                      help="measure the VAEs trained in DIR at their defaults")
    parser.add_argument("--data", default="mnist", metavar="NAME|PATH",
                        help="the test digits, as the training scripts take --data "
                             "(default: %(default)s)")
    parser.add_argument("--results", default=str(ROOT / "results" / "likelihood.json"),
                        metavar="FILE", help="where to write the figures (default: "
                                             "results/likelihood.json)")
    args = parser.parse_args()

    from plumbing import data, files, likelihood, precision, trained

    keras = likelihood.keras
    if args.trained:
        return measure_trained(args, keras)
    decoder = keras.models.load_model(
        trained.model_path(args.out_dir, "variational_autoe", "decoder"), safe_mode=True)
    _, (x_test, _), info = data.load_mnist(args.data)
    grey = likelihood.exact_nll(decoder, x_test, with_binarised=False)
    both = likelihood.exact_nll(decoder, x_test)
    record = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()}-core {precision.cpu_name()}",
        "load_average": os.getloadavg()[0],
        "backend": keras.backend.backend(),
        "command": "python benchmarks/time_likelihood.py " + " ".join(
            a if not Path(a).is_absolute() else Path(a).name for a in sys.argv[1:]),
        "test_digits": info["test_images"],
        "grid": both["nll_grid"],
        "seconds_grey_digits": grey["nll_seconds"],
        "seconds_grey_and_coin_flip_digits": both["nll_seconds"],
        "test_nll": both["test_nll"], "test_nll_binarised": both["test_nll_binarised"],
        "grid_check": both["nll_grid_check"],
    }
    files.save_json(record, args.results)
    print(record)


FIRST = 1000  # digits for the finer and wider grids
IMPORTANCE_DIGITS = {"variational_autoe": 1000, "variational_autoe_deconv": 100}
README = ROOT / "README.md"
RESULTS_PAGE = ROOT / "docs" / "results.md"
SCRIPTS = {"variational_autoe": "variational_autoencoder.py",
           "variational_autoe_deconv": "variational_autoencoder_deconv.py"}


def nll_table(results):
    """The trained VAEs' figures as the pages show them (the "exact-nll" blocks)."""
    lines = ["| model | negative ELBO (the test loss) | exact NLL | gap | on coin-flip "
             "digits | grid finer / wider, first 1,000 digits | importance-weighted "
             "(exact), first N digits | quadrature time |",
             "|---|---|---|---|---|---|---|---|"]
    runs = set()
    for prefix, m in sorted((results.get("trained") or {}).items()):
        first, weighted = m[f"first_{FIRST}_test_digits"], m["importance_weighted"]
        lines.append(
            f"| {SCRIPTS.get(prefix, prefix)} | {m['negative_elbo']:.1f} | "
            f"{m['test_nll']:.1f} | {m['gap']:.1f} | {m['test_nll_binarised']:.1f} | "
            f"{first['half_spacing'] - first['default_grid']:+.4f} / "
            f"{first['two_sd_wider'] - first['default_grid']:+.4f} | "
            f"{weighted['estimate']:.2f} ({weighted['exact']:.2f}), "
            f"N = {weighted['digits']:,} | {m['seconds']:.0f} s |")
        runs.add(f"{m['date']}, {m['machine']}")
    lines.append("")
    lines.append(f"Nats per test digit of full MNIST; runs of {'; '.join(sorted(runs))} "
                 "(`python benchmarks/time_likelihood.py --trained DIR --data "
                 "mnist.npz`, results/likelihood.json).")
    return "\n".join(lines)


def nll_sentence(results):
    """The same figures in one sentence, for the README's "exact-nll" block."""
    parts, runs = [], set()
    for prefix, m in sorted((results.get("trained") or {}).items()):
        parts.append(f"`{SCRIPTS.get(prefix, prefix)}` {m['test_nll']:.1f} nats "
                     f"against its {m['negative_elbo']:.1f} (gap {m['gap']:.1f})")
        runs.add(f"{m['date']}, {m['machine']}")
    return (f"Exact NLL on full MNIST: {'; '.join(parts)} (runs of "
            f"{'; '.join(sorted(runs))}; results/likelihood.json).")


def write_pages(results):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_all import write_block

    write_block(README, "exact-nll", nll_sentence(results))
    write_block(RESULTS_PAGE, "exact-nll", nll_table(results))


def measure_trained(args, keras):
    from plumbing import data, files, likelihood, precision, trained

    results = files.read_record(Path(args.results)) or {}
    measured = results.setdefault("trained", {})
    for prefix in ("variational_autoe", "variational_autoe_deconv"):
        record = files.read_record(Path(args.trained) / f"{prefix}_metrics.json")
        if record is None:
            print(f"{prefix}: not trained in {args.trained}")
            continue
        encoder, decoder = (keras.models.load_model(
            trained.model_path(args.trained, prefix, part), safe_mode=True)
            for part in ("encoder", "decoder"))
        shape = encoder.input_shape[1:]
        _, (x_test, _), info = data.load_mnist(args.data, shape=shape)
        nll = likelihood.exact_nll(decoder, x_test)
        first = x_test[:FIRST]
        exact = likelihood.exact_nll(decoder, first, with_binarised=False)["test_nll"]
        finer = likelihood.exact_nll(decoder, first, spacing=likelihood.SPACING / 2,
                                     with_binarised=False)["test_nll"]
        wider = likelihood.exact_nll(decoder, first, extent=likelihood.EXTENT + 2,
                                     with_binarised=False)["test_nll"]
        # The deconvolutional decoder costs far more per code: fewer digits for it.
        some = x_test[:IMPORTANCE_DIGITS[prefix]]
        weighted = likelihood.importance_weighted_nll(encoder, decoder, some)
        exact_there = exact if len(some) == FIRST else likelihood.exact_nll(
            decoder, some, with_binarised=False)["test_nll"]
        measured[prefix] = {
            "date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()}-core {precision.cpu_name()}",
            "model": f"{record['script']} at its {record['recipe']} recipe "
                     f"({record['epochs']} epochs, seed {record['seed']}, "
                     f"{record['precision']}, {record['backend']}), test digits of "
                     f"{info['name']}",
            "negative_elbo": record["test_loss"],
            "test_nll": nll["test_nll"],
            "test_nll_binarised": nll["test_nll_binarised"],
            "gap": record["test_loss"] - nll["test_nll"],
            "seconds": nll["nll_seconds"],
            "grid": nll["nll_grid"],
            "grid_check": nll["nll_grid_check"],
            f"first_{FIRST}_test_digits": {
                "default_grid": exact, "half_spacing": finer,
                "two_sd_wider": wider,
            },
            "importance_weighted": {
                "digits": len(some), "estimate": weighted, "exact": exact_there,
                "proposal": (
                    f"Student-t, {likelihood.PROPOSAL_DOF} degrees of freedom, the "
                    f"encoder's mean, {likelihood.PROPOSAL_WIDEN:g} times its "
                    f"standard deviation, mixed with the prior (a share of "
                    f"{likelihood.PROPOSAL_PRIOR_SHARE:g} of the codes), 1000 samples "
                    "per digit"),
            },
        }
        print(prefix, measured[prefix])
    files.save_json(results, args.results)
    write_pages(results)


if __name__ == "__main__":
    cli.main_guard(main)
