"""
Title: Train every model at its defaults and tabulate the results
Description: Runs the six scripts (and --sparse) on one dataset, then collects each
<prefix>_metrics.json and the 5-nearest-neighbour accuracy of the saved features into
results/results.json and a markdown table (results/results.md) for the README.

    python benchmarks/run_all.py --data mnist.npz          # about 45 minutes on 2 cores
    python benchmarks/run_all.py --data mnist.npz --collect-only

Every run's outputs (features, figures, models) stay in --out-dir (default
results/features); --collect-only skips training and tabulates what is there.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plumbing import cli, data  # noqa: E402

# (prefix, command, code size, the tutorial's published figure, our target)
MODELS = [
    ("simple_autoe", ["simple_autoencoder.py"], "32",
     "~0.09 (Adam text), 0.11 (2016 Adadelta)", 0.090),
    ("sparse_autoe", ["simple_autoencoder.py", "--sparse"], "32",
     "0.10 (test)", 0.100),
    ("deep_autoe", ["deep_autoencoder.py"], "32", "~0.08 (Adam), 0.097 (Adadelta)",
     0.080),
    ("conv_autoe", ["convolutional_autoencoder.py"], "4x4x8 = 128", "0.094", 0.090),
    ("denoise_autoe", ["image_denoising.py"], "7x7x32 = 1568", "none published", 0.100),
    ("variational_autoe", ["variational_autoencoder.py"], "2",
     "~147-150 (comparable 2-d VAEs)", 145.0),
    ("variational_autoe_deconv", ["variational_autoencoder_deconv.py"], "2",
     "~147 (keras-io conv VAE, train loss)", 145.0),
]


def train(data, out_dir, only):
    for prefix, command, *_ in MODELS:
        if only and prefix not in only:
            continue
        print(f"== {' '.join(command)}", flush=True)
        data_flag = ["--data", data] if data else []  # else the scripts' own default
        status = subprocess.call([sys.executable, *command, *data_flag,
                                  "--out-dir", str(out_dir)], cwd=ROOT)
        if status:
            sys.exit(f"run_all.py: error: {' '.join(command)} failed (exit {status})")


def collect(out_dir):
    from plumbing.latent import load_array
    from visualize_latent_space import knn_accuracy

    rows = []
    for prefix, command, code, tutorial, target in MODELS:
        metrics_path = out_dir / f"{prefix}_metrics.json"
        if not metrics_path.exists():
            print(f"(no {metrics_path.name}: {prefix} not trained yet)")
            continue
        metrics = json.loads(metrics_path.read_text())
        features = load_array(out_dir / f"{prefix}_features.pickle")
        labels = load_array(out_dir / f"{prefix}_labels.pickle")
        # The sparse model's loss includes its L1 penalty; compare reconstructions.
        # (The VAEs' reconstruction term is only part of theirs: they keep the loss.)
        loss = metrics["test_reconstruction"] if "sparsity" in metrics \
            else metrics["test_loss"]
        rows.append({
            "model": prefix, "command": " ".join(command), "code_size": code,
            "epochs": metrics["epochs"], "batch_size": metrics["batch_size"],
            "optimizer": metrics["optimizer"],
            "learning_rate": metrics.get("learning_rate"),
            "warmup_epochs": metrics.get("warmup_epochs", 0),
            "coin_flips": metrics.get("coin_flips", False), "test_loss": loss,
            "precision": metrics.get("precision", "float32"),
            "tutorial_figure": tutorial, "target": target, "met": loss <= target,
            "knn_accuracy": knn_accuracy(features, labels),
            "seconds_per_epoch": metrics["seconds_per_epoch"],
            "total_minutes": metrics["training_seconds"] / 60,
            "mean_code_activation": metrics.get("mean_code_activation"),
            "backend": metrics["backend"], "machine": metrics["machine"],
            # A local path says nothing on another machine; keep the file's name.
            "data": Path(metrics["data"]["source"]).name,
        })
    return rows


def markdown(rows):
    lines = [
        "| model | code size | epochs | recipe | test loss | tutorial's figure | "
        "target | 5-NN accuracy | s/epoch | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        loss = f"{r['test_loss']:.1f}" if r["test_loss"] > 10 else f"{r['test_loss']:.4f}"
        target = f"≤ {r['target']:g} " + ("met" if r["met"] else "**missed**")
        rate = f" {r['learning_rate']:g}" if r["learning_rate"] else ""
        warmup = f", {r['warmup_epochs']}-epoch warm-up" if r["warmup_epochs"] else ""
        flips = ", coin flips" if r["coin_flips"] else ""
        mixed = f", {r['precision']}" if r["precision"] != "float32" else ""
        recipe = f"batch {r['batch_size']}, {r['optimizer']}{rate}{warmup}{flips}{mixed}"
        lines.append(f"| {r['model']} | {r['code_size']} | {r['epochs']} | {recipe} | "
                     f"{loss} | {r['tutorial_figure']} | {target} | "
                     f"{r['knn_accuracy']:.3f} | {r['seconds_per_epoch']:.1f} | "
                     f"{r['total_minutes']:.1f} |")
    total = sum(r["total_minutes"] for r in rows)
    backends = sorted({r["backend"] for r in rows})
    machines = sorted({r["machine"] for r in rows})
    lines.append("")
    lines.append(f"Total training time {total:.0f} minutes; backend "
                 f"{', '.join(backends)}; {'; '.join(machines)}.")
    return "\n".join(lines) + "\n"


def main():
    parser = cli.ArgumentParser(description=__doc__.strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", metavar="PATH",
                        help="full MNIST .npz (keras.datasets.mnist layout); "
                             "default: what the scripts load by default")
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "features"),
                        help="where the scripts write their outputs (default: results/features)")
    parser.add_argument("--results", default=str(ROOT / "results"),
                        help="where results.json and results.md are written (default: results)")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="train only these models (e.g. deep_autoe conv_autoe)")
    parser.add_argument("--collect-only", action="store_true",
                        help="do not train; tabulate the metrics already in --out-dir")
    args = parser.parse_args()
    known = [prefix for prefix, *_ in MODELS]
    unknown = [name for name in args.only or [] if name not in known]
    if unknown:
        raise cli.UserError(f"--only {' '.join(unknown)}: no such model; choose from "
                            f"{', '.join(known)}")
    if args.data and not args.collect_only:
        data.check_npz(args.data)  # in a moment, not from the first script

    out_dir = Path(args.out_dir)
    if not args.collect_only:
        train(args.data, out_dir, args.only)
    rows = collect(out_dir)
    if not rows:
        raise cli.UserError(f"no metrics files in {out_dir}")

    from plumbing import files

    results = Path(args.results)
    files.save_json({"models": rows, "cpu_count": os.cpu_count()},
                    results / "results.json")
    table = markdown(rows)
    with files.atomic_path(results / "results.md") as tmp:
        tmp.write_text(table)
    print(table)


if __name__ == "__main__":
    cli.main_guard(main)
