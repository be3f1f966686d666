"""Run a script of the collection with the network cut: ``offline_run.py SCRIPT ARGS``.

Every download Keras could attempt goes through urllib, which is replaced before the
script (and so Keras) is imported.
"""

import runpy
import sys
import urllib.request
from pathlib import Path


def refuse(*args, **kwargs):
    raise OSError("network unreachable (cut by the test)")


urllib.request.urlretrieve = refuse
urllib.request.urlopen = refuse

root = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(root))
sys.argv = sys.argv[1:]
runpy.run_path(str(root / sys.argv[0]), run_name="__main__")
