"""A lesson's definitions (its constants, functions and classes) without its run,
for the tests and the benchmarks; no lesson uses it (each stands alone).

Each training script is a flat lesson: read top to bottom, it trains a model. So
importing one would train it. The benchmarks and tests need the scripts' model
builders, layers and recipes: ``definitions(script)`` runs only a script's imports,
``def``s, ``class``es and UPPER_CASE constants, and returns them as a module.
"""

import ast
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_loaded = {}


def _is_definition(node):
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
    return False


def definitions(script):
    """The definitions of ``script`` (a file name in the repository, such as
    "variational_autoencoder.py") as a module named after it; loaded once."""
    path = ROOT / script
    if path not in _loaded:
        tree = ast.parse(path.read_text(), filename=str(path))
        tree.body = [node for node in tree.body if _is_definition(node)]
        module = types.ModuleType(f"lessons.{path.stem}")
        module.__file__ = str(path)
        # Keras finds a custom layer's class by its module when it saves a model.
        sys.modules[module.__name__] = module
        exec(compile(tree, str(path), "exec"), module.__dict__)
        _loaded[path] = module
    return _loaded[path]
