"""The notebooks in notebooks/, made from the lessons by jupytext.

    python -m plumbing.notebooks           # write notebooks/*.ipynb again
    python -m plumbing.notebooks --check   # exit 1 if any differs from its script

Each training script is a keras-io "tutobook": triple-quoted markdown between
top-level code. Jupytext's sphinx-gallery format reads exactly that, one cell per
block. Four touches make the notebook what a learner needs:

* a first code cell, ``START``, right after the header, for what only a notebook
  needs: Jupyter starts it in notebooks/, and the lesson runs from the repository's
  top folder (or, opened outside a clone, it stops there and says in one line how
  to get the code);
* the cell that holds ``options = ""`` is tagged ``parameters`` (papermill's
  convention, so that ``papermill X.ipynb out.ipynb -p options "--epochs 1"``
  sets it);
* the ``%matplotlib inline`` cell the format adds is dropped: a notebook shows
  figures inline anyway;
* the header reads as keras.io shows it: the title as a heading, the other fields
  in bold, and without the docstring's shell command lines, which are for
  ``--help`` (``header_markdown``).

Notebooks are written without outputs.
"""

import argparse
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks"
LESSONS = ["simple_autoencoder.py", "deep_autoencoder.py",
           "convolutional_autoencoder.py", "image_denoising.py",
           "variational_autoencoder.py", "variational_autoencoder_deconv.py",
           "using_trained_models.py"]
START = """\
# Jupyter starts a notebook in its own folder, notebooks/; the lesson runs from the
# repository's top folder, beside plumbing/ (its chores) and features/ (its outputs).
import os

if not os.path.isdir("plumbing") and os.path.isdir("../plumbing"):
    os.chdir("..")
if not os.path.isdir("plumbing"):
    raise SystemExit("plumbing not found: clone the keras-autoencoders repository, "
                     "install its requirements.txt, and open this notebook from its "
                     "notebooks/ folder")"""
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python",
          "name": "python3"}


def notebook_text(script):
    """The .ipynb text that ``script`` (a lesson's file name) generates."""
    import jupytext
    from nbformat.v4 import new_code_cell

    notebook = jupytext.read(ROOT / script, fmt="py:sphinx")
    cells = [cell for cell in notebook.cells if cell.source != "%matplotlib inline"]
    cells[0].source = header_markdown(cells[0].source)
    cells.insert(1, new_code_cell(START))
    notebook.cells = cells
    for number, cell in enumerate(notebook.cells):
        cell.id = f"cell-{number}"  # not random ids: the same script, the same file
        if cell.cell_type == "code" and cell.source.startswith("options = "):
            cell.metadata["tags"] = ["parameters"]
    notebook.metadata = {"kernelspec": KERNEL,
                         "language_info": {"name": "python"}}
    return jupytext.writes(notebook, fmt="ipynb")


def header_markdown(text):
    """The docstring's "Title: ..." as a heading, "Author: ..." and the other fields
    on lines of their own; the rest (the description) as it is, less the indented
    shell command lines (``python lesson.py ...``) written for ``--help``."""
    lines, fields = text.splitlines(), []
    while lines and re.match(r"[A-Z][a-z ]+: ", lines[0]):
        name, value = lines.pop(0).split(": ", 1)
        while lines and lines[0].strip() and not re.match(r"[A-Z][a-z ]+: ", lines[0]):
            value += " " + lines.pop(0).strip()  # a field's value wrapped over lines
        fields.append((name, value))
    title = [f"# {value}" for name, value in fields if name == "Title"]
    rest = [f"**{name}:** {value}<br>" for name, value in fields if name != "Title"]
    lines = [line for line in lines if not re.match(r"\s+python ", line)]
    text = "\n".join(title + [""] + rest + lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)  # no gap left where the commands were


def notebook_path(script):
    return FOLDER / Path(script).with_suffix(".ipynb").name


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m plumbing.notebooks",
        description="Write notebooks/*.ipynb from the lessons (needs jupytext: "
                    "pip install -r requirements-test.txt).")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook differs from what "
                             "its script generates")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("jupytext") is None:
        sys.exit(f"{parser.prog}: error: jupytext is not installed "
                 "(pip install -r requirements-test.txt)")
    from plumbing.files import atomic_path

    stale = []
    for script in LESSONS:
        path, text = notebook_path(script), notebook_text(script)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.name)
        if not args.check:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            print(f"Wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        sys.exit(f"{parser.prog}: error: out of date: {', '.join(stale)}; run "
                 f"{parser.prog}")


if __name__ == "__main__":
    main()
