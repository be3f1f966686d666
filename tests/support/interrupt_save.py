"""Run a training script and interrupt it while it saves its outputs.

``interrupt_save.py SIGNAL WHEN SCRIPT ARGS...`` runs SCRIPT as ``python SCRIPT
ARGS`` would, but sends itself SIGNAL (INT, TERM or KILL) at one moment of the save:
``WHEN`` is ``writing`` (the staged files are being hashed, before any is moved)
or ``moving`` (after the first two files of the set were moved into place). With
``unwritable`` no signal is sent: every move fails as on a full disk.
"""

import os
import runpy
import signal
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(root))

from plumbing import files

signum = getattr(signal, f"SIG{sys.argv[1]}")
when = sys.argv[2]
# A process started in the background by a shell without job control (CI, `cmd &`)
# inherits SIGINT ignored, and Python then leaves it so; a user's Ctrl-C in a
# terminal raises KeyboardInterrupt, which is what this stands for.
signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupt():
    os.kill(os.getpid(), signum)


if when == "writing":
    real_sha256 = files.sha256

    def sha256_then_interrupt(path):
        # commit() hashes the staged files first: the set is still being written.
        interrupt()
        return real_sha256(path)

    files.sha256 = sha256_then_interrupt
elif when == "moving":
    real_finish_moves = files._finish_moves

    def finish_moves_with_interrupt(staging, prefix):
        real_replace, moved = os.replace, []

        def replace_then_interrupt(src, dst):
            real_replace(src, dst)
            moved.append(dst)
            if len(moved) == 2:
                interrupt()

        os.replace = replace_then_interrupt
        try:
            real_finish_moves(staging, prefix)
        finally:
            os.replace = real_replace

    files._finish_moves = finish_moves_with_interrupt
elif when == "unwritable":
    real_commit = files.OutputSet.commit

    def commit_on_a_full_disk(self, record):
        def no_space(*args, **kwargs):
            raise OSError(28, "No space left on device")

        files.os.replace = no_space
        return real_commit(self, record)

    files.OutputSet.commit = commit_on_a_full_disk
else:
    sys.exit(f"unknown moment {when!r}")

sys.argv = sys.argv[3:]
runpy.run_path(str(root / sys.argv[0]), run_name="__main__")
