"""Reload a saved encoder and check it reproduces the saved features.

``reload_check.py OUT_DIR/PREFIX`` loads PREFIX_encoder.keras and PREFIX_decoder.keras
with ``keras.models.load_model`` in its default safe mode (on whatever KERAS_BACKEND
is set), encodes the sample's test images and compares with PREFIX_features.pickle.
"""

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

prefix = Path(sys.argv[1])
encoder = keras.models.load_model(f"{prefix}_encoder.keras")
decoder = keras.models.load_model(f"{prefix}_decoder.keras")
with open(f"{prefix}_features.pickle", "rb") as f:
    features = pickle.load(f)

_, (x_test, _), _ = common.load_mnist("sample")
x_test = x_test[: len(features)].reshape(len(features), *encoder.input_shape[1:])
codes = encoder.predict(x_test, verbose=0)
codes = codes[0] if isinstance(codes, (list, tuple)) else codes
np.testing.assert_allclose(codes, features, rtol=1e-3, atol=1e-4)
images = decoder.predict(features[:5], verbose=0)
assert images.shape[0] == 5 and np.isfinite(images).all()
print(f"features match ({keras.backend.backend()} backend)")
