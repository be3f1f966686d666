"""The README and docs/ against what they describe: the results table against
results/results.json, the speed tables against results/speed.json, the loss floor,
the scripts table against each script's RECIPES, every local link and image, and
the rule that keeps numbers from drifting (CONTRIBUTING.md): every number a run
measured appears in README.md and docs/ only inside a block a script generates from
results/, or in a sentence this file holds to results/*.json (or, for
docs/reliability.md's caps and limits, to the constants that enforce them).
Fast: nothing trains, and no training script is imported (importing one runs its
lesson); RECIPES are read from each script's syntax tree."""

import ast
import datetime
import json
import operator
import re
import sys
from pathlib import Path

import pytest

from plumbing import data, loading, modelfile, npz, tsne_cache
from plumbing import files as plumbing_files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import compare_speed  # noqa: E402
import run_all  # noqa: E402
import time_likelihood  # noqa: E402

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS_PAGE, SPEED_PAGE = ROOT / "docs" / "results.md", ROOT / "docs" / "speed.md"
FASHION_PAGE = ROOT / "docs" / "fashion_mnist.md"
RELIABILITY_PAGE = ROOT / "docs" / "reliability.md"


def load(name):
    return json.loads((ROOT / "results" / name).read_text())


RESULTS, SPEED, CURVES = load("results.json"), load("speed.json"), load("curves.json")
FASHION, SAMPLE, TUNING = load("fashion_mnist.json"), load("sample.json"), \
    load("tuning.json")
LIKELIHOOD = load("likelihood.json")
SECTIONS = ["Quick start", "The scripts", "Results", "Visualising latent spaces",
            "Using a trained model", "Notebooks", "Backends and GPUs", "Tests",
            "Layout", "Credits"]


def flat(text):
    return " ".join(text.split())


def block(path, name):
    page = path.read_text()
    start, end = f"<!-- {name}:start -->\n", f"\n<!-- {name}:end -->"
    assert start in page and end in page, f"{path.name}: no {name} markers"
    return page.split(start, 1)[1].split(end, 1)[0]


def test_readme_is_a_short_landing_page_in_order():
    lines = README.read_text().splitlines()
    assert len(lines) <= 270
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
    # Each script's minutes at its defaults are those of the results table's run.
    for model in RESULTS["models"]:
        assert rows[model["command"]][5] == f"{model['total_minutes']:.0f}", \
            model["command"]
    assert len(RESULTS["models"]) == 7
    # and the results table ran those recipes
    for model in RESULTS["models"]:
        ours = expected[model["command"]]["ours"]
        assert (model["epochs"], model["batch_size"], model["optimizer"],
                model["learning_rate"], model["warmup_epochs"]) == \
            (ours["epochs"], ours["batch_size"], ours["optimizer"],
             ours["learning_rate"], ours["warmup"]), model["command"]


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors(page):
    """The anchors GitHub gives PAGE's headings: lower case, punctuation dropped,
    spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in page.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", [README, *DOCS, ROOT / "features" / "README.md",
                                  ROOT / "CONTRIBUTING.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_and_images_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        name, _, anchor = target.partition("#")
        path = (page.parent / name).resolve() if name else page
        assert path.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.relative_to(ROOT)}: no section #{anchor} in {name}"


def test_pages_tell_state_not_history():
    for page in [README, *DOCS]:
        text = page.read_text().lower()
        for words in ["until now", "no longer", "two sessions ago", "then in force",
                      "predate", ": met", "missed", "budget", "session", "sitting"]:
            assert words not in text, f"{page.name}: {words!r}"


def test_the_tuning_log_speaks_of_dates_and_machines():
    text = (ROOT / "results" / "tuning.md").read_text().lower()
    for words in ["session", "sitting", "until now"]:
        assert words not in text, words


# Held sentences: each page's sentences that quote a measured number, written from
# results/*.json (docs/reliability.md's caps and limits: from the code that sets
# them). A test checks that each is on its page, word for word (spaces and line
# breaks aside); the drift test then accepts the numbers inside them.

def results_page_quotes():
    """docs/results.md's prose: the table's numbers, the tuning runs' and the
    curves'."""
    model = {row["model"]: row for row in RESULTS["models"]}
    floor = RESULTS["loss_floor"]["per_pixel"]
    deep, simple = model["deep_autoe"]["test_loss"], model["simple_autoe"]["test_loss"]
    vaes = [model[name]["knn_accuracy"] for name in
            ("variational_autoe", "variational_autoe_deconv")]
    dense = [model[name]["knn_accuracy"] for name in
             ("simple_autoe", "sparse_autoe", "deep_autoe")]
    sparse = model["sparse_autoe"]
    tuned = TUNING["models"]
    seeds = {name: ", ".join(f"{value:{spec}}" for value in tuned[name]["seeds"].values())
             for name, spec in (("simple_autoe", ".4f"), ("deep_autoe", ".4f"),
                                ("denoise_autoe", ".4f"), ("variational_autoe", ".1f"))}
    denoise = tuned["denoise_autoe"]
    gap = vae_gap()
    return [
        f"the deep autoencoder's {deep:.4f} is {deep - floor:.3f} above the floor, "
        f"against the simple autoencoder's {simple - floor:.3f}",
        f"remove {1 - (deep - floor) / (simple - floor):.0%} of what is left",
        f"({deep:.4f} against {simple:.4f})",
        f"(5-NN {vaes[0]:.3f} and {vaes[1]:.3f})",
        f"32-d codes ({min(dense):.3f}-{max(dense):.3f})",
        f"simple autoencoder: {seeds['simple_autoe']} (bar 0.090)",
        f"deep autoencoder: {seeds['deep_autoe']} (bar 0.080)",
        f"MLP VAE: {seeds['variational_autoe']} (bar 145)",
        *(f"{headline}: {tuned[name]['before']:{spec}} → {tuned[name]['ours']:{spec}}.**"
          for headline, name, spec in (
              ("Simple autoencoder", "simple_autoe", ".4f"),
              ("Deep autoencoder", "deep_autoe", ".4f"),
              ("Convolutional autoencoder", "conv_autoe", ".4f"),
              ("MLP VAE", "variational_autoe", ".1f"),
              ("Deconvolutional VAE", "variational_autoe_deconv", ".1f"))),
        f"denoiser: {seeds['denoise_autoe']} (bar 0.100)",
        f"reach {denoise['ours']:.4f} (the mean of three seeds, in float32); 30 epochs "
        f"gave {denoise['thirty_epochs']:.4f} and 100 epochs at Adam 0.001 gave "
        f"{denoise['longer']:.4f}",
        f"stays within {gap:.1f} nats of the training digits' (Learning curves, below)",
        f"8 epochs reached {tuned['variational_autoe_deconv']['eight_epochs']:.1f} on "
        f"that CPU in mixed bfloat16, and the table's 7 epochs in float32 reach "
        f"{model['variational_autoe_deconv']['test_loss']:.1f}",
        f"its mean code activation is {sparse['mean_code_activation']:.2f}, against "
        f"{model['simple_autoe']['mean_code_activation']:.2f} for the plain model, "
        f"for a reconstruction loss of {sparse['test_loss']:.4f} against "
        f"{simple:.4f}",
        *curves_quotes(),
    ]


def vae_gap():
    """The MLP VAE's last test reconstruction term above its training one."""
    vae = CURVES["models"]["variational_autoe"]["history"]
    return vae["val_reconstruction"][-1] - vae["reconstruction"][-1]


def curves_quotes():
    """docs/results.md's learning-curve stories, from results/curves.json."""
    curves = CURVES["models"]
    quotes = []
    for prefix, digits in (("simple_autoe", 4), ("deep_autoe", 4), ("conv_autoe", 4),
                           ("denoise_autoe", 4), ("variational_autoe", 1)):
        model = curves[prefix]
        quotes.append(f"({model['test_loss_after_tenth']:.{digits}f} after the first "
                      f"tenth, {model['test_loss_at_half']:.{digits}f} at half-way, "
                      f"{model['final_test_loss']:.{digits}f} at the end)")
    for prefix in ("simple_autoe", "conv_autoe", "denoise_autoe"):
        model = curves[prefix]
        quotes.append(f"({model['final_test_loss']:.4f} against "
                      f"{model['final_train_loss']:.4f} at the end)")
    deep = curves["deep_autoe"]
    quotes.append(f"({deep['final_test_loss']:.4f} against "
                  f"{deep['final_train_loss']:.4f})")
    denoise = curves["denoise_autoe"]["history"]["val_loss"]
    first = next(i for i, loss in enumerate(denoise) if loss <= 0.100)
    quotes.append("it passes its bar in the " + ("first second third fourth fifth sixth "
                  "seventh eighth ninth tenth").split()[first])
    conv = curves["conv_autoe"]["history"]["val_loss"]
    quotes.append(f"last ten epochs gain only {conv[-11] - conv[-1]:.4f}")
    deconv = curves["variational_autoe_deconv"]["history"]
    quotes += [f"from {deconv['val_loss'][0]:.1f} after the first epoch to "
               f"{deconv['val_loss'][-1]:.1f} after the last",
               f"KL term ends at {deconv['val_kl'][-1]:.1f} nats",
               f"({deconv['loss'][-1]:.1f} against {deconv['val_loss'][-1]:.1f} at the "
               "end)"]
    sparse = curves["sparse_autoe"]
    quotes += [f"({sparse['test_loss']:.4f})",
               f"ends at {sparse['test_reconstruction']:.4f}",
               f"within {vae_gap():.1f} nats",
               f"climbs to {curves['variational_autoe']['history']['kl'][-1]:.1f} nats"]
    return quotes


def readme_quotes():
    """The quick start's offline run (results/sample.json) against full MNIST, and
    the MLP VAE's curves."""
    sample = SAMPLE["test_loss"]
    mnist = {row["model"]: row for row in RESULTS["models"]}["simple_autoe"]["test_loss"]
    day = datetime.date.fromisoformat(SAMPLE["date"])
    machine = SAMPLE["machine"].split(" @")[0]
    denoise = TUNING["models"]["denoise_autoe"]
    # The scripts table's rows whose minutes are the results table's run.
    rows = scripts_table()
    timed = ["| " + " | ".join(rows[model["command"]]) + " |"
             for model in RESULTS["models"] if model["command"] in rows
             and rows[model["command"]][5] == f"{model['total_minutes']:.0f}"]
    return [
        *timed,
        f"its 10 epochs reach {denoise['ours']:.4f} (the mean of three seeds), where 30 "
        f"reached {denoise['thirty_epochs']:.4f} in three times as long",
        f"On that sample the simple autoencoder ends at about {sample:.2f} "
        f"({sample:.4f} on a {machine}, {day.day} {day:%B %Y}; results/sample.json), "
        f"against {mnist:.2f} on full MNIST ({mnist:.4f} in the Results table)",
        f"the test digits' reconstruction term within {vae_gap():.1f} nats of the "
        "training digits'",
    ]


def readme_conv_epochs_against_the_port():
    """docs/speed.md: the README's run's conv epochs against the page's float32 ones."""
    port = SPEED["sittings"]["port"]["scripts"]
    table = {row["command"]: row for row in RESULTS["models"]}
    ratios = [table[f"{script}.py"]["seconds_per_epoch"] /
              port[script]["tensorflow float32"]["seconds"]
              for script in ("convolutional_autoencoder", "image_denoising",
                             "variational_autoencoder_deconv")]
    return (f"epochs took {min(ratios):.1f} to {max(ratios):.1f} times as long as this "
            "page's float32 ones")


def speed_quotes():
    """docs/speed.md's prose, from the tables of results/speed.json."""
    port = SPEED["sittings"]["port"]
    scripts, gflop = port["scripts"], port["gflop_per_epoch"]
    conv = ("convolutional_autoencoder", "image_denoising",
            "variational_autoencoder_deconv")
    bf16 = [scripts[name]["tensorflow float32"]["seconds"] /
            scripts[name]["tensorflow auto"]["seconds"] for name in conv]
    vae = "variational_autoencoder"
    denoiser = scripts["image_denoising"]
    ours_peak = max(denoiser[column]["peak_mib"]
                    for column in ("tensorflow float32", "tensorflow auto"))
    backends = SPEED["sittings"]["backends_cpu"]["scripts"]
    deconv = backends["variational_autoencoder_deconv"]
    gpu = SPEED["sittings"]["gpu"]["scripts"]
    mixed = [gpu[name]["jax float32"]["seconds"] / gpu[name]["jax mixed_bfloat16"]["seconds"]
             for name in ("simple_autoencoder", "convolutional_autoencoder",
                          "image_denoising", "variational_autoencoder_deconv")]
    return [
        readme_conv_epochs_against_the_port(),
        f"autoencoder about {sum(mixed) / len(mixed):.1f}x as fast",
        f"Its epoch is about {gflop[vae]} GFLOP, which the port already runs at about "
        f"{gflop[vae] / scripts[vae]['port (TF)']['seconds']:.0f} GFLOP/s",
        f"arithmetic-bound ({gflop['variational_autoencoder_deconv']:,} GFLOP an epoch)",
        f"peaks highest ({ours_peak:,} MiB in the table above); the port of it, whose "
        f"images are float64, peaks higher still ({denoiser['port (TF)']['peak_mib']:,} "
        "MiB)",
        f"{min(bf16):.1f}-{max(bf16):.1f}x as fast as their float32 runs",
        f"transposed convolutions are about "
        f"{deconv['jax']['seconds'] / deconv['tensorflow']['seconds']:.0f}x "
        "slower on JAX's CPU backend",
    ]


def fashion_quotes():
    """docs/fashion_mnist.md: the Fashion-MNIST run of results/fashion_mnist.json
    and, beside it, the MNIST figures of results/results.json."""
    simple = FASHION["models"]["simple_autoe"]
    vae = FASHION["models"]["variational_autoe"]
    mnist = {model["model"]: model for model in RESULTS["models"]}
    floor, mnist_floor = FASHION["loss_floor"]["per_pixel"], \
        RESULTS["loss_floor"]["per_pixel"]
    files = FASHION["data_files"]
    return [
        f"{simple['test_loss']:.4f} (untrained {simple['untrained_test_loss']:.4f})",
        f"{simple['knn_accuracy']:.3f} (t-SNE trustworthiness "
        f"{simple['trustworthiness']:.3f})",
        f"{vae['test_loss']:.1f} = reconstruction {vae['test_reconstruction']:.1f} + "
        f"KL {vae['test_kl']:.1f} (untrained {vae['untrained_test_loss']:.1f})",
        f"| {vae['knn_accuracy']:.3f} |",
        f"{simple['minutes']:.1f} |", f"{vae['minutes']:.1f} |",
        f"scores {FASHION['raw_pixels_knn_accuracy']:.3f}",
        f"{floor:.3f} for Fashion-MNIST and {mnist_floor:.3f} for MNIST",
        f"ends {simple['test_loss'] - floor:.3f} above it on Fashion-MNIST and "
        f"{mnist['simple_autoe']['test_loss'] - mnist_floor:.3f} above it on MNIST",
        f"so {simple['test_loss']:.2f} against {mnist['simple_autoe']['test_loss']:.2f} "
        "mostly measures the data",
        f"{mnist['simple_autoe']['test_loss']:.4f}, "
        f"{mnist['simple_autoe']['knn_accuracy']:.3f}",
        f"{mnist['variational_autoe']['test_loss']:.1f}, "
        f"{mnist['variational_autoe']['knn_accuracy']:.3f}",
        f"({simple['knn_accuracy']:.3f} against {FASHION['raw_pixels_knn_accuracy']:.3f})",
        f"({vae['knn_accuracy']:.3f} against {mnist['variational_autoe']['knn_accuracy']:.3f})",
        f"the steady epochs took {simple['seconds_per_epoch']:.1f} s (simple) and "
        f"{vae['seconds_per_epoch']:.1f} s (VAE)",
        f"against {mnist['simple_autoe']['seconds_per_epoch']:.1f} s and "
        f"{mnist['variational_autoe']['seconds_per_epoch']:.1f} s for the same models on "
        "MNIST in the README's run",
        f"the {min(files['stripped_name_bytes'])}- or {max(files['stripped_name_bytes'])}"
        f"-byte file name",
        f"({files['train_images_bytes']:,} bytes for `train-images-idx3-ubyte.gz` "
        f"against the official {files['official_train_images_bytes']:,})",
    ]


# The sizes docs/reliability.md gives the caps room for: MNIST's 70,000 digits (and
# EMNIST's 280,000), their codes from the widest model (7x7x32 float32), their int64
# labels and a 2-d float32 t-SNE map of them, in bytes.
MNIST_DIGITS, EMNIST_DIGITS = 70_000, 280_000
DIGIT_BYTES = npz.IMAGE_SHAPE[0] * npz.IMAGE_SHAPE[1]
SIZES = {"images": MNIST_DIGITS * DIGIT_BYTES, "codes": MNIST_DIGITS * 7 * 7 * 32 * 4,
         "labels": MNIST_DIGITS * 8, "map": MNIST_DIGITS * 2 * 4}
INTEGER_OPERATORS = {ast.LShift: operator.lshift, ast.Mult: operator.mul}


def integer(node):
    """The value of an integer expression of constants: 4 << 30, 16 * 1024."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in INTEGER_OPERATORS:
        return INTEGER_OPERATORS[type(node.op)](integer(node.left), integer(node.right))
    raise ValueError(f"not an integer: {ast.dump(node)[:80]}")


def hostile_input_limits():
    """The limits the tests of hostile input put on their children and inputs,
    read from the syntax trees of tests/test_hostile_input.py and
    tests/test_fuzz_readers.py (importing them would need their optional extras):
    module constants by name, and the few limits written inside one test."""
    trees = {name: ast.parse((ROOT / "tests" / name).read_text())
             for name in ("test_hostile_input.py", "test_fuzz_readers.py")}
    limits = {}
    for tree in trees.values():
        for node in tree.body:
            name = getattr(node.targets[0], "id", None) \
                if isinstance(node, ast.Assign) else None
            if name == "FUZZ":  # Hypothesis' settings(max_examples=...)
                limits["max_examples"] = next(integer(keyword.value) for keyword in
                                              node.value.keywords
                                              if keyword.arg == "max_examples")
            elif name:
                try:
                    limits[name] = integer(node.value)
                except ValueError:
                    pass

    def inside(function):
        return [node for node in ast.walk(trees["test_hostile_input.py"])
                if isinstance(node, ast.FunctionDef) and node.name == function][0]

    gzip_bomb = list(ast.walk(inside(
        "test_a_gzip_bomb_in_the_fashion_cache_is_called_a_bomb")))
    limits["gzip_bomb"] = next(integer(node.value) for node in gzip_bomb
                               if isinstance(node, ast.keyword) and node.arg == "bomb")
    limits["gzip_bomb_file"] = next(integer(node.comparators[0]) for node in gzip_bomb
                                    if isinstance(node, ast.Compare))
    config = next(node.value for node in ast.walk(inside(
        "test_a_keras_config_that_inflates_is_refused_unread"))
        if isinstance(node, ast.Constant) and "declares" in str(node.value))
    limits["inflating_config"] = \
        int(re.search(r"declares ([\d,]+) MiB", config)[1].replace(",", "")) << 20
    return limits


def binary(size):
    """A cap of SIZE bytes as the page writes it: "64 MiB", "4 GiB"."""
    for unit, shift in (("GiB", 30), ("MiB", 20)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    raise ValueError(f"{size} bytes is not a whole number of MiB")


def reliability_quotes():
    """docs/reliability.md: each cap from the constant that enforces it, the sizes
    it leaves room for by arithmetic, and the tests' own limits from their code."""
    sizes = {name: size / 1e6 for name, size in SIZES.items()}
    fashion = FASHION["data_files"]["official_train_images_bytes"] / 1e6
    members = {name: binary(cap) for name, cap in modelfile.MEMBERS.items()}
    limits = hostile_input_limits()
    return [
        # the caps table: plumbing's constants, and the sizes they leave room for
        f"| `--data` .npz | {binary(npz.DATA_MAX_BYTES)}, {npz.MAX_IMAGES:,} images | "
        f"MNIST's {MNIST_DIGITS:,} digits take {sizes['images']:.0f} MB; EMNIST's "
        f"{EMNIST_DIGITS:,} digits fit too |",
        f"| `<prefix>_features.pickle` | {binary(loading.FEATURES_MAX_BYTES)} | "
        f"{MNIST_DIGITS:,} codes of the widest model (7x7x32 float32) take "
        f"{sizes['codes']:.0f} MB |",
        f"| `<prefix>_labels.pickle` | {binary(loading.LABELS_MAX_BYTES)} | "
        f"{MNIST_DIGITS:,} int64 digits take {sizes['labels']:.1f} MB |",
        f"| `<prefix>_images.pickle` | {binary(loading.IMAGES_MAX_BYTES)} | "
        f"{MNIST_DIGITS:,} uint8 28x28 digits take {sizes['images']:.0f} MB |",
        f"| t-SNE cache (`_tsne.pickle`, `.json`) | {binary(tsne_cache.CACHE_MAX_BYTES)} "
        f"| a map of {MNIST_DIGITS:,} points takes {sizes['map']:.1f} MB;",
        f"| `<prefix>_decoder.keras` | {binary(loading.DECODER_MAX_BYTES)} |",
        f"| a staging folder's `COMMIT` | {binary(plumbing_files.JOURNAL_MAX_BYTES)} |",
        f"| a run's metrics record (`<prefix>_metrics.json`, `results.json`) | "
        f"{binary(plumbing_files.RECORD_MAX_BYTES)} |",
        f"| any file of a run's set, hashed to check it belongs | "
        f"{binary(plumbing_files.SET_FILE_MAX_BYTES)} |",
        f"| a `.keras` model | {binary(modelfile.KERAS_MAX_BYTES)} |",
        f"| Keras' cached `mnist.npz` | {binary(npz.DATA_MAX_BYTES)}, as `--data` |",
        f"| Keras' cached Fashion-MNIST `.gz` files | {binary(data.GZ_MAX_BYTES)} each; "
        "never more decompressed than the images their header declares | the training "
        f"images take {fashion:.0f} MB compressed |",
        # the caps in the prose: the readers' and the .keras check's constants
        f"the images or labels the header declares (at most {data.MAX_IMAGES:,})",
        f"anything but a regular file of at most {binary(modelfile.KERAS_MAX_BYTES)};",
        f"uncompressed: {members['config.json']} for `config.json`, "
        f"{members['metadata.json']} for `metadata.json`, "
        f"{members['model.weights.h5']} for the weights;",
        f"declare more than {modelfile.MAX_WEIGHTS >> 20} Mi weights",
        f"so is a pickle of more than {loading.MAX_PICKLE_OPS:,} instructions",
        f"there are at most {npz.MAX_IMAGES:,} images;",
        f"at least {data.MIN_TEST_IMAGES} test images, and at least "
        f"{data.MIN_TEST_IMAGES} distinct ones",
        # the tests' own limits, from their code
        f"({binary(limits['gzip_bomb'])} of zeros after the images, in under "
        f"{binary(limits['gzip_bomb_file'])})",
        f"(a config of {binary(limits['inflating_config'])} in a file of a few MB)",
        f"each run in a child limited to {binary(limits['MEMORY_LIMIT'])} of address "
        "space",
        f"(Hypothesis, {limits['max_examples']} derandomized examples each)",
        f"within {limits['SECONDS_PER_EXAMPLE']} seconds an example and "
        f"{binary(limits['EXTRA_MEMORY'])} of address space beyond the test's own",
        f"under a {binary(limits['ROUND_TWO_MEMORY'])} address-space limit "
        f"({binary(limits['MEMORY_LIMIT'])} for the pickle bombs)",
        f"that must stay under {binary(limits['TMP_MAX_BYTES'])}",
    ]


HELD = {README: readme_quotes(), RESULTS_PAGE: results_page_quotes(),
        SPEED_PAGE: speed_quotes(), FASHION_PAGE: fashion_quotes(),
        RELIABILITY_PAGE: reliability_quotes()}


@pytest.mark.parametrize("page", list(HELD), ids=lambda p: p.name)
def test_held_sentences_are_on_their_pages(page):
    text = flat(page.read_text())
    for sentence in HELD[page]:
        assert sentence in text, f"{page.name}: not found: {sentence}"


def test_the_caps_leave_room_for_what_the_reliability_page_says():
    """The data the caps table says fits does fit, and the bombs its tests use get
    past the file-size caps, so that what stops them is the check the page names."""
    assert EMNIST_DIGITS <= npz.MAX_IMAGES
    assert EMNIST_DIGITS * DIGIT_BYTES <= npz.DATA_MAX_BYTES
    assert SIZES["codes"] <= loading.FEATURES_MAX_BYTES
    assert SIZES["labels"] <= loading.LABELS_MAX_BYTES
    assert SIZES["images"] <= loading.IMAGES_MAX_BYTES
    assert SIZES["map"] <= tsne_cache.CACHE_MAX_BYTES
    assert FASHION["data_files"]["official_train_images_bytes"] <= data.GZ_MAX_BYTES
    limits = hostile_input_limits()
    # the bomb passes the file's cap: what stops it is the header's count
    assert limits["gzip_bomb_file"] < data.GZ_MAX_BYTES < limits["gzip_bomb"]
    assert limits["inflating_config"] > modelfile.MEMBERS["config.json"]


def test_results_page_says_every_bar_is_reached_only_if_so():
    if "reach every bar" in flat(RESULTS_PAGE.read_text()):
        assert all(row["met"] for row in RESULTS["models"])


def test_every_curve_figure_is_on_the_results_page():
    for prefix in CURVES["models"]:
        assert f"../assets/{prefix}_history.png" in RESULTS_PAGE.read_text()


def test_the_backend_advice_is_the_speed_tables():
    """The README's words on JAX against TensorFlow on a CPU, and speed.md's ratio
    of the README's conv epochs to its own, follow the measurements."""
    backends = {name: {backend: cell["seconds"] for backend, cell in row.items()}
                for name, row in SPEED["sittings"]["backends_cpu"]["scripts"].items()}
    readme = flat(README.read_text())
    assert "JAX is a little faster for the simple and deep autoencoders, about as " \
           "fast for the MLP VAE and much slower for the convolutional models" in readme
    for name in ("simple_autoencoder", "deep_autoencoder"):
        assert backends[name]["jax"] < backends[name]["tensorflow"], name
    vae = backends["variational_autoencoder"]
    assert abs(vae["jax"] / vae["tensorflow"] - 1) < 0.15
    for name in ("convolutional_autoencoder", "image_denoising",
                 "variational_autoencoder_deconv"):
        assert backends[name]["jax"] > 2 * backends[name]["tensorflow"], name
    assert readme_conv_epochs_against_the_port() in flat(SPEED_PAGE.read_text())
    gpu = SPEED["sittings"]["gpu"]["scripts"]
    speedups = [gpu[name]["jax float32"]["seconds"] /
                gpu[name]["jax mixed_bfloat16"]["seconds"] for name in
                ("simple_autoencoder", "convolutional_autoencoder", "image_denoising",
                 "variational_autoencoder_deconv")]
    # "about 1.3x" (held above) is their mean; it says "about" only while they agree.
    assert max(speedups) - min(speedups) < 0.15, speedups


def generated_blocks():
    """Every block a script writes: (page, marker name, the text it writes)."""
    yield README, "results-table", run_all.readme_table(RESULTS)
    yield RESULTS_PAGE, "run", run_all.run_line(RESULTS)
    yield RESULTS_PAGE, "loss-floor", run_all.floor_table(RESULTS)
    yield RESULTS_PAGE, "figures", f"The figures come from {RESULTS['figures']}."
    for name, sitting in SPEED["sittings"].items():
        yield SPEED_PAGE, f"speed-{name}", compare_speed.speed_table(sitting)
        if f"<!-- speed-{name}-run:start -->" in SPEED_PAGE.read_text():
            yield SPEED_PAGE, f"speed-{name}-run", compare_speed.sitting_line(sitting)
    yield README, "exact-nll", time_likelihood.nll_sentence(LIKELIHOOD)
    yield RESULTS_PAGE, "exact-nll", time_likelihood.nll_table(LIKELIHOOD)


def test_generated_blocks_are_what_their_scripts_write():
    for page, name, text in generated_blocks():
        assert block(page, name) == text, f"{page.name}: {name}"


# Numbers no run measured, which prose may use freely: the recipes' own numbers are
# read from the scripts (below); these are the rest. Add a number here only if it
# is not a measurement: a loss, a time, a ratio, a size or a percentage that a run
# produced belongs in results/*.json and a held sentence.
NOT_MEASURED = {
    # architecture, shapes, grids and batch sizes tried
    "784", "256", "128", "64", "32", "28", "16", "15", "8", "4", "63", "512", "1e-4",
    # the bars, and the figures the blog and the literature publish
    "0.09", "0.090", "0.080", "0.1", "0.100", "0.094", "145", "147",
    # data sets: images, classes and labels, grey levels
    "70,000", "60,000", "12,000", "10,000", "6,000", "5,000", "4,000", "1,000", "500",
    "300", "255", "9", "6", "3", "2", "1",
    # seeds, t-SNE settings and a score's bounds, TensorBoard's port
    "1337", "0.8", "1.0", "6006",
    # the likelihood's grid (points per axis, spacing) and its cross-check's codes
    "241", "0.05",
    # dates; versions of Python, TensorFlow, CUDA, the licence; compute capability
    "2016", "2017", "2026", "25", "26", "1.5", "2.21", "3.0", "3.10", "3.15", "13",
    "8.0",
    # names of hardware: RTX 20xx/30xx/40xx, H100 80GB
    "20", "30", "40", "80",
}
# Numbers with a unit that a measurement has, which prose may use freely all the
# same: the bars in nats, a GPU's name.
NOT_MEASURED_WITH_UNIT = {"145 nats", "80GB"}
# A number, and the unit of a measurement if one follows it ("2.2x", "20 %",
# "768 MiB", "0.7 nats", "3.4 minutes"): such a number is a measurement unless it
# is held, whatever its value; a bare number may be one of NOT_MEASURED.
NUMBER = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?)"
                    r"(\s?(?:%|x\b|ms\b|s\b|seconds?\b|minutes?\b|MiB|GiB|MB|"
                    r"GB|GFLOP|nats?\b|times\b))?")


def recipe_numbers():
    numbers = set()
    for script in sorted(ROOT.glob("*.py")):
        for recipes in module_recipes(script.name).values():
            for recipe in recipes.values():
                for value in recipe.values():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        numbers.add(f"{value:g}")
    return numbers


def unheld_numbers(page):
    """The numbers of PAGE's prose that are neither in a generated block, nor in a
    held sentence, nor known not to be measurements; code and link targets aside."""
    text = page.read_text()
    for block_page, name, _ in generated_blocks():
        if block_page == page:
            text = re.sub(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", " ", text,
                          flags=re.S)
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"\b\d+\.\d+\.\d+\S*", " ", text)  # versions: 2.21.0, 0.11.2
    text = flat(text)
    for sentence in HELD.get(page, []):
        text = text.replace(flat(re.sub(r"`[^`]*`", " ", sentence)), " ")
    allowed = NOT_MEASURED | recipe_numbers()
    found = []
    for match in NUMBER.finditer(text):
        number, unit = match.groups()
        if (unit and match.group() not in NOT_MEASURED_WITH_UNIT) or \
                (not unit and number not in allowed):
            context = text[max(0, match.start() - 50):match.end() + 30]
            found.append(f"{match.group()} in '...{context}...'")
    return found


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_measured_number_is_generated_or_held(page):
    """CONTRIBUTING.md, "Numbers": a measured number outside a generated block must
    sit in a sentence this file holds to results/*.json (or to the code, for a cap)."""
    found = unheld_numbers(page)
    assert not found, f"{page.name}: numbers neither generated nor held:\n" + \
        "\n".join(found)


def test_the_trained_vaes_likelihood_passes_its_own_checks():
    """results/likelihood.json, the full-MNIST VAEs: the NLL under the negative ELBO,
    the grid's refinements within 0.05 nats, and the importance-weighted cross-check
    within 0.5 nats of the quadrature on the same digits."""
    assert LIKELIHOOD["trained"]
    for prefix, m in LIKELIHOOD["trained"].items():
        assert m["test_nll"] <= m["negative_elbo"], prefix
        first = m["first_1000_test_digits"]
        for moved in ("half_spacing", "two_sd_wider"):
            assert abs(first[moved] - first["default_grid"]) < 0.05, (prefix, moved)
        weighted = m["importance_weighted"]
        assert abs(weighted["estimate"] - weighted["exact"]) <= 0.5, prefix
