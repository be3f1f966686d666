"""
Title: Time the VAE's exact likelihood
Description: Times plumbing.likelihood.exact_nll (the quadrature over the latent
plane) on a saved VAE decoder and the test digits of --data, and writes the
figures, the date and the machine to results/likelihood.json.

    python benchmarks/time_likelihood.py --out-dir DIR --data mnist.npz

DIR holds variational_autoe_decoder.keras (from python variational_autoencoder.py
--out-dir DIR, with the same --data).
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
    parser.add_argument("--out-dir", required=True, metavar="DIR",
                        help="the folder holding variational_autoe_decoder.keras")
    parser.add_argument("--data", default="mnist", metavar="NAME|PATH",
                        help="the test digits, as the training scripts take --data "
                             "(default: %(default)s)")
    parser.add_argument("--results", default=str(ROOT / "results" / "likelihood.json"),
                        metavar="FILE", help="where to write the figures (default: "
                                             "results/likelihood.json)")
    args = parser.parse_args()

    from plumbing import data, files, likelihood, precision, trained

    keras = likelihood.keras
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


if __name__ == "__main__":
    cli.main_guard(main)
