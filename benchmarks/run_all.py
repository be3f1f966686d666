"""
Title: Train every model at its defaults and tabulate the results
Description: Runs the six scripts (and --sparse) on one dataset, then collects each
<prefix>_metrics.json and the 5-nearest-neighbour accuracy of the saved features into
results/results.json and a markdown table (results/results.md) for the README.

    python benchmarks/run_all.py --data mnist.npz          # hours on 2 CPU cores
    python benchmarks/run_all.py --data mnist.npz --collect-only
    python benchmarks/run_all.py --data mnist.npz --floor-only

Every run's outputs (features, figures, models) stay in --out-dir (default
results/features); --collect-only skips training and tabulates what is there.
Writing into the repository's results/ also rewrites the generated parts of the
README and docs/results.md (between <!-- NAME:start --> and <!-- NAME:end -->
markers, and the minutes column of the README's scripts table) and copies the
run's figures into assets/, so the page, its numbers and its pictures come from one
run, whose CPU the Results table names. --floor-only records only the loss floor
(below).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plumbing import cli, files, npz  # noqa: E402

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


# The figures the README shows, as each script names them in --out-dir.
FIGURES = ["simple_autoe_reconstructions.png", "sparse_autoe_reconstructions.png",
           "deep_autoe_reconstructions.png", "conv_autoe_reconstructions.png",
           "conv_autoe_codes.png", "denoise_autoe_reconstructions.png",
           "variational_autoe_reconstructions.png", "variational_autoe_latent.png",
           "variational_autoe_manifold.png", "variational_autoe_deconv_reconstructions.png",
           "variational_autoe_deconv_latent.png", "variational_autoe_deconv_manifold.png",
           # The learning curves of every model.
           *(f"{prefix}_history.png" for prefix in
             ("simple_autoe", "sparse_autoe", "deep_autoe", "conv_autoe",
              "denoise_autoe", "variational_autoe", "variational_autoe_deconv"))]
README = ROOT / "README.md"
RESULTS_PAGE = ROOT / "docs" / "results.md"


def entropy_floor(data):
    """The lowest binary cross-entropy any model can score on DATA's test digits.

    Cross-entropy against a grey pixel p is smallest when the prediction is p itself,
    and then it is the pixel's own entropy, -(p log p + (1-p) log(1-p)), which is
    above 0 for every grey level. Returns the mean over pixels and images (the
    autoencoders' loss) and the sum over the 784 pixels (the floor of the VAEs'
    reconstruction term, in nats per image)."""
    (_, _), (x_test, _) = npz.read_npz(data)
    p = x_test.astype("float64") / 255.0
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0)
              + np.where(p < 1, (1 - p) * np.log1p(-p), 0.0))
    h = h.reshape(len(h), -1)
    return {"per_pixel": float(h.mean()), "per_image_nats": float(h.sum(1).mean()),
            "test_images": len(h), "data": Path(data).name,
            "command": f"python benchmarks/run_all.py --data {Path(data).name} --floor-only"}


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


# What collect() and learning_curves() read from a run's metrics record: each
# field's type (optional ones may be missing or null).
NUMBER = (int, float)
FIELDS = {"epochs": int, "batch_size": int, "optimizer": str, "test_loss": NUMBER,
          "seconds_per_epoch": NUMBER, "training_seconds": NUMBER, "backend": str,
          "machine": str, "data": dict}
OPTIONAL = {"test_reconstruction": NUMBER, "learning_rate": NUMBER,
            "warmup_epochs": int, "coin_flips": bool, "precision": str,
            "mean_code_activation": NUMBER, "history": dict, "test_kl": NUMBER}
WORDS = {NUMBER: "a number", int: "an integer", str: "a string", dict: "an object",
         bool: "true or false"}


def read_metrics(path):
    """A run's metrics record, every field collect() reads of the type it needs;
    anything else (not JSON, nested too deep, a field of another type) is a
    one-line UserError."""
    record = files.read_json(path, what="a run's metrics record")

    def wrong(name, value, expected):
        return cli.UserError(f"{path}: {name} is {value!r:.60}, expected {expected}; "
                             "not a metrics record as the training scripts write it")

    required = dict(FIELDS, **({"test_reconstruction": NUMBER}
                               if "sparsity" in record else {}))
    for name, kind in [*required.items(), *OPTIONAL.items()]:
        value = record.get(name)
        if value is None and name not in required:
            continue
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise wrong(name, value, WORDS[kind])
    if not isinstance(record["data"].get("source"), str):
        raise wrong("data.source", record["data"].get("source"), "a string")
    for name, values in (record.get("history") or {}).items():
        if not isinstance(values, list) or not values or not all(
                isinstance(v, NUMBER) and not isinstance(v, bool) for v in values):
            raise wrong(f"history.{name}", values, "a list of numbers")
    if record.get("history") and "val_loss" not in record["history"]:
        raise wrong("history.val_loss", None, "a list of numbers")
    return record


def collect(out_dir):
    found = []
    for prefix, command, code, tutorial, target in MODELS:
        metrics_path = out_dir / f"{prefix}_metrics.json"
        if not os.path.lexists(metrics_path):
            print(f"(no {metrics_path.name}: {prefix} not trained yet)")
            continue
        found.append((prefix, command, code, tutorial, target,
                      read_metrics(metrics_path)))
    if not found:
        return []
    # Imported (seconds: scikit-learn) once every record has passed its check.
    from plumbing.loading import load_array
    from visualize_latent_space import knn_accuracy

    rows = []
    for prefix, command, code, tutorial, target, metrics in found:
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
            # The VAEs' exact negative log-likelihood (plumbing/likelihood.py).
            "test_nll": metrics.get("test_nll"),
            "test_nll_binarised": metrics.get("test_nll_binarised"),
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
        "| model | code size | epochs | recipe | test loss | exact NLL | "
        "tutorial's figure | target | 5-NN accuracy | s/epoch | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
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
                     f"{loss} | {nll_text(r)} | {r['tutorial_figure']} | {target} | "
                     f"{r['knn_accuracy']:.3f} | {r['seconds_per_epoch']:.1f} | "
                     f"{r['total_minutes']:.1f} |")
    total = sum(r["total_minutes"] for r in rows)
    backends = sorted({r["backend"] for r in rows})
    machines = sorted({r["machine"] for r in rows})
    lines.append("")
    lines.append(f"Total training time {total:.0f} minutes; backend "
                 f"{', '.join(backends)}; {'; '.join(machines)}.")
    return "\n".join(lines) + "\n"


def loss_text(loss):
    return f"{loss:.1f}" if loss > 10 else f"{loss:.4f}"


def nll_text(row):
    """The exact NLL of a VAE in nats per digit; empty for the other models."""
    return f"{row['test_nll']:.1f}" if row.get("test_nll") is not None else ""


def readme_table(results):
    """The README's results table and the line under it, from results.json."""
    rows = results["models"]
    lines = ["| model | code | precision | test loss | exact NLL | the tutorial's figure "
             "| our bar | 5-NN accuracy | s/epoch | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['command']} | {r['code_size']} | {r['precision']} | "
                     f"{loss_text(r['test_loss'])} | {nll_text(r)} | "
                     f"{r['tutorial_figure']} | "
                     f"≤ {r['target']:g} | {r['knn_accuracy']:.3f} | "
                     f"{r['seconds_per_epoch']:.1f} | {r['total_minutes']:.1f} |")
    total = sum(r["total_minutes"] for r in rows)
    floor = results.get("loss_floor")
    lines.append("")
    where = results.get("machine", rows[0]["machine"])
    lines.append(f"{len(rows)} models in {total:.0f} minutes of training, "
                 f"{results.get('date', '')}, "
                 f"{where}, {results.get('software', rows[0]['backend'])}.")
    if floor:
        lines.append(f"No model can score below {floor['per_pixel']:.3f} per pixel "
                     f"({floor['per_image_nats']:.1f} nats per image for the VAEs): "
                     "the test digits' own entropy (see docs/results.md).")
    return "\n".join(lines)


def floor_table(results):
    """docs/results.md: each model's test loss, the floor, and its distance above it."""
    floor = results["loss_floor"]
    lines = [f"Floor: {floor['per_pixel']:.4f} per pixel, {floor['per_image_nats']:.1f} "
             f"nats per image ({floor['test_images']:,} test digits of "
             f"`{floor['data']}`; `{floor['command']}`).", "",
             "| model | test loss | floor | above the floor |", "|---|---|---|---|"]
    for r in results["models"]:
        vae = r["test_loss"] > 10
        bottom = floor["per_image_nats"] if vae else floor["per_pixel"]
        above = r["test_loss"] - bottom
        lines.append(f"| {r['command']} | {loss_text(r['test_loss'])} | "
                     f"{loss_text(bottom)} | {loss_text(above)} |")
    return "\n".join(lines)


def write_block(path, name, text):
    """Replace what lies between <!-- NAME:start --> and <!-- NAME:end --> in PATH."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    page = path.read_text() if path.exists() else ""
    if start not in page or end not in page:
        print(f"(no {name} markers in {path.name}: left as it is)")
        return
    head, rest = page.split(start, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


SCRIPTS_HEADER = "| script | model (as in the tutorial) |"


def scripts_minutes(page, results):
    """PAGE with the last cell of each row of the scripts table (the one under
    SCRIPTS_HEADER) set to that script's minutes at its defaults in RESULTS."""
    minutes = {f"`{r['command']}`": f"{r['total_minutes']:.0f}" for r in results["models"]}
    lines, inside = page.split("\n"), False
    for i, line in enumerate(lines):
        inside = line.startswith(SCRIPTS_HEADER) or (inside and line.startswith("|"))
        cells = line.split("|")
        if inside and cells[1].strip() in minutes:
            cells[-2] = f" {minutes[cells[1].strip()]} "
            lines[i] = "|".join(cells)
    return "\n".join(lines)


def update_pages(results):
    write_block(README, "results-table", readme_table(results))
    README.write_text(scripts_minutes(README.read_text(), results))
    if results.get("machine"):
        write_block(RESULTS_PAGE, "run", run_line(results))
    if results.get("loss_floor"):
        write_block(RESULTS_PAGE, "loss-floor", floor_table(results))
    if results.get("figures"):
        write_block(RESULTS_PAGE, "figures", f"The figures come from {results['figures']}.")


def refresh_figures(out_dir, assets=ROOT / "assets"):
    """Copy the run's figures into assets/ and draw all_latent_spaces.png from its
    features, so the README's pictures come from the run behind its table."""
    missing = [name for name in FIGURES if not (out_dir / name).exists()]
    if missing:
        print(f"(figures not refreshed: {', '.join(missing)} missing in {out_dir})")
        return False
    for name in FIGURES:
        shutil.copyfile(out_dir / name, assets / name)
    status = subprocess.call([sys.executable, "visualize_latent_space.py", "--all",
                              str(out_dir)], cwd=ROOT)
    if status:
        sys.exit(f"run_all.py: error: visualize_latent_space.py --all failed ({status})")
    shutil.copyfile(out_dir / "all_latent_spaces.png", assets / "all_latent_spaces.png")
    return True


def learning_curves(out_dir, record):
    """results/curves.json: every epoch's losses of the run's models, and the points
    docs/results.md quotes (after a tenth of the epochs, at half-way, at the end)."""
    curves = {key: record[key] for key in ("date", "command", "software")}
    curves["models"] = {}
    for row in record["models"]:
        metrics = read_metrics(out_dir / f"{row['model']}_metrics.json")
        history = metrics.get("history")
        if not history:
            continue
        test = history["val_loss"]
        curves["models"][row["model"]] = {
            "epochs": metrics["epochs"],
            "precision": metrics.get("precision", "float32"),
            "test_loss": metrics["test_loss"],
            "test_reconstruction": metrics.get("test_reconstruction"),
            "test_kl": metrics.get("test_kl"),
            "final_train_loss": history["loss"][-1], "final_test_loss": test[-1],
            "test_loss_after_tenth": test[len(test) // 10 - 1],
            "test_loss_at_half": test[len(test) // 2 - 1],
            "seconds_per_epoch": metrics["seconds_per_epoch"],
            "minutes": metrics["training_seconds"] / 60, "history": history}
    return curves


def machine():
    """The machine the runs were made on, in words: its CPU, whether that CPU has
    bfloat16 instructions (they decide --precision auto), and its GPU if any."""
    from plumbing import precision

    flags = precision.cpu_bfloat16_flags()
    cpu = f"{os.cpu_count()}-core {precision.cpu_name() or platform.machine()} " + \
        (f"with bfloat16 instructions ({' and '.join(flags)})" if flags
         else "without bfloat16 instructions")
    gpu = precision.gpu_compute_capability()
    return cpu + (f", a GPU of compute capability {gpu[0]}.{gpu[1]}" if gpu else ", no GPU")


def run_line(results):
    """docs/results.md: when, how and where the table's runs were made."""
    day = datetime.date.fromisoformat(results["date"])
    return (f"{day.day} {day:%B %Y}, `{results['command']}`, {results['software']}, "
            f"on a {results['machine']}.")


def software():
    versions = []
    for package, name in [("tensorflow", "TensorFlow"), ("keras", "Keras")]:
        try:
            versions.append(f"{name} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return " / ".join(versions)


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
    parser.add_argument("--floor-only", action="store_true",
                        help="only record the loss floor of --data's test digits in "
                             "results.json (and the pages generated from it)")
    args = parser.parse_args()
    known = [prefix for prefix, *_ in MODELS]
    unknown = [name for name in args.only or [] if name not in known]
    if unknown:
        raise cli.UserError(f"--only {' '.join(unknown)}: no such model; choose from "
                            f"{', '.join(known)}")
    if args.data:
        npz.check_npz(args.data)  # in a moment, not from the first script
    cli.check_output_dir(args.results, "--results")
    if args.collect_only and os.path.lexists(args.out_dir) \
            and not os.path.isdir(args.out_dir):
        raise cli.UserError(f"--out-dir {args.out_dir}: not a directory")
    elif not args.collect_only:
        cli.check_output_dir(args.out_dir)

    results = Path(args.results)
    ours = results.resolve() == (ROOT / "results").resolve()  # then rewrite the pages
    previous = results / "results.json"
    previous = files.read_json(previous, what="a results.json") \
        if os.path.lexists(previous) else {}
    if args.floor_only:
        if not args.data:
            parser.exit(2, "run_all.py: error: --floor-only needs --data\n")
        previous["loss_floor"] = entropy_floor(args.data)
        files.save_json(previous, results / "results.json")
        if ours:
            update_pages(previous)
        print(json.dumps(previous["loss_floor"], indent=2))
        return

    out_dir = Path(args.out_dir)
    if not args.collect_only:
        train(args.data, out_dir, args.only)
    rows = collect(out_dir)
    if not rows:
        raise cli.UserError(f"no metrics files in {out_dir}")

    record = {"models": rows, "cpu_count": os.cpu_count(),
              "date": datetime.date.today().isoformat(),
              "command": "python benchmarks/run_all.py " + " ".join(sys.argv[1:]),
              "software": software(), "machine": machine()}
    if args.data:
        record["loss_floor"] = entropy_floor(args.data)
    elif "loss_floor" in previous:
        record["loss_floor"] = previous["loss_floor"]
    if ours:
        if refresh_figures(out_dir):
            record["figures"] = (f"the table's runs ({record['date']}), copied and drawn "
                                 f"by `{record['command']}`")
        elif "figures" in previous:
            record["figures"] = previous["figures"]
    files.save_json(record, results / "results.json")
    files.save_json(learning_curves(out_dir, record), results / "curves.json")
    if ours:
        update_pages(record)
    table = markdown(rows)
    with files.atomic_path(results / "results.md") as tmp:
        tmp.write_text(table)
    print(table)


if __name__ == "__main__":
    cli.main_guard(main)
