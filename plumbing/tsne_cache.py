"""The visualiser's t-SNE chores: its progress in a line per 100 iterations, and its
result cached beside the features.

t-SNE takes tens of seconds for 10,000 points, so its result is kept next to the
features with a record of exactly what it was computed from: the sha256 of the
features and labels files and every setting. A retrained model writes new features,
the hash changes, and the map is recomputed: a stale picture is never shown.
"""

import contextlib
import hashlib
import io
import json
import re
import sys
import time
from importlib.metadata import version

import numpy as np

from plumbing import cli, files, loading
from plumbing.safe_text import shown

# A t-SNE map of 70,000 points takes 0.6 MB, its record less.
CACHE_MAX_BYTES = 16 * files.MiB


class _Progress(io.TextIOBase):
    """Turns scikit-learn's chatty verbose t-SNE log into a line per 100 iterations."""

    def __init__(self, max_iter, start):
        self.max_iter, self.start, self.pending = max_iter, start, ""
        self.out = sys.stdout  # the real one: this object replaces it while t-SNE runs

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            match = re.match(r"\[t-SNE\] Iteration (\d+):", line)
            if match and int(match[1]) % 100 == 0:
                print(f"  iteration {match[1]}/{self.max_iter}, "
                      f"{time.perf_counter() - self.start:.0f} s", file=self.out,
                      flush=True)
        return len(text)


@contextlib.contextmanager
def tsne_progress(tsne):
    """While ``tsne`` fits, print a line every 100 iterations, and the time taken."""
    tsne.set_params(verbose=2)
    start = time.perf_counter()
    with contextlib.redirect_stdout(_Progress(tsne.max_iter, start)):
        yield
    print(f"t-SNE done in {time.perf_counter() - start:.1f} s")


def cache_paths(codes):
    stem = codes.path.with_name(f"{codes.prefix}_tsne")
    return stem.with_suffix(".pickle"), stem.with_suffix(".json")


def cache_key(codes, settings):
    """What a cached map must match: the files it came from and every setting."""
    return {"features": codes.path.name, "features_sha256": codes.sha256,
            "labels_sha256": codes.labels_sha256,
            "settings": dict(settings, sklearn=version("scikit-learn"))}


def read_cache(codes, settings):
    """The cached (points, quality) if made from the same files and settings."""
    points_path, record_path = cache_paths(codes)
    try:
        record = json.loads(files.read_regular(record_path, CACHE_MAX_BYTES,
                                               "a record"))
        data = files.read_regular(points_path, CACHE_MAX_BYTES, "a t-SNE map")
    except (cli.UserError, ValueError):  # no cache, or not one we wrote: recompute
        return None
    key = cache_key(codes, settings)
    if not isinstance(record, dict) or \
            any(record.get(name) != value for name, value in key.items()):
        return None
    # The pickle is written before the record; its hash catches a pickle from a run
    # that was interrupted before it could write its record.
    if record.get("tsne_sha256") != hashlib.sha256(data).hexdigest():
        return None
    try:
        points = loading.load_pickle(points_path, data)
    except cli.UserError:
        return None
    if not isinstance(points, np.ndarray) or points.shape != (len(codes.labels), 2):
        return None
    print(f"{shown(codes.name)}: using the cached t-SNE ({shown(points_path.name)}: "
          "same features, labels and settings)")
    quality = {name: record.get(name) for name in
               ("knn_accuracy", "trustworthiness", "trust_points")}
    return points, quality


def write_cache(codes, settings, points, quality):
    points_path, record_path = cache_paths(codes)
    try:
        files.save_pickle(points, points_path)
        record = dict(cache_key(codes, settings), **quality,
                      tsne_sha256=files.sha256(points_path))
        files.save_json(record, record_path)
    except OSError as error:
        print(f"Note: could not cache the t-SNE in {shown(points_path.parent)}/ "
              f"({error.strerror}); it will be recomputed next time")
        return
    print(f"Cached the t-SNE in {shown(points_path.name)} and "
          f"{shown(record_path.name)}")
