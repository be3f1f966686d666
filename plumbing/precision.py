"""Mixed precision: which dtype policy to train in, and float32 copies to save.

Imported by ``plumbing.training`` after Keras, whose backend it asks about GPUs.
"""

import keras

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def choose_precision(requested):
    """The dtype policy to train with, and why, in a few words.

    Mixed precision pays off only where the hardware multiplies 16-bit numbers
    natively: bfloat16 on CPUs with AMX (Intel Xeon since Sapphire Rapids) and on
    GPUs of compute capability 8 and up, float16 on GPUs of 7.x. Elsewhere it is
    slower than float32, much slower on a CPU (results/tuning.md), so auto keeps
    float32 there.
    """
    if requested != "auto":
        return requested, "as asked"
    capability = _gpu_compute_capability()
    if capability and capability >= (8, 0):
        return "mixed_bfloat16", f"auto: a GPU of compute capability {capability}"
    if capability and capability >= (7, 0):
        return "mixed_float16", f"auto: a GPU of compute capability {capability}"
    if capability:
        return "float32", "auto: this GPU has no fast 16-bit arithmetic"
    if _cpu_has_amx_bf16():
        return "mixed_bfloat16", "auto: this CPU has AMX-BF16"
    return "float32", "auto: no GPU, and this CPU has no AMX-BF16"


def _cpu_has_amx_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split()
                       for line in f)
    except OSError:  # not Linux: no way to tell, so no
        return False


def _gpu_compute_capability():
    """(major, minor) of the first GPU the backend sees, or None."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
            return details.get("compute_capability")
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return tuple(int(n) for n in device.compute_capability.split("."))
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_capability()
    except Exception:  # noqa: BLE001 - a driver that cannot answer: treat as no GPU
        return None
    return None


def float32_model(model):
    """``model`` with every layer computing in float32, sharing its trained weights.

    A model trained under mixed precision saves its layers' 16-bit policies; this
    copy is what gets saved, so that the encoder and decoder reload in float32 on
    any backend and hardware.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "dtype": "float32"}))
    copy.set_weights(model.get_weights())
    return copy
