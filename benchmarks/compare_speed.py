"""
Title: Training speed of each script against a line-by-line Keras 3 port
Description: Times a few epochs of every script, and of the same model trained the
way a line-by-line port of the 2018 code does, side by side, and prints the ratios.

    python benchmarks/compare_speed.py --data mnist.npz            # all scripts
    python benchmarks/compare_speed.py --data mnist.npz --scripts deep_autoencoder image_denoising
    python benchmarks/compare_speed.py --data mnist.npz --epochs 4 --save port
    python benchmarks/compare_speed.py --data mnist.npz --skip-port --precisions auto \
        --onednn on off --repeats 3 --save onednn   # execution settings, side by side

--save NAME records the sitting as NAME in results/speed.json (seconds, precision,
peak memory in MiB, speed-ups, GFLOP per epoch, with the date, machine and command)
and rewrites its table in docs/speed.md, between <!-- speed-NAME:start/end -->.

Both sides train the same model (the port imports the script's own builder) on the
same images, at the same batch size, with a validation pass per epoch. What the port
does differently is what a direct translation of the original code does: float64
images (``x / 255.``, and float64 Gaussian noise for the denoising inputs), the
original string-named optimizers at a constant learning rate, and Keras' default
compilation (no XLA on a CPU-only TensorFlow). Each side runs in a fresh process;
the first epoch (tracing, compilation) is excluded from the steady state.

Execution settings are compared the same way: --onednn (TensorFlow's oneDNN kernels
on or off, or on but held to AVX2 instructions, as a CPU without AVX-512 runs them),
--threads (TensorFlow's threads per operation) and --batch-sizes. Every combination
is a column; with --repeats N each runs N times, alternating (A B B A ...) so that a
slow spell of a shared machine falls on both, and the column shows the median.

Also prints each model's arithmetic per epoch and rate in GFLOP/s: 3x the forward
multiply-adds x 2 per training image plus 2x per validation image, over the epoch's
wall time. This is a benchmark, not a test: it takes minutes.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plumbing import cli, files, lessons, npz, precision  # noqa: E402  (Keras-free till used)
from plumbing.backend import backend_installed, import_keras  # noqa: E402

# Each script's output prefix. The port trains with the batch size and optimizer of
# the script's "tutorial" recipe, as the original code did. Our scripts run at their
# own defaults: the same batch sizes, with tuned optimizers and learning rates, which
# do not change the time per epoch.
SCRIPTS = {
    "simple_autoencoder": "simple_autoe",
    "deep_autoencoder": "deep_autoe",
    "convolutional_autoencoder": "conv_autoe",
    "image_denoising": "denoise_autoe",
    "variational_autoencoder": "variational_autoe",
    "variational_autoencoder_deconv": "variational_autoe_deconv",
}


SPEED_JSON = ROOT / "results" / "speed.json"
SPEED_PAGE = ROOT / "docs" / "speed.md"


def speed_table(sitting):
    """A sitting of results/speed.json as the markdown table docs/speed.md shows."""
    columns, digits = sitting["columns"], sitting.get("decimals", 1)
    labels = sitting.get("labels", {})
    rows = sitting["scripts"]
    cells = [cell for row in rows.values() for cell in row.values() if cell]
    header = ["script"] + [labels.get(c, c) for c in columns]
    # What auto chose, where it chose anything but float32.
    auto = [c for c in columns if c.endswith(" auto") and any(
        (row.get(c) or {}).get("precision", "float32") != "float32"
        for row in rows.values())]
    header += [f"{labels.get(c, c)}: precision" for c in auto]
    faster = [c for c in columns if any("speedup" in (rows[s].get(c) or {}) for s in rows)]
    header += [f"{labels.get(c, c)}: speed-up" for c in faster]
    ratio = sitting.get("ratio_of")
    if ratio:
        header.append(" / ".join(labels.get(c, c) for c in ratio))
    peak = any("peak_mib" in cell for cell in cells)
    if peak:
        header.append("peak MiB (" + " / ".join(labels.get(c, c) for c in columns) + ")")
    gflop = sitting.get("gflop_per_epoch")
    if gflop:
        header.append("GFLOP per epoch")

    def seconds(cell):
        if not cell:
            return "not run"
        return cell.get("text") or f"{cell['seconds']:.{digits}f}"

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for script, row in rows.items():
        line = [sitting.get("row_labels", {}).get(script, script)]
        line += [seconds(row.get(c)) for c in columns]
        line += [row[c]["precision"] for c in auto]
        line += [f"{row[c]['speedup']:.2f}x" for c in faster]
        if ratio:
            line.append(f"{row[ratio[0]]['seconds'] / row[ratio[1]]['seconds']:.2f}x")
        if peak:
            line.append(" / ".join(f"{(row.get(c) or {}).get('peak_mib', 0):.0f}"
                                   for c in columns))
        if gflop:
            line.append(f"{gflop[script]:,.0f}")
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def sitting_line(sitting):
    """When, how and where a sitting ran, as its page says above the table."""
    limit = sitting.get("limit")
    epochs = (f"epochs of {limit:,} images extrapolated to 60,000 (which counts the "
              "validation pass too often: compare within a row)") if limit else \
        "full 60,000-image epochs"
    return (f"{sitting['date']}, `{sitting['command']}`; {sitting['machine']}. "
            f"Seconds per epoch, {epochs}, the median of the runs:")


def update_speed_page(speed, page=SPEED_PAGE):
    from run_all import write_block  # the same markers as the results pages

    for name, sitting in speed["sittings"].items():
        write_block(page, f"speed-{name}", speed_table(sitting))
        if f"<!-- speed-{name}-run:start -->" in page.read_text():
            write_block(page, f"speed-{name}-run", sitting_line(sitting))


def cpu_name():
    """The CPU in words: its name, its widest vector instructions, its bfloat16 ones."""
    extras = precision.cpu_bfloat16_flags()
    return (f"{precision.cpu_name() or platform.machine()} "
            f"({precision.cpu_vectors() or 'no AVX2'}, "
            f"{', '.join(extras) or 'no bfloat16 instructions'})")


def save_sitting(name, record, path=SPEED_JSON):
    speed = files.read_json(path, what="results/speed.json") if path.exists() \
        else {"sittings": {}}
    speed["sittings"][name] = record
    path.write_text(json.dumps(speed, indent=2) + "\n")
    update_speed_page(speed)


def port_seconds_per_epoch(script, data, epochs, limit=None):
    """Train SCRIPT's model the line-by-line-port way; return seconds per epoch."""
    keras = import_keras()

    module = lessons.definitions(f"{script}.py")  # importing would run the lesson
    tutorial = module.RECIPES["tutorial"]
    batch_size, optimizer = tutorial["batch_size"], tutorial["optimizer"]
    with np.load(data) as arrays:
        x_train = arrays["x_train"][:limit].astype("float64") / 255.0
        x_test = arrays["x_test"][:limit].astype("float64") / 255.0
    build = getattr(module, "build_autoencoder", None) or module.build_vae
    model = build()[2]
    shape = model.input_shape[1:]
    x_train = x_train.reshape(len(x_train), *shape)
    x_test = x_test.reshape(len(x_test), *shape)
    y_train, y_test = x_train, x_test
    if script == "image_denoising":
        x_train = np.clip(x_train + 0.5 * np.random.normal(size=x_train.shape), 0, 1)
        x_test = np.clip(x_test + 0.5 * np.random.normal(size=x_test.shape), 0, 1)
    loss = getattr(module, "reconstruction_loss", "binary_crossentropy")
    model.compile(optimizer=optimizer, loss=loss)

    seconds = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.__setitem__(
            -1, seconds[-1] + time.perf_counter()))
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=True,
              validation_data=(x_test, y_test), callbacks=[timer], verbose=0)
    return float(np.median(seconds[1:]))


def forward_macs(model):
    """Multiply-adds of one forward pass of one image through Dense/Conv layers."""
    total = 0
    for layer in _leaf_layers(model):
        kind = type(layer).__name__
        if kind == "Dense":
            total += int(np.prod(layer.kernel.shape))
        elif kind == "Conv2D":
            out = int(np.prod(layer.output.shape[1:]))
            total += out * int(np.prod(layer.kernel.shape[:3]))
        elif kind == "Conv2DTranspose":
            inp = int(np.prod(layer.input.shape[1:]))
            kh, kw, out_ch, _ = layer.kernel.shape
            total += inp * kh * kw * out_ch
    return total


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaf_layers(layer)
        else:
            yield layer


def run_measured(command, env):
    """Run ``command``; return its exit status, stdout, stderr and peak memory (MiB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT,
                                 env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return child.returncode, out.read(), err.read(), usage.ru_maxrss / 1024


class Column:
    """One column: a backend, a precision, and the execution settings it changes
    (None leaves the default: TensorFlow's oneDNN choice, its threads, the recipe's
    batch size)."""

    def __init__(self, backend="tensorflow", precision="auto", onednn=None,
                 threads=None, batch_size=None):
        self.backend, self.precision = backend, precision
        self.onednn, self.threads, self.batch_size = onednn, threads, batch_size

    @property
    def label(self):
        settings = [f"oneDNN {self.onednn}" if self.onednn else "",
                    f"{self.threads} threads" if self.threads else "",
                    f"batch {self.batch_size}" if self.batch_size else ""]
        return " ".join([self.backend, *filter(None, settings), self.precision])

    def environment(self):
        env = dict(os.environ, KERAS_BACKEND=self.backend)
        if self.onednn:
            env["TF_ENABLE_ONEDNN_OPTS"] = "0" if self.onednn == "off" else "1"
        if self.onednn == "AVX2":
            env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        if self.threads:
            env["TF_NUM_INTRAOP_THREADS"] = str(self.threads)
        return env

    def options(self):
        return ["--batch-size", str(self.batch_size)] if self.batch_size else []


def run_side(args, script, side, setting=None):
    """Run one side in a fresh process; return its seconds per full epoch, the
    precision it ran in and its peak memory in MiB."""
    setting = setting or Column()
    limit = ["--limit", str(args.limit)] if args.limit else []
    env = setting.environment()
    scale = 60000 / args.limit if args.limit else 1.0  # extrapolate to 60k images
    if side == "port":
        command = [sys.executable, __file__, "--port", script, "--data", args.data,
                   "--epochs", str(args.epochs), *limit]
        status, out, err, peak = run_measured(command, env)
        if status:
            raise cli.UserError(f"the port of {script} failed (exit {status}): "
                                f"{_last_line(err)}")
        seconds = json.loads(out.strip().splitlines()[-1])["seconds_per_epoch"]
        return scale * seconds, "float32", peak
    prefix = SCRIPTS[script]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, f"{script}.py", "--data", args.data, "--epochs",
                   str(args.epochs), "--out-dir", tmp, "--precision", setting.precision,
                   *setting.options(), *limit]
        status, out, err, peak = run_measured(command, env)
        if status:
            raise cli.UserError(f"{script} ({setting.label}) failed (exit {status}): "
                                f"{_last_line(err)}")
        metrics = files.read_json(Path(tmp, f"{prefix}_metrics.json"))
    return scale * metrics["seconds_per_epoch"], metrics["precision"], peak


def _last_line(text):
    """A child's error: its last line, which our scripts make the whole story."""
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else "no message"


def at_least_2(text):
    value = cli.positive_int(text)
    if value < 2:  # the first epoch compiles: with one, no steady state is measured
        raise argparse.ArgumentTypeError(
            f"must be at least 2, got {text}: the first epoch (tracing, compiling) is "
            "not counted, so one epoch would time no steady state")
    return value


def main():
    parser = cli.ArgumentParser(description=__doc__.strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, metavar="PATH", type=cli.path,
                        help="full MNIST .npz (keras.datasets.mnist layout)")
    parser.add_argument("--epochs", type=at_least_2, default=3,
                        help="epochs per side, at least 2, the first not counted "
                             "(default: %(default)s)")
    parser.add_argument("--scripts", nargs="+", choices=sorted(SCRIPTS),
                        default=list(SCRIPTS), help="which scripts to time (default: all)")
    parser.add_argument("--limit", type=cli.positive_int, default=None, metavar="N",
                        help="time epochs of N images and extrapolate to 60,000 "
                             "(for slow backend/model pairs; default: full epochs)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow"],
                        choices=["tensorflow", "jax", "torch"],
                        help="also time our scripts on these Keras backends (the "
                             "port always runs on TensorFlow, the default backend; "
                             "default: %(default)s)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "auto"],
                        choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                        help="time our scripts at each of these --precision settings "
                             "(default: float32 and the scripts' default, auto)")
    parser.add_argument("--onednn", nargs="+", choices=["on", "off", "AVX2"],
                        help="TensorFlow only: time with its oneDNN kernels on, off, "
                             "or on but held to AVX2 instructions, as on a CPU "
                             "without AVX-512 (default: TensorFlow's own choice)")
    parser.add_argument("--threads", nargs="+", type=cli.positive_int, metavar="N",
                        help="TensorFlow's threads per operation (default: one per "
                             "core)")
    parser.add_argument("--batch-sizes", nargs="+", type=cli.positive_int,
                        metavar="N", help="time our scripts at these batch sizes "
                        "(default: each recipe's)")
    parser.add_argument("--repeats", type=cli.positive_int, default=1,
                        help="runs of each column, alternating, the median shown "
                             "(default: %(default)s)")
    parser.add_argument("--skip-port", action="store_true",
                        help="time only our scripts (e.g. to compare backends)")
    parser.add_argument("--save", metavar="NAME",
                        help="record this sitting as NAME in results/speed.json and "
                             "rewrite its table in docs/speed.md")
    parser.add_argument("--port", help=argparse.SUPPRESS)  # internal: one port run
    args = parser.parse_args()
    shapes = npz.check_npz(args.data)  # in a moment, not from a child minutes later
    train_size = shapes["x_train"][0]
    if args.limit and args.limit > train_size:
        # Each epoch would have all the images, not --limit: the extrapolation to
        # 60,000 would be wrong by the difference.
        raise cli.UserError(f"--limit {args.limit:,}: more than the {train_size:,} "
                            f"training images in {args.data}; give at most "
                            f"{train_size:,}, or leave --limit out")
    missing = [b for b in args.backends if not backend_installed(b)]
    if missing:
        raise cli.UserError(f"--backends {' '.join(missing)}: not installed here "
                            f"(pip install {' '.join(missing)}, or leave "
                            f"{'it' if len(missing) == 1 else 'them'} out)")

    if args.port:
        seconds = port_seconds_per_epoch(args.port, args.data, args.epochs, args.limit)
        print(json.dumps({"seconds_per_epoch": seconds}))
        return

    if (args.onednn or args.threads) and args.backends != ["tensorflow"]:
        raise cli.UserError("--onednn and --threads set TensorFlow's kernels: use "
                            "them with --backends tensorflow alone")
    columns = [Column(b, p, o, t, n) for b in args.backends for p in args.precisions
               for o in args.onednn or [None] for t in args.threads or [None]
               for n in args.batch_sizes or [None]]
    header = ([] if args.skip_port else ["port (TF)"]) + [c.label for c in columns]
    print("Seconds per epoch (peak memory in MiB); speed-ups against the port")
    print(f"{'script':32}" + "".join(f"  {h:>32}" for h in header))
    timings, record = {}, {}
    for script in args.scripts:
        cells, line = [], f"{script:32}"
        port = None if args.skip_port else run_side(args, script, "port")
        if port:
            cells.append(f"{port[0]:.1f} ({port[2]:.0f})")
            record[script] = {"port (TF)": {"seconds": port[0], "precision": "float32",
                                            "peak_mib": port[2]}}
        runs = {column.label: [] for column in columns}
        for repeat in range(args.repeats):
            # A B B A ...: a slow spell of a shared machine falls on every column.
            for column in columns if repeat % 2 == 0 else columns[::-1]:
                runs[column.label].append(run_side(args, script, "ours", column))
        ours = {}
        for label, measured in runs.items():
            every = [seconds for seconds, _, _ in measured]
            seconds, used = float(np.median(every)), measured[0][1]
            peak = max(p for _, _, p in measured)
            ours[label] = seconds
            speedup = f" {port[0] / seconds:.2f}x" if port else ""
            cells.append(f"{seconds:.1f} {used}{speedup} ({peak:.0f})")
            record.setdefault(script, {})[label] = dict(
                seconds=seconds, precision=used, peak_mib=peak,
                **({"every_run": every} if args.repeats > 1 else {}),
                **({"speedup": port[0] / seconds} if port else {}))
        timings[script] = {"port_tensorflow": port and port[0], **ours}
        print(line + "".join(f"  {c:>32}" for c in cells), flush=True)
    # Arithmetic rates say whether an epoch is bound by arithmetic or by overhead.
    n_train, n_test = shapes["x_train"][0], shapes["x_test"][0]
    print("\nArithmetic: GFLOP per epoch, and GFLOP/s of each column above")
    gflops = {}
    for script, row in timings.items():
        module = lessons.definitions(f"{script}.py")
        build = getattr(module, "build_autoencoder", None) or module.build_vae
        gflop = 2 * forward_macs(build()[2]) * (3 * n_train + n_test) / 1e9
        gflops[script] = gflop
        rates = "".join(f"  {gflop / s:>8.0f}" for s in row.values() if s)
        print(f"{script:32}  {gflop:>8.0f}{rates}")
    print(f"{os.cpu_count()} CPU cores" + (f"; epochs of {args.limit} images, "
          "extrapolated to 60,000" if args.limit else ""))
    if args.save:
        from run_all import software

        save_sitting(args.save, {
            "date": datetime.date.today().isoformat(),
            "command": "python benchmarks/compare_speed.py " + " ".join(sys.argv[1:]),
            "machine": f"{cpu_name()}, {os.cpu_count()} CPU cores",
            "software": software(),
            "columns": header, "scripts": record, "gflop_per_epoch": gflops,
            **({"limit": args.limit} if args.limit else {})})


if __name__ == "__main__":
    cli.main_guard(main)
