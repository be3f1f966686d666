"""The notebooks: generated from the lessons by jupytext, and run in a real kernel.

CI runs every notebook top to bottom (.ci/run); here one runs with papermill, as the
README shows, and a bad option meets a live kernel.
"""

import ast
import json
import subprocess
import sys

import pytest
from support import ROOT

# The notebook extras (requirements-test.txt): without them these tests skip.
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupytext")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

from plumbing import notebooks  # noqa: E402  (it needs jupytext only when writing)

NOTEBOOKS = ROOT / "notebooks"


@pytest.mark.parametrize("script", notebooks.LESSONS)
def test_each_notebook_is_what_its_script_generates(script):
    committed = notebooks.notebook_path(script)
    assert committed.read_text() == notebooks.notebook_text(script), \
        f"{committed.name} is out of date: run python -m plumbing.notebooks"


def tracked_notebooks():
    """The notebooks in git (a user's own, an executed copy say, are not ours to
    judge); outside a git checkout, every .ipynb in notebooks/."""
    listed = subprocess.run(["git", "ls-files", "--", "notebooks/*.ipynb"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    return sorted(line.split("/")[-1] for line in listed.stdout.split())


def test_there_is_a_notebook_for_each_lesson_and_nothing_else():
    assert tracked_notebooks() == \
        sorted(notebooks.notebook_path(s).name for s in notebooks.LESSONS)


@pytest.mark.parametrize("script", notebooks.LESSONS)
def test_a_notebook_is_a_lesson_in_cells(script):
    notebook = nbformat.read(notebooks.notebook_path(script), as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    markdown = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    assert markdown[0].source.startswith("# ")  # the title, as keras.io shows it
    assert "**Author:**" in markdown[0].source
    # keras.io's header: no shell command lines (they are for --help)
    assert "python " not in markdown[0].source and "    " not in markdown[0].source
    assert sum(cell.source.startswith("## ") for cell in markdown) >= 6
    assert not any(cell.outputs for cell in code)  # committed without outputs
    # The first code cell finds plumbing (or says what to do); the options cell,
    # tagged for papermill, comes next.
    assert code[0].source == notebooks.START
    [parameters] = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert parameters is code[1] and parameters.source == 'options = ""'
    # ... right after the setup prose that says what to write in it.
    setup = notebook.cells[notebook.cells.index(parameters) - 1]
    assert setup.source.startswith("## Setup") and "`options`" in setup.source
    assert notebook.cells[1] is code[0]  # found before anything else runs
    # compile, fit and predict each in a cell the learner can run on its own (the
    # lesson that uses trained models only predicts)
    calls = (".predict(",) if script == "using_trained_models.py" else \
        (".compile(", ".fit(", ".predict(")
    for call in calls:
        assert any(call in cell.source and "def " not in cell.source
                   for cell in code), call
    for cell in code:
        ast.parse(cell.source)


def test_a_notebook_runs_with_papermill_from_its_folder(tmp_path):
    """As a learner runs it: from notebooks/, options set by papermill; figures show
    inline and the outputs are written as by the script."""
    out_dir = tmp_path / "features"
    executed = tmp_path / "executed.ipynb"
    result = subprocess.run(
        [sys.executable, "-m", "papermill", "simple_autoencoder.ipynb", str(executed),
         "-p", "options", f"--data sample --epochs 1 --limit 300 --out-dir {out_dir}"],
        cwd=NOTEBOOKS, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    notebook = json.loads(executed.read_text())
    outputs = [o for cell in notebook["cells"] for o in cell.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "Saved simple_autoe_features.pickle (300, 32)" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # inline
    for name in ("features.pickle", "history.png", "reconstructions.png",
                 "metrics.json"):
        assert (out_dir / f"simple_autoe_{name}").exists(), name
    assert not (NOTEBOOKS / "features").exists()  # the lesson ran from the top


def _run_cells(cells, path=NOTEBOOKS):
    notebook = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(notebook, kernel_name="python3", allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(path)}}).execute()
    return notebook


def test_a_bad_option_is_one_line_in_its_cell_and_the_kernel_lives_on():
    notebook = nbformat.read(notebooks.notebook_path("deep_autoencoder.py"),
                             as_version=4)
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = 'options = "--epochs 0"'
        cells.append(cell)
        if "parse_options" in cell.source:
            break
    cells.append(nbformat.v4.new_code_cell("print('alive', 6 * 7)"))
    executed = _run_cells(cells)
    # An error output (so that papermill stops there and shows it), of one line.
    [refused] = executed.cells[-2].outputs
    message = "argument --epochs: must be a positive integer, got 0 (see --help)"
    assert refused["output_type"] == "error" and refused["ename"] == "UserError"
    assert refused["evalue"] == message
    assert refused["traceback"] == [f"UserError: {message}"]
    assert executed.cells[-1].outputs[0]["text"] == "alive 42\n"


def test_a_notebook_opened_without_the_repository_says_what_to_do(tmp_path):
    notebook = nbformat.read(notebooks.notebook_path("simple_autoencoder.py"),
                             as_version=4)
    first = next(c for c in notebook.cells if c.cell_type == "code")
    executed = _run_cells([first], path=tmp_path)
    [error] = [o for o in executed.cells[0].outputs if o["output_type"] == "error"]
    assert error["ename"] == "SystemExit"
    # One line: how to get the code.
    assert error["evalue"] == ("plumbing not found: clone the keras-autoencoders "
                               "repository, install its requirements.txt, and open "
                               "this notebook from its notebooks/ folder")
