"""`auto` dtype, device, accelerator and precision -> what the machine a run lands on computes well.

Rules (`resolve`):
- `model.device: auto`: cuda where torch sees a CUDA device and `trainer.accelerator` is not
  cpu, else cpu (a gpu accelerator on a machine without one is then refused by name in
  preflight). `spread` lets accelerate place a checkpoint's layers over the visible GPUs (a
  model larger than one card).
- `model.dtype: auto`: on CUDA, bfloat16 where `torch.cuda.is_bf16_supported()`, else float16;
  on a CPU, bfloat16 where it computes it natively (AMX-BF16 or AVX512-BF16, as torch reports its
  features), else float32 (elsewhere torch emulates bfloat16 matrix products, many times slower
  than float32). The checkpoint's own stored dtype is not consulted: bfloat16 has float32's range,
  so float16- and float32-stored weights run in it; on a GPU without bfloat16, float16 is the
  only fast half dtype (a checkpoint trained in bfloat16 can overflow there: model.dtype=float32).
  An explicit `trainer.precision` that a half dtype would contradict (32-true) makes it float32.
- `trainer.precision: auto` follows the model's dtype: bf16-mixed, 16-mixed or 32-true (the
  frozen model in its dtype, trained parts in float32 under autocast).
- `trainer.accelerator: auto` follows the model's device: gpu for cuda (and spread), else cpu.

An explicit half dtype on a CPU without native support is kept; `slow_half_warning` measures
once per machine (cached under `vzexp.paths.cache_dir()`) how much slower a matrix product is in
it than in float32 and says how to switch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("vzexp")

AUTO = "auto"
SPREAD = "spread"  # model.device: accelerate's device_map="auto" over the visible GPUs
HALF_DTYPES = ("bfloat16", "float16")
# the CPU features (torch's names, as /proc/cpuinfo spells them) that compute a half dtype natively
NATIVE_CPU_FEATURES = {
    "bfloat16": ("amx_bf16", "avx512_bf16"),
    "float16": ("amx_fp16", "avx512_fp16"),
}
MIXED_PRECISION = {"bfloat16": "bf16-mixed", "float16": "16-mixed", "float32": "32-true"}
# the model dtypes each explicit trainer.precision trains with (check_tune_precision's rule)
DTYPES_FOR_PRECISION = {
    "32-true": ("float32",),
    "32": ("float32",),
    "64-true": ("float32",),
    "bf16-mixed": ("bfloat16", "float32"),
    "16-mixed": ("float16", "float32"),
    "bf16-true": ("bfloat16", "float32"),
    "16-true": ("float16", "float32"),
}
# the probe: a matrix product small enough to take milliseconds even where bfloat16 is emulated
PROBE_SHAPE = (128, 256, 512)
PROBE_SECONDS = 0.2  # rounds of both dtypes repeat until this much time has passed,
PROBE_ROUNDS = (3, 200)  # but at least and at most this many rounds


def cpu_features() -> dict[str, object]:
    """The CPU's name and instruction-set features as torch reports them (cpuinfo), else as
    Linux's /proc/cpuinfo lists them, else only the name; plus `aten_capability`, the vector
    level torch dispatches its kernels at (`ATEN_CPU_CAPABILITY` can lower it below the CPU's)."""
    features = _hardware_features()
    features["aten_capability"] = torch.backends.cpu.get_cpu_capability()
    return features


def _hardware_features() -> dict[str, object]:
    report = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if report is not None:
        try:
            return dict(report())
        except RuntimeError:
            pass
    features: dict[str, object] = {"cpu_name": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return features
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            features["cpu_name"] = value.strip()
        elif key.strip() in ("flags", "Features"):
            features.update({flag: True for flag in value.split()})
            break
    return features


def cpu_native(dtype: str, features: dict[str, object] | None = None) -> bool:
    """Whether this CPU computes `dtype` in hardware (float32 always): one of its native features,
    and torch dispatching at the AVX-512 level that uses them (at a lowered ATEN_CPU_CAPABILITY
    the half dtype runs emulated, many times slower than float32)."""
    if dtype not in NATIVE_CPU_FEATURES:
        return True
    features = cpu_features() if features is None else features
    if features.get("aten_capability", "AVX512") != "AVX512":
        return False
    return any(features.get(name) is True for name in NATIVE_CPU_FEATURES[dtype])


def cpu_capability(features: dict[str, object] | None = None) -> str:
    """torch's vector capability (AVX2, AVX512, ...) and the half-precision features present,
    e.g. `AVX512 avx512_bf16` or `AVX2`."""
    features = cpu_features() if features is None else features
    native = [n for names in NATIVE_CPU_FEATURES.values() for n in names if features.get(n) is True]
    return " ".join([torch.backends.cpu.get_cpu_capability(), *native])


def cuda_available() -> bool:
    return torch.cuda.is_available()


def cuda_bf16() -> bool:
    return torch.cuda.is_bf16_supported()


def on_cuda(device: str) -> bool:
    return device == SPREAD or device.startswith("cuda")


def resolve_device(device: str, accelerator: str) -> str:
    if device != AUTO:
        return device
    return "cpu" if accelerator == "cpu" or not cuda_available() else "cuda"


def machine_dtype(device: str) -> str:
    """The dtype this device computes fastest without losing float32's range where it can."""
    if on_cuda(device):
        return "bfloat16" if cuda_bf16() else "float16"
    if device == "cpu" and cpu_native("bfloat16"):
        return "bfloat16"
    return "float32"


def resolve_dtype(dtype: str, device: str, precision: str) -> str:
    if dtype != AUTO:
        return dtype
    chosen = machine_dtype(device)
    allowed = DTYPES_FOR_PRECISION.get(precision)
    if allowed and chosen not in allowed:
        return "float32"
    return chosen


def resolve_precision(precision: str, dtype: str) -> str:
    return MIXED_PRECISION.get(dtype, "32-true") if precision == AUTO else precision


def resolve_accelerator(accelerator: str, device: str) -> str:
    if accelerator != AUTO:
        return accelerator
    return "gpu" if on_cuda(device) and cuda_available() else "cpu"


@dataclass(frozen=True)
class Resolved:
    dtype: str
    device: str
    accelerator: str
    precision: str


def resolve(dtype: str, device: str, accelerator: str, precision: str) -> Resolved:
    """Every `auto` among the four settings -> a concrete value for this machine (module doc)."""
    device = resolve_device(str(device), str(accelerator))
    dtype = resolve_dtype(str(dtype), device, str(precision))
    return Resolved(
        dtype=dtype,
        device=device,
        accelerator=resolve_accelerator(str(accelerator), device),
        precision=resolve_precision(str(precision), dtype),
    )


def run_parameters(dtype: str, device: str, accelerator: str, precision: str) -> dict[str, str]:
    """The resolved settings and what the machine reported, as run parameters (dotted keys)."""
    params = {
        "model.dtype": str(dtype),
        "model.device": str(device),
        "trainer.accelerator": str(accelerator),
        "trainer.precision": str(precision),
        "hardware.cpu_capability": cpu_capability(),
    }
    if cuda_available():
        params["hardware.cuda"] = torch.cuda.get_device_name(0)
        params["hardware.cuda_bf16"] = str(cuda_bf16()).lower()
    return params


def measure_slowdown(dtype: str) -> float:
    """The fastest of repeated matrix products in `dtype` over the fastest in float32, the two
    timed in alternation so that other load on the machine affects both alike."""
    m, k, n = PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    pairs = {d: (a.to(d), b.to(d)) for d in (torch.float32, getattr(torch, dtype))}
    best = {}
    for d, (x, y) in pairs.items():
        x @ y  # warm-up: kernels chosen, buffers allocated
        best[d] = float("inf")
    rounds, begin = 0, time.perf_counter()
    while rounds < PROBE_ROUNDS[0] or (
        rounds < PROBE_ROUNDS[1] and time.perf_counter() - begin < PROBE_SECONDS
    ):
        for d, (x, y) in pairs.items():
            start = time.perf_counter()
            x @ y
            best[d] = min(best[d], time.perf_counter() - start)
        rounds += 1
    return best[getattr(torch, dtype)] / best[torch.float32]


def probe_key(features: dict[str, object] | None = None) -> str:
    """Names this machine's probe results: the CPU's name and features and the torch version
    (a torch release can change its CPU kernels)."""
    features = cpu_features() if features is None else features
    text = json.dumps([sorted((str(k), str(v)) for k, v in features.items()), torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe_path() -> Path:
    from vzexp.paths import cache_dir

    return cache_dir() / "hardware" / f"cpu-probe-{probe_key()}.json"


def cpu_slowdown(dtype: str) -> float:
    """How many times longer a matrix product takes in `dtype` than in float32 on this CPU;
    measured once per machine and dtype, then read from the cache."""
    path = probe_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if dtype in cached.get("slowdown", {}):
        return float(cached["slowdown"][dtype])
    ratio = measure_slowdown(dtype)
    cached.setdefault("slowdown", {})[dtype] = ratio
    cached.update(cpu=str(cpu_features().get("cpu_name")), torch=torch.__version__)
    try:
        from vzexp.atomic import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(cached, indent=1))
    except OSError as exc:  # an unwritable cache costs one probe per run, nothing more
        log.debug("hardware probe not cached at %s: %s", path, exc)
    return ratio


def slow_half_warning(dtype: str, device: str, precision: str) -> str | None:
    """One line when a half dtype (the model's, or the autocast of trainer.precision) runs on a
    CPU that does not compute it natively: how much slower it measured than float32 here, and
    how to switch. None where there is nothing to warn about."""
    if device != "cpu":
        return None
    half = dtype if dtype in HALF_DTYPES else None
    if half is None and precision.startswith(("bf16", "16")):
        half = "bfloat16" if precision.startswith("bf16") else "float16"
    if half is None or cpu_native(half):
        return None
    ratio = cpu_slowdown(half)
    if ratio < 1.2:  # measured about as fast as float32: nothing to switch for
        return None
    auto = machine_dtype("cpu")
    return (
        f"{half} on this CPU ({cpu_capability()}, no native {half}): a matrix product takes "
        f"{ratio:.1f}x as long as in float32 (measured here); switch with model.dtype=auto "
        f"trainer.precision=auto ({auto} and {MIXED_PRECISION[auto]} on this CPU), or "
        "model.dtype=float32 trainer.precision=32-true"
    )


def announce(dtype: str, device: str, accelerator: str, precision: str) -> dict[str, str]:
    """Logs the resolved settings (one info line) and the slow-half warning where it applies;
    returns the run parameters."""
    params = run_parameters(dtype, device, accelerator, precision)
    log.info("on this machine: %s", " ".join(f"{k}={v}" for k, v in params.items()))
    if warning := slow_half_warning(str(dtype), str(device), str(precision)):
        log.warning(warning)
    return params
