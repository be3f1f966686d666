"""The README and docs/ against what they describe: the results table against
results/results.json, the speed tables against results/speed.json, the loss floor,
the scripts table against each script's RECIPES, and every local link and image.
Fast: nothing trains, and no training script is imported (importing one runs its
lesson); RECIPES are read from each script's syntax tree."""

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import compare_speed  # noqa: E402
import run_all  # noqa: E402

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS = json.loads((ROOT / "results" / "results.json").read_text())
SPEED = json.loads((ROOT / "results" / "speed.json").read_text())
SECTIONS = ["Quick start", "The scripts", "Results", "Visualising latent spaces",
            "Notebooks", "Backends and GPUs", "Tests", "Layout", "Credits"]
# Pages a colleague's change adds; linked ahead of it. Remove a name once it exists.


def block(path, name):
    page = path.read_text()
    start, end = f"<!-- {name}:start -->\n", f"\n<!-- {name}:end -->"
    assert start in page and end in page, f"{path.name}: no {name} markers"
    return page.split(start, 1)[1].split(end, 1)[0]


def test_readme_is_a_short_landing_page_in_order():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    headings = [line[3:] for line in lines if line.startswith("## ")]
    assert headings == SECTIONS
    assert lines[0] == "# keras-autoencoders"


def test_readme_results_table_is_results_json():
    assert block(README, "results-table") == run_all.readme_table(RESULTS)
    table = [row for row in block(README, "results-table").splitlines()
             if row.startswith("| ") and not row.startswith("| model")]
    assert len(table) == len(RESULTS["models"])
    for row, model in zip(table, RESULTS["models"]):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == model["command"]
        assert float(cells[3]) == pytest.approx(model["test_loss"], abs=0.051)


def test_loss_floor_is_the_one_in_results_json():
    floor = RESULTS["loss_floor"]
    assert 0.05 < floor["per_pixel"] < 0.07  # MNIST's test digits: about 0.058
    assert floor["per_image_nats"] == pytest.approx(784 * floor["per_pixel"])
    assert block(ROOT / "docs" / "results.md", "loss-floor") == run_all.floor_table(RESULTS)
    assert block(ROOT / "docs" / "results.md", "figures") == \
        f"The figures come from {RESULTS['figures']}."
    # Any other mention of the floor on the pages says the same number.
    for page in [README, *DOCS]:
        for number in re.findall(r"below (0\.\d+) per pixel", page.read_text()):
            assert float(number) == pytest.approx(floor["per_pixel"], abs=0.0005)


def test_results_page_quotes_results_json():
    """docs/results.md's run line is generated from results.json, and the numbers
    its prose quotes from the table are the table's."""
    page = ROOT / "docs" / "results.md"
    assert block(page, "run") == run_all.run_line(RESULTS)
    text = " ".join(page.read_text().split())
    model = {row["model"]: row for row in RESULTS["models"]}
    floor = RESULTS["loss_floor"]["per_pixel"]
    deep, simple = model["deep_autoe"]["test_loss"], model["simple_autoe"]["test_loss"]
    assert f"the deep autoencoder's {deep:.4f} is {deep - floor:.3f} above the floor, " \
           f"against the simple autoencoder's {simple - floor:.3f}" in text
    assert f"remove {1 - (deep - floor) / (simple - floor):.0%} of what is left" in text
    assert f"({deep:.4f} against {simple:.4f})" in text
    vaes = [model[name]["knn_accuracy"] for name in
            ("variational_autoe", "variational_autoe_deconv")]
    dense = [model[name]["knn_accuracy"] for name in
             ("simple_autoe", "sparse_autoe", "deep_autoe")]
    assert f"(5-NN {vaes[0]:.3f} and {vaes[1]:.3f})" in text
    assert f"32-d codes ({min(dense):.3f}-{max(dense):.3f})" in text
    if "reach every bar" in text:
        assert all(row["met"] for row in RESULTS["models"])


def test_speed_tables_are_speed_json():
    page = ROOT / "docs" / "speed.md"
    assert SPEED["sittings"]
    for name, sitting in SPEED["sittings"].items():
        assert sitting["date"] and sitting["command"] and sitting["machine"]
        assert block(page, f"speed-{name}") == compare_speed.speed_table(sitting)
    assert " MB" not in page.read_text() and " GB" not in page.read_text()


def literal(node, names):
    """Evaluate a dict/list/constant expression, dict(...) calls and ** included."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -literal(node.operand, names)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [literal(item, names) for item in node.elts]
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.Subscript):
        return literal(node.value, names)[literal(node.slice, names)]
    if isinstance(node, ast.Dict):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                out.update(literal(value, names))
            else:
                out[literal(key, names)] = literal(value, names)
        return out
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
        out = {}
        for arg in node.args:
            out.update(literal(arg, names))
        for keyword in node.keywords:
            if keyword.arg is None:
                out.update(literal(keyword.value, names))
            else:
                out[keyword.arg] = literal(keyword.value, names)
        return out
    raise ValueError(f"not a literal: {ast.dump(node)[:80]}")


def module_recipes(script):
    """The module-level *RECIPES constants of SCRIPT, read without running it."""
    names = {}
    for node in ast.parse((ROOT / script).read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id.endswith("RECIPES"):
                    names[target.id] = literal(node.value, names)
    return names


OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "adadelta": "Adadelta"}
SCHEDULES = {"cosine": "cosine decay", "constant": "constant rate"}


def recipe_text(r):
    warmup = f", {r['warmup']}-epoch warm-up" if r["warmup"] else ""
    return (f"{r['epochs']} epochs, batch {r['batch_size']}, "
            f"{OPTIMIZERS[r['optimizer']]} {r['learning_rate']:g}{warmup}, "
            f"{SCHEDULES[r['schedule']]}")


def scripts_table():
    lines = README.read_text().split("## The scripts", 1)[1].splitlines()
    rows = {}
    for line in lines:
        if line.startswith("| `") and line.count("|") >= 6:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def without_note(cell):
    return re.split(r"; | \(", cell, maxsplit=1)[0]


def test_scripts_table_is_the_scripts_recipes():
    rows = scripts_table()
    expected = {}
    for script in sorted(ROOT.glob("*.py")):
        recipes = module_recipes(script.name)
        if "RECIPES" in recipes:
            expected[script.name] = recipes["RECIPES"]
        if "SPARSE_RECIPES" in recipes:
            expected[f"{script.name} --sparse"] = recipes["SPARSE_RECIPES"]
    assert len(expected) == 7
    assert set(expected) <= set(rows)
    for name, recipes in expected.items():
        cells = rows[name]
        assert without_note(cells[3]) == recipe_text(recipes["ours"]), name
        assert without_note(cells[4]) == recipe_text(recipes["tutorial"]), name
    # and the results table ran those recipes
    for model in RESULTS["models"]:
        ours = expected[model["command"]]["ours"]
        assert (model["epochs"], model["batch_size"], model["optimizer"],
                model["learning_rate"], model["warmup_epochs"]) == \
            (ours["epochs"], ours["batch_size"], ours["optimizer"],
             ours["learning_rate"], ours["warmup"]), model["command"]


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_local_links_and_images_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: {target} does not exist"


def test_pages_tell_state_not_history():
    for page in [README, *DOCS]:
        text = page.read_text().lower()
        for words in ["until now", "no longer", "two sessions ago", "then in force",
                      "predate", ": met", "missed", "budget"]:
            assert words not in text, f"{page.name}: {words!r}"


def test_fashion_mnist_page_is_its_results_file():
    """docs/fashion_mnist.md states the Fashion-MNIST run of results/fashion_mnist.json
    and, beside it, the MNIST figures of results/results.json."""
    fashion = json.loads((ROOT / "results" / "fashion_mnist.json").read_text())
    page = " ".join((ROOT / "docs" / "fashion_mnist.md").read_text().split())
    simple = fashion["models"]["simple_autoe"]
    vae = fashion["models"]["variational_autoe"]
    mnist = {model["model"]: model for model in RESULTS["models"]}
    floor, mnist_floor = fashion["loss_floor"]["per_pixel"], \
        RESULTS["loss_floor"]["per_pixel"]
    expected = [
        f"{simple['test_loss']:.4f} (untrained {simple['untrained_test_loss']:.4f})",
        f"{simple['knn_accuracy']:.3f} (t-SNE trustworthiness "
        f"{simple['trustworthiness']:.3f})",
        f"{vae['test_loss']:.1f} = reconstruction {vae['test_reconstruction']:.1f} + "
        f"KL {vae['test_kl']:.1f} (untrained {vae['untrained_test_loss']:.1f})",
        f"| {vae['knn_accuracy']:.3f} |",
        f"{simple['minutes']:.1f} |", f"{vae['minutes']:.1f} |",
        f"scores {fashion['raw_pixels_knn_accuracy']:.3f}",
        f"{floor:.3f} for Fashion-MNIST and {mnist_floor:.3f} for MNIST",
        f"ends {simple['test_loss'] - floor:.3f} above it on Fashion-MNIST and "
        f"{mnist['simple_autoe']['test_loss'] - mnist_floor:.3f} above it on MNIST",
        f"{mnist['simple_autoe']['test_loss']:.4f}, "
        f"{mnist['simple_autoe']['knn_accuracy']:.3f}",
        f"{mnist['variational_autoe']['test_loss']:.1f}, "
        f"{mnist['variational_autoe']['knn_accuracy']:.3f}",
        f"({vae['knn_accuracy']:.3f} against {mnist['variational_autoe']['knn_accuracy']:.3f})",
        f"against {mnist['simple_autoe']['seconds_per_epoch']:.1f} s and "
        f"{mnist['variational_autoe']['seconds_per_epoch']:.1f} s for the same models on "
        "MNIST in the README's run",
    ]
    for text in expected:
        assert text in page, text


def test_learning_curves_are_those_of_results_curves_json():
    """docs/results.md's learning-curve stories quote results/curves.json."""
    curves = json.loads((ROOT / "results" / "curves.json").read_text())["models"]
    text = " ".join(block(ROOT / "docs" / "results.md", "curves").split())
    for prefix, digits in (("simple_autoe", 4), ("deep_autoe", 4), ("conv_autoe", 4),
                           ("denoise_autoe", 4), ("variational_autoe", 1)):
        model = curves[prefix]
        for key in ("test_loss_after_tenth", "test_loss_at_half", "final_test_loss"):
            assert f"{model[key]:.{digits}f}" in text, (prefix, key)
    for prefix in ("conv_autoe", "denoise_autoe"):
        model = curves[prefix]
        assert f"{model['final_test_loss']:.4f} against " \
               f"{model['final_train_loss']:.4f}" in text, prefix
    conv = curves["conv_autoe"]["history"]["val_loss"]
    assert f"last ten epochs gain only {conv[-11] - conv[-1]:.4f}" in text
    deconv = curves["variational_autoe_deconv"]["history"]
    assert f"from {deconv['val_loss'][0]:.1f} after the first epoch to " \
           f"{deconv['val_loss'][-1]:.1f} after the last" in text
    assert f"KL term ends at {deconv['val_kl'][-1]:.1f} nats" in text
    assert f"({deconv['loss'][-1]:.1f} against {deconv['val_loss'][-1]:.1f} at the end)" \
        in text
    simple, sparse = curves["simple_autoe"], curves["sparse_autoe"]
    assert f"{simple['final_test_loss']:.4f} against " \
           f"{simple['final_train_loss']:.4f}" in text
    assert f"({sparse['test_loss']:.4f})" in text
    assert f"ends at {sparse['test_reconstruction']:.4f}" in text
    vae = curves["variational_autoe"]["history"]
    gap = vae["val_reconstruction"][-1] - vae["reconstruction"][-1]
    assert f"within {gap:.1f} nats" in text
    assert f"climbs to {vae['kl'][-1]:.1f} nats" in text
    for prefix in curves:
        assert f"../assets/{prefix}_history.png" in \
            (ROOT / "docs" / "results.md").read_text()
