"""Reload a saved encoder and check it reproduces the saved features.

``reload_check.py OUT_DIR/PREFIX`` loads PREFIX_encoder.keras and PREFIX_decoder.keras
with ``keras.models.load_model`` in its default safe mode (on whatever KERAS_BACKEND
is set), encodes the saved test images and compares with PREFIX_features.pickle.
The models must compute in float32, whatever precision they were trained in.
"""

import json
import pickle
import sys

import keras
import numpy as np

prefix = sys.argv[1]
encoder = keras.models.load_model(f"{prefix}_encoder.keras")
decoder = keras.models.load_model(f"{prefix}_decoder.keras")
with open(f"{prefix}_features.pickle", "rb") as f:
    features = pickle.load(f)
with open(f"{prefix}_images.pickle", "rb") as f:
    images = pickle.load(f)

assert all(layer.dtype_policy.name == "float32" for model in (encoder, decoder)
           for layer in model.layers), "the saved models do not compute in float32"
x_test = (images / np.float32(255)).reshape(len(images), *encoder.input_shape[1:])
codes = encoder.predict(x_test, verbose=0)
codes = codes[0] if isinstance(codes, (list, tuple)) else codes
assert codes.dtype == np.float32
if json.loads(open(f"{prefix}_metrics.json").read())["precision"] == "float32":
    np.testing.assert_allclose(codes, features, rtol=1e-3, atol=1e-4)
else:
    # Trained in mixed precision, the features came from 16-bit arithmetic (about
    # three significant digits per number); the saved float32 models compute them
    # more exactly, so the two agree as vectors, not digit for digit.
    error = np.linalg.norm(codes - features) / np.linalg.norm(features)
    assert error < 0.05, f"relative difference {error:.3f}"
images = decoder.predict(features[:5], verbose=0)
assert images.shape[0] == 5 and images.dtype == np.float32 and np.isfinite(images).all()
print(f"features match ({keras.backend.backend()} backend)")
