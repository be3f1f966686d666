"""Writing outputs so that an interrupted run never leaves a truncated or mixed set.

Two tools:

* ``atomic_path``: one file, written under a temporary name and renamed over the
  real one only when complete (``save_pickle``, ``save_json`` use it).
* ``OutputSet``: all the ``<prefix>_*`` files of one training run. They are written
  into a hidden staging folder beside their final place and moved there together by
  ``commit``. Interrupts (Ctrl-C, ``kill``) wait until the moves are done, and a
  journal written before the first move lets the next run finish the moves if the
  process was killed outright (SIGKILL) in between. The metrics record, which holds
  the sha256 of every other file of the set, is moved last, so a reader can always
  tell whether a set belongs together (``set_problem``).
"""

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import signal
import tempfile
from pathlib import Path

from plumbing import cli

JOURNAL = "COMMIT"  # inside a staging folder: the moves have begun; finish them


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An interrupted or failed write leaves the previous file (if any) untouched and no
    half-written file under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    _make_readable(tmp)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _make_readable(path):
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private


def _fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_pickle(obj, path):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def save_json(obj, path):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class OutputSet:
    """The ``<prefix>_*`` files of one run, made visible together by ``commit()``.

    Use as a context manager: leaving it without ``commit()`` (an error, an
    interrupt) removes the staging folder, and the previous set stays as it was.
    ``path(name)`` is where to write ``<prefix>_<name>`` meanwhile.
    """

    def __init__(self, out_dir, prefix, record="metrics.json"):
        self.out_dir, self.prefix, self.record = Path(out_dir), prefix, record
        recover(self.out_dir, prefix)
        self.staging = self.out_dir / f".{prefix}.saving-{os.getpid()}"
        self.committed = False

    def __enter__(self):
        try:
            self.staging.mkdir(parents=True)
        except OSError as error:
            raise cli.UserError(f"cannot write in {self.out_dir} "
                                f"({error.strerror or error})") from None
        cli.interrupt_message[0] = ("interrupted before the outputs were complete; "
                                    "nothing was saved, files from earlier runs were "
                                    "left as they were")
        return self

    def __exit__(self, *exc):
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, name):
        return self.staging / f"{self.prefix}_{name}"

    def commit(self, record):
        """Write the record (a dict) with every file's sha256, then move the set."""
        names = sorted(p.name for p in self.staging.iterdir())
        record = dict(record, files={n: sha256(self.staging / n) for n in names})
        record_name = f"{self.prefix}_{self.record}"
        (self.staging / record_name).write_text(
            json.dumps(record, indent=2, sort_keys=True) + "\n")
        for name in names + [record_name]:
            _make_readable(self.staging / name)
            _fsync(self.staging / name)
        with _signals_deferred():
            # The journal lists the moves, record last; once it exists, the new set
            # is the one that counts and `recover` finishes what a kill interrupts.
            (self.staging / JOURNAL).write_text("\n".join(names + [record_name]))
            _finish_moves(self.staging)
            self.committed = True
            cli.interrupt_message[0] = (f"interrupted after the outputs were saved "
                                        f"complete in {self.out_dir}/")
        return record


@contextlib.contextmanager
def _signals_deferred():
    """Hold Ctrl-C and `kill` (SIGTERM) until the block is done, then act on them.

    (Blocking the signals with a signal mask would not do: they are sent to the
    process, and any of the threads Keras' backends start may take them.)
    """
    received = []
    deferred = {signal.SIGINT, signal.SIGTERM}
    previous = {signum: signal.signal(signum, lambda n, frame: received.append(n))
                for signum in deferred}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received[:1]:
            signal.raise_signal(signum)


def _finish_moves(staging):
    for name in (staging / JOURNAL).read_text().split("\n"):
        if (staging / name).exists():
            os.replace(staging / name, staging.parent / name)
    (staging / JOURNAL).unlink()
    staging.rmdir()


def recover(out_dir, prefix):
    """Tidy what runs killed outright (SIGKILL, power loss) left in ``out_dir``.

    A staging folder with a journal is finished (its set was complete); one without
    is discarded; so are stray temporary files of interrupted single-file writes of
    ``prefix``. Folders of runs still alive are left to them.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for staging in out_dir.glob(".*.saving-*"):
        pid = staging.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if (staging / JOURNAL).exists():
            _finish_moves(staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    for stray in out_dir.glob(f".{prefix}_*.*"):
        if stray.is_file():
            stray.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def set_problem(path, out_dir, prefix, record="metrics.json"):
    """Why ``path`` may not belong with the rest of its set, or None if it does.

    ``path`` is one file of the ``<prefix>_*`` set in ``out_dir``; the set's record
    (written last) lists the sha256 of every file. No record, or an old one without
    hashes, is no evidence either way: None.
    """
    out_dir, path = Path(out_dir), Path(path)
    if any(out_dir.glob(f".{prefix}.saving-*/{JOURNAL}")):
        return (f"a run saving {prefix}_* files in {out_dir}/ was interrupted; run "
                "any training script with that --out-dir to finish the set")
    try:
        files = json.loads((out_dir / f"{prefix}_{record}").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expected = files.get(path.name) if isinstance(files, dict) else None
    if expected is not None and expected != sha256(path):
        return (f"{path.name} does not match {prefix}_{record} beside it: the files "
                "come from different runs; train again to get a consistent set")
    return None
