"""Start writing a large pickle over PATH and get killed midway: ``killed_write.py PATH``."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from plumbing import files


class KillMidway:
    """Pickled after a large array has been written: the process dies right there."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)


files.save_pickle([bytes(50_000_000), KillMidway()], sys.argv[1])
