"""A saved Keras model (.keras), inspected as the zip archive it is before Keras
opens it: ``check_keras_file``, called wherever a ``.keras`` file is checked.

Keras reads a .keras file's config.json whole, builds the model it describes, then
reads the weights; members it does not know it extracts into $TMPDIR. So a small
file can make Keras take gigabytes of memory (a config that inflates, a layer that
declares billions of weights) or of disk (extra members). Everything here is read
from the zip's directory and a bounded read of config.json, before Keras sees it.
"""

import json
import math
import zipfile
import zlib

from plumbing import cli, files

MiB = files.MiB
KERAS_MAX_BYTES = 64 * MiB  # our models' files take a few MB at most
# The members Keras writes, and the most each may declare, uncompressed.
MEMBERS = {"config.json": 4 * MiB, "metadata.json": 1 * MiB,
           "model.weights.h5": 256 * MiB}
# The most weights (numbers) a model may declare: 256 MiB as float32, far more
# than any model of this collection, far less than would strain a computer.
MAX_WEIGHTS = 64 * MiB


def check_keras_file(path):
    """Refuse ``path`` (a one-line cli.UserError) unless Keras can load it within
    bounds; return its config (a dict).

    It must be a regular file of at most 64 MiB (``files.open_regular``), a zip
    archive of Keras' three members and no other (config.json, metadata.json,
    model.weights.h5), each declaring an uncompressed size within its cap, with a
    config.json that is a JSON object whose layers declare at most MAX_WEIGHTS
    weights in all. Nothing is extracted.
    """
    what = "a Keras model (.keras)"
    with files.open_regular(path, KERAS_MAX_BYTES, what) as f:
        try:
            with zipfile.ZipFile(f) as archive:
                infos = archive.infolist()
                _check_members(path, infos)
                with archive.open("config.json") as member:
                    text = member.read(MEMBERS["config.json"] + 1)
        except cli.UserError:
            raise
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
                RuntimeError, NotImplementedError) as error:
            # RuntimeError: an encrypted member; NotImplementedError: a compression
            # method zipfile lacks.
            raise cli.UserError(f"{path}: not readable as {what} "
                                f"({_words(error)})") from None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise cli.UserError(f"{path}: its config.json is not readable JSON "
                            f"({_words(error)})") from None
    if not isinstance(config, dict):
        raise cli.UserError(f"{path}: its config.json is not a model's config")
    weights = declared_weights(config)
    if weights > MAX_WEIGHTS:
        raise cli.UserError(f"{path}: its layers declare {weights:,} weights, more "
                            f"than the {MAX_WEIGHTS:,} a model may have here; "
                            "refused before building it")
    return config


def _words(error):
    return " ".join(str(error).split())[:200] or type(error).__name__


def _check_members(path, infos):
    names = [info.filename for info in infos]
    extra = [name for name in names if name not in MEMBERS]
    if extra or len(names) != len(set(names)):
        shown = ", ".join(repr(name) for name in (extra or names)[:3])
        raise cli.UserError(f"{path}: holds {len(names)} members ({shown}, ...), "
                            "not only Keras' config.json, metadata.json and "
                            "model.weights.h5; refused, as Keras would extract them")
    if "config.json" not in names:
        raise cli.UserError(f"{path}: no config.json in it; not a Keras model file")
    for info in infos:
        if info.file_size > MEMBERS[info.filename]:
            raise cli.UserError(f"{path}: its {info.filename} declares "
                                f"{info.file_size / MiB:,.0f} MiB uncompressed, more "
                                f"than {MEMBERS[info.filename] / MiB:,.0f} MiB; "
                                "refused")


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) \
        and value > 0 else 0


def _dims(value):
    """The positive integers of a shape or a size (an int or a list of them)."""
    values = value if isinstance(value, list) else [value]
    return [_int(v) for v in values]


def declared_weights(config):
    """How many weights the layers in a Keras config would make, counted from
    their settings (Dense units, convolution filters and kernels, embeddings) and
    the input shapes Keras records; an input of unknown width counts as the widest
    size anywhere in the config, so that the count errs high."""
    layers, stack = [], [config]
    while stack:  # not recursive: a config may nest deeper than Python recurses
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
            if isinstance(node.get("class_name"), str) \
                    and isinstance(node.get("config"), dict):
                build = node.get("build_config")
                shape = build.get("input_shape") if isinstance(build, dict) else None
                layers.append((node["config"], shape))
    widest = max([1] + [max(_dims(c.get(key)) or [0]) for c, _ in layers
                        for key in ("units", "filters", "output_dim")]
                 + [math.prod(d for d in _dims(c.get("batch_shape")) if d)
                    for c, _ in layers if isinstance(c.get("batch_shape"), list)])
    total = 0
    for layer, shape in layers:
        inputs = (_dims(shape)[-1:] or [0])[0] if isinstance(shape, list) else 0
        inputs = inputs or widest
        if "units" in layer:
            units = _int(layer["units"])
            total += units * inputs + units
        if "filters" in layer:
            filters = _int(layer["filters"])
            kernel = math.prod(d for d in _dims(layer.get("kernel_size")) if d)
            total += filters * kernel * inputs + filters
        if "input_dim" in layer and "output_dim" in layer:
            total += _int(layer["input_dim"]) * _int(layer["output_dim"])
    return total
