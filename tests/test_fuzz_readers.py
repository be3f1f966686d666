"""Property-based tests (Hypothesis) of the readers of files a user hands over: the
.npz reader, a run's metrics record and the pickle reader, fed real files that are
then mutated (bytes overwritten or inserted) and truncated.

Each must return a valid result or raise its one documented error (cli.UserError;
``files.read_record`` returns None instead), never another exception, never hang
(an alarm per example), and never take more than 3 GiB of memory beyond what the
test process already holds (an address-space limit while the examples run).
"""

import contextlib
import io
import json
import pickle
import resource
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from plumbing import cli, data, files, npz

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from plumbing.loading import load_pickle  # noqa: E402

# A failing example's bytes are long: Hypothesis warns that their repr is.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
SECONDS_PER_EXAMPLE = 10
EXTRA_MEMORY = 3 << 30
# Derandomized: the same examples on every run, so that a failure is reproducible.
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def bounded():
    """Fail an example that takes too long, and cap the address space."""
    def timeout(signum, frame):
        raise TimeoutError("a reader hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _address_space()
    if size is not None:
        resource.setrlimit(resource.RLIMIT_AS, (size + EXTRA_MEMORY, hard))
    signal.alarm(SECONDS_PER_EXAMPLE)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space():
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return None


@st.composite
def mutated(draw, original):
    """``original`` with a few bytes overwritten or inserted, maybe cut short."""
    content = bytearray(original)
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(content)))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if draw(st.booleans()):
            content[position:position + len(chunk)] = chunk
        else:
            content[position:position] = chunk
    if draw(st.booleans()):
        del content[draw(st.integers(0, len(content))):]
    return bytes(content)


def npz_bytes(compression):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    arrays = {"x_train": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "y_train": np.arange(12) % 10,
              "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              "y_test": np.arange(10) % 10}
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


FOLDER = Path(tempfile.mkdtemp(prefix="fuzz-readers-"))
NPZ = {kind: npz_bytes(kind) for kind in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)}
RECORD = json.dumps({"script": "simple_autoencoder.py", "test_loss": 0.1,
                     "data": {"name": "mnist_sample", "source": "sample"},
                     "history": {"loss": [0.3, 0.2], "val_loss": [0.3, 0.2]},
                     "files": {"simple_autoe_features.pickle": "0" * 64}}).encode()
PICKLES = [pickle.dumps(np.arange(24, dtype=np.float32).reshape(4, 6), protocol=p)
           for p in (2, 4, 5)]


def written(content, name):
    path = FOLDER / name
    path.write_bytes(content)
    return path


@FUZZ
@given(st.sampled_from(sorted(NPZ)).flatmap(lambda kind: mutated(NPZ[kind])))
def test_the_npz_reader_gives_arrays_or_one_error(content):
    path = written(content, "data.npz")
    with bounded():
        try:
            arrays = npz.read_npz(path)
            data.check_arrays(arrays, f"--data {path}")
        except cli.UserError as error:
            assert "\n" not in str(error)
            return
    (x_train, y_train), (x_test, y_test) = arrays
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (28, 28)
    assert len(y_test) == len(x_test) and 0 <= y_test.min() <= y_test.max() <= 9


@FUZZ
@given(mutated(RECORD))
def test_the_metrics_reader_gives_a_dict_or_one_error(content):
    path = written(content, "simple_autoe_metrics.json")
    with bounded():
        record = files.read_record(path)
        assert record is None or isinstance(record, dict)
        try:
            assert isinstance(files.read_json(path), dict)
        except cli.UserError as error:
            assert record is None and "\n" not in str(error)


@FUZZ
@given(st.sampled_from(PICKLES).flatmap(mutated))
def test_the_pickle_reader_gives_an_array_or_one_error(content):
    path = written(content, "deep_autoe_features.pickle")
    with bounded():
        try:
            value = load_pickle(path)
        except cli.UserError as error:
            assert "\n" not in str(error)
            return
    assert isinstance(value, (np.ndarray, np.generic))
