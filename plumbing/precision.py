"""The hardware's say in a run: which dtype policy to train in (mixed precision),
float32 copies to save, and the execution settings each run states.

Keras is imported only where it is needed (to ask its backend about GPUs, to copy a
model), once ``plumbing.training`` has loaded it quietly; the CPU questions need none.
"""

import os


def choose_precision(requested, on_cpu=False):
    """The dtype policy to train with, and why, in a few words.

    Mixed precision pays off only where the hardware multiplies 16-bit numbers
    natively: on GPUs (bfloat16 from compute capability 8, float16 on 7.x), and on
    CPUs with bfloat16 instructions (AVX512_BF16, or AMX-BF16) for the models that
    set ``on_cpu`` (their recipes say ``mixed_precision_on_cpu``): the
    convolutional ones, which were never slower in bfloat16 on
    such a CPU and often faster. The small dense
    models ran slower in bfloat16 there; without those instructions bfloat16 is
    slower still (results/tuning.md). So auto keeps float32 there.
    """
    if requested != "auto":
        return requested, "as asked"
    capability = gpu_compute_capability()
    if capability and capability >= (8, 0):
        return "mixed_bfloat16", f"auto: a GPU of compute capability {capability}"
    if capability and capability >= (7, 0):
        return "mixed_float16", f"auto: a GPU of compute capability {capability}"
    if capability:
        return "float32", "auto: this GPU has no fast 16-bit arithmetic"
    flags = cpu_bfloat16_flags()
    if not flags:
        return "float32", "auto: no GPU, and no bfloat16 instructions on this CPU"
    if not on_cpu:
        return "float32", "auto: on a CPU this small dense model is faster in float32"
    return "mixed_bfloat16", f"auto: this CPU has {' and '.join(flags)}"


def cpu_bfloat16_flags():
    """Which of the CPU's bfloat16 instruction sets Linux reports (none elsewhere)."""
    flags = _cpuinfo("flags").split()
    return [name.upper() for name in ("avx512_bf16", "amx_bf16") if name in flags]


def cpu_vectors():
    """The CPU's widest vector instructions as Linux reports them, in words."""
    flags = _cpuinfo("flags").split()
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else ""


def execution_settings(keras):
    """What runs the arithmetic on this backend, for the run's first line and its
    record: on TensorFlow whether its oneDNN kernels are on, and the threads per
    operation everywhere.

    oneDNN stays as TensorFlow sets it (on, on x86 CPUs): switched off, the
    convolutional models ran far slower, both with AVX-512 and with oneDNN held to
    AVX2 (docs/speed.md, "oneDNN on a CPU"). Set TF_ENABLE_ONEDNN_OPTS=0 to try
    otherwise; the line and the record then say so.
    """
    name = keras.backend.backend()
    settings = {"backend": name, "cpu_vectors": cpu_vectors() or "unknown"}
    if name == "tensorflow":
        import tensorflow as tf

        switch = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
        settings["onednn"] = "off" if switch in ("0", "false") else "on"
        threads = tf.config.threading.get_intra_op_parallelism_threads()
    elif name == "torch":
        import torch

        threads = torch.get_num_threads()
    else:
        threads = 0
    settings["threads"] = threads or os.cpu_count()
    return settings


def describe_execution(settings):
    """``execution_settings`` in a few words: "oneDNN on, 2 threads"."""
    onednn = f"oneDNN {settings['onednn']}, " if "onednn" in settings else ""
    threads = settings["threads"]
    return f"{onednn}{threads} thread{'s' if threads != 1 else ''}"


def cpu_name():
    """The CPU's model name as Linux reports it ("" elsewhere)."""
    return _cpuinfo("model name")


def _cpuinfo(field):
    """The first value of FIELD in /proc/cpuinfo, or "" where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == field:
                    return value.strip()
    except OSError:  # not Linux: no way to tell
        pass
    return ""


def gpu_compute_capability():
    """(major, minor) of the first GPU the backend sees, or None."""
    import keras

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
    except Exception:  # a driver that cannot answer: treat as no GPU
        return None
    return None


def float32_model(model):
    """``model`` with every layer computing in float32, sharing its trained weights.

    A model trained under mixed precision saves its layers' 16-bit policies; this
    copy is what gets saved, so that the encoder and decoder reload in float32 on
    any backend and hardware.
    """
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "dtype": "float32"}))
    copy.set_weights(model.get_weights())
    return copy
