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

And the guards for reading: ``open_regular`` and ``read_regular`` open only a
regular file of a size that fits its purpose, never a pipe or a device that would
block or never end (docs/reliability.md lists the limits); ``read_json`` and
``read_record`` read JSON records through them (``plumbing.modelfile`` inspects a
.keras model before Keras opens it, through them too).
"""

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import stat
import tempfile
from pathlib import Path

from plumbing import cli

JOURNAL = "COMMIT"  # inside a staging folder: the moves have begun; finish them
JOURNAL_MAX_BYTES = 1 << 20  # a few dozen file names
# A staging folder's name: a hidden ".<prefix>.saving-<pid>" beside the final files.
STAGING = re.compile(r"\.(?P<prefix>[^/\\]+)\.saving-(?P<pid>\d+)")
MiB = 1 << 20
# A run's metrics record: a few KB, tens with every epoch's losses of a long run.
RECORD_MAX_BYTES = 16 * MiB
# The largest file of a run's set: the widest model's codes of 70,000 digits.
SET_FILE_MAX_BYTES = 512 * MiB


def open_regular(path, max_bytes, what):
    """Open ``path`` to read, if it is a regular file of at most ``max_bytes``.

    ``what`` names what the file should be ("an .npz file"), for the messages. A
    pipe or a device is refused before opening; the open cannot block (O_NONBLOCK),
    should one be swapped in meanwhile, and the opened file is checked again.
    Returns a binary file object; every problem is a one-line UserError.
    """
    path = Path(path)
    try:
        _check_regular(path, os.stat(path), max_bytes, what)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise cli.UserError(f"{path}: no such file") from None
    except OSError as error:  # permission denied, a name too long, ...
        raise cli.UserError(f"{path}: cannot read it ({error.strerror or error})") \
            from None
    try:
        _check_regular(path, os.fstat(fd), max_bytes, what)
    except cli.UserError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular(path, max_bytes, what):
    """The bytes of ``path``, checked as ``open_regular`` does."""
    with open_regular(path, max_bytes, what) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as error:
            raise cli.UserError(f"{path}: cannot read it "
                                f"({error.strerror or error})") from None
    if len(data) > max_bytes:  # it grew after the check
        _check_regular(path, os.stat(path), max_bytes, what)
    return data


def read_json(path, max_bytes=RECORD_MAX_BYTES, what="a run's record"):
    """The JSON object in ``path``, read as ``read_regular`` does; a one-line
    UserError if it is not one (not JSON, nested too deep to parse, not an object)."""
    try:
        value = json.loads(read_regular(path, max_bytes, what))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError included
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise cli.UserError(f"{path}: not readable JSON ({reason}), expected {what}") \
            from None
    if not isinstance(value, dict):
        raise cli.UserError(f"{path}: holds a JSON {type(value).__name__}, expected "
                            f"{what} (an object)")
    return value


def read_record(path):
    """A run's JSON record (its metrics file) as a dict; None when there is none to
    read: missing, not a regular file, too large, not JSON, or not an object."""
    try:
        return read_json(path)
    except cli.UserError:
        return None


def _check_regular(path, st, max_bytes, what):
    if stat.S_ISDIR(st.st_mode):
        raise cli.UserError(f"{path}: is a directory, expected {what}")
    if not stat.S_ISREG(st.st_mode):
        raise cli.UserError(f"{path}: not a regular file (a pipe or a device?), "
                            f"expected {what}")
    if st.st_size > max_bytes:
        raise cli.UserError(f"{path}: {st.st_size / MiB:,.1f} MiB, more than "
                            f"{what} can be ({max_bytes / MiB:,.0f} MiB); refused")


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


def sha256(path, max_bytes=None, what="a file of a run's set"):
    """The file's sha256, read in chunks; with ``max_bytes``, only once
    ``open_regular`` has checked it (a file that is not one of ours)."""
    if max_bytes is None:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    with open_regular(path, max_bytes, what) as f:
        try:
            return hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as error:
            raise cli.UserError(f"{path}: cannot read it "
                                f"({error.strerror or error})") from None


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
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir()
        except FileExistsError:
            # check_staging found the name free before training: something made it
            # since. It is not ours, so it is neither used nor removed.
            raise cli.UserError(f"cannot save: {self.staging} appeared during "
                                "training, made by something else; nothing was saved "
                                "and it was left alone") from None
        except OSError as error:
            raise cli.UserError(f"cannot write in {self.out_dir} "
                                f"({error.strerror or error})") from None
        cli.interrupt_message[0] = ("interrupted before the outputs were complete; "
                                    "nothing was saved, files from earlier runs were "
                                    "left as they were")
        return self

    def __exit__(self, *exc):
        if not self.committed and self.staging.is_dir() \
                and not self.staging.is_symlink():
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
            # Renamed into place, so a journal is never half-written.
            (self.staging / f"{JOURNAL}.tmp").write_text("\n".join(names + [record_name]))
            os.replace(self.staging / f"{JOURNAL}.tmp", self.staging / JOURNAL)
            _finish_moves(self.staging, self.prefix)
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


def _finish_moves(staging, prefix):
    """Move the files the journal lists out of ``staging``, then remove it.

    A journal is trusted only as far as it names files of its own set: plain names
    of ``<prefix>_*`` files (no folders, no "..", nothing hidden) that are regular
    files in the folder. Anything else was not written by OutputSet, and nothing of
    it is moved.
    """
    journal = staging / JOURNAL
    try:
        names = read_regular(journal, JOURNAL_MAX_BYTES, "a journal of file names") \
            .decode("utf-8").split("\n")
    except UnicodeDecodeError:
        names = [""]
    bad = [name for name in names if not own_file_name(name, prefix)]
    if bad:
        raise _not_ours(staging, f"its {JOURNAL} names {bad[0]!r}, not a file of the "
                                 f"{prefix}_* set")
    for name in names:
        source, destination = staging / name, staging.parent / name
        try:
            mode = os.lstat(source).st_mode
        except FileNotFoundError:
            continue  # moved before a kill
        if not stat.S_ISREG(mode):
            raise _not_ours(staging, f"{name} in it is not a regular file")
        if destination.is_dir() and not destination.is_symlink():
            raise cli.UserError(f"{destination} is a folder, where a run's file would "
                                f"go; move it away, then run again")
        # A link at the destination is replaced itself, never followed.
        os.replace(source, destination)
    journal.unlink()
    staging.rmdir()


def own_file_name(name, prefix):
    """Whether ``name`` is a plain file name of the ``<prefix>_*`` set."""
    return (name.startswith(f"{prefix}_") and not name.startswith(".")
            and not any(c in name for c in "/\\\0"))


def _not_ours(staging, why):
    return cli.UserError(f"{staging}: not a staging folder a run of this collection "
                         f"left ({why}); nothing in it was touched: look, and remove "
                         "it by hand")


def recover(out_dir, prefix=None):
    """Tidy what runs killed outright (SIGKILL, power loss) left in ``out_dir``.

    A staging folder with a journal is finished (its set was complete); one without
    is discarded; so are stray temporary files of interrupted single-file writes of
    ``prefix``. Folders of runs still alive are left to them. A staging name that is
    a link or a file, or a journal that names anything but its set's own files, was
    not made by OutputSet: it is left alone, and refused (a UserError).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for entry in sorted(os.scandir(out_dir), key=lambda e: e.name):
        match = STAGING.fullmatch(entry.name)
        if not match:
            continue
        pid, staging = int(match["pid"]), Path(entry.path)
        if pid != os.getpid() and _alive(pid):
            continue
        if not entry.is_dir(follow_symlinks=False):
            kind = "a link" if entry.is_symlink() else "a file"
            raise _not_ours(staging, f"it is {kind}, not a folder")
        if os.path.lexists(staging / JOURNAL):
            _finish_moves(staging, match["prefix"])
        else:
            shutil.rmtree(staging, ignore_errors=True)  # a real folder: links inside
            # it are removed, never followed
    if prefix is None:
        return
    for stray in out_dir.glob(f".{prefix}_*.*"):
        if stat.S_ISREG(os.lstat(stray).st_mode):
            stray.unlink(missing_ok=True)


def check_staging(out_dir):
    """Before training: tidy killed runs' leftovers in ``out_dir`` (``recover``), so
    that anything in the way of saving (a link or file planted at a staging name, a
    journal naming other files) is a one-line error now rather than after training.
    """
    recover(out_dir)


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
    files = (read_record(out_dir / f"{prefix}_{record}") or {}).get("files")
    expected = files.get(path.name) if isinstance(files, dict) else None
    if expected is None:
        return None
    if expected != sha256(path, SET_FILE_MAX_BYTES):
        return (f"{path.name} does not match {prefix}_{record} beside it: the files "
                "come from different runs; train again to get a consistent set")
    return None
