"""`auto` dtype, device, accelerator and precision on each kind of machine (the probes faked), the
slow-half warning on a CPU without native bfloat16, and its per-machine cache."""

from __future__ import annotations

import logging

import pytest

from vzexp import hardware

AVX2 = {"cpu_name": "AVX2 test CPU", "avx2": True, "avx512_bf16": False, "amx_bf16": False}
AVX512_BF16 = {"cpu_name": "AVX512 test CPU", "avx2": True, "avx512_f": True, "avx512_bf16": True}
AMX = {"cpu_name": "AMX test CPU", "avx512_bf16": False, "amx_tile": True, "amx_bf16": True}


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """fake(cuda=..., bf16=..., cpu=features): this process sees that machine; the probe's
    cache goes to a fresh directory."""
    monkeypatch.setenv("VZEXP_CACHE", str(tmp_path / "cache"))

    def fake(cuda: bool = False, bf16: bool = False, cpu: dict | None = None):
        monkeypatch.setattr(hardware, "cuda_available", lambda: cuda)
        monkeypatch.setattr(hardware, "cuda_bf16", lambda: bf16)
        monkeypatch.setattr(hardware, "cpu_features", lambda: dict(cpu or AVX2))

    return fake


@pytest.mark.parametrize(
    ("cuda", "bf16", "cpu", "expected"),
    [
        (True, True, AVX2, ("cuda", "bfloat16", "gpu", "bf16-mixed")),
        (True, False, AVX2, ("cuda", "float16", "gpu", "16-mixed")),
        (False, False, AVX2, ("cpu", "float32", "cpu", "32-true")),
        (False, False, AVX512_BF16, ("cpu", "bfloat16", "cpu", "bf16-mixed")),
        (False, False, AMX, ("cpu", "bfloat16", "cpu", "bf16-mixed")),
        # the hardware has it, but torch's kernels are held at AVX2 (ATEN_CPU_CAPABILITY=avx2)
        (
            False,
            False,
            {**AVX512_BF16, "aten_capability": "AVX2"},
            ("cpu", "float32", "cpu", "32-true"),
        ),
    ],
    ids=["cuda-bf16", "cuda-no-bf16", "cpu-avx2", "cpu-avx512-bf16", "cpu-amx", "cpu-aten-avx2"],
)
def test_auto_resolves_to_the_machine(machine, cuda, bf16, cpu, expected):
    machine(cuda=cuda, bf16=bf16, cpu=cpu)
    r = hardware.resolve("auto", "auto", "auto", "auto")
    assert (r.device, r.dtype, r.accelerator, r.precision) == expected


def test_explicit_settings_are_kept_and_steer_the_auto_ones(machine):
    machine(cuda=True, bf16=True, cpu=AVX512_BF16)
    # a trainer pinned to the CPU keeps the model there, in the CPU's dtype
    assert hardware.resolve("auto", "auto", "cpu", "auto") == hardware.Resolved(
        "bfloat16", "cpu", "cpu", "bf16-mixed"
    )
    # an explicit 32-true (no autocast) makes an auto dtype float32 rather than contradict it
    assert hardware.resolve("auto", "auto", "auto", "32-true") == hardware.Resolved(
        "float32", "cuda", "gpu", "32-true"
    )
    # bf16-mixed trains a bfloat16 model: kept
    assert hardware.resolve("auto", "auto", "auto", "bf16-mixed").dtype == "bfloat16"
    # explicit values pass through; the accelerator follows an explicit device
    assert hardware.resolve("float16", "cpu", "auto", "auto") == hardware.Resolved(
        "float16", "cpu", "cpu", "16-mixed"
    )
    # spread (accelerate over the GPUs) counts as CUDA
    assert hardware.resolve("auto", "spread", "auto", "auto") == hardware.Resolved(
        "bfloat16", "spread", "gpu", "bf16-mixed"
    )


def test_validate_resolves_auto_before_every_later_check(machine):
    """validate() hands concrete values on, and task=tune's dtype/precision check sees them."""
    from hydra import compose, initialize_config_dir

    from vzexp.config import DType, register_configs, validate
    from vzexp.paths import config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        machine(cpu=AVX2)
        flat = validate(compose("config", overrides=["model.dtype=auto"]))
        machine(cpu=AMX)
        tune = ["task=tune", "train_data=shapes", "model.dtype=auto"]
        half = validate(compose("config", overrides=tune))
        pinned = validate(compose("config", overrides=[*tune, "trainer.precision=32-true"]))
        tiny = validate(compose("config"))
    assert (flat.model.dtype, flat.model.device, flat.trainer.precision) == (
        DType.float32,
        "cpu",
        "32-true",
    )
    assert (half.model.dtype, half.trainer.precision, half.trainer.accelerator) == (
        DType.bfloat16,
        "bf16-mixed",
        "cpu",
    )
    assert (pinned.model.dtype, pinned.trainer.precision) == (DType.float32, "32-true")
    # the shipped tiny default states float32: the same numbers on every CPU
    assert (tiny.model.dtype, tiny.trainer.precision) == (DType.float32, "32-true")


def test_explicit_bfloat16_on_a_cpu_without_it_warns_once_measured_and_cached(machine, caplog):
    machine(cpu=AVX2)
    probes = []

    def probe(dtype):
        probes.append(dtype)
        return 43.0

    hardware_measure = hardware.measure_slowdown
    try:
        hardware.measure_slowdown = probe
        with caplog.at_level(logging.INFO, logger="vzexp"):
            params = hardware.announce("bfloat16", "cpu", "cpu", "bf16-mixed")
            hardware.announce("bfloat16", "cpu", "cpu", "bf16-mixed")
    finally:
        hardware.measure_slowdown = hardware_measure
    assert probes == ["bfloat16"]  # the second run read the cache
    assert hardware.probe_path().is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and warnings[0] == warnings[1]
    line = warnings[0]
    assert "\n" not in line
    assert "43.0x as long as in float32" in line
    assert "model.dtype=auto trainer.precision=auto (float32 and 32-true on this CPU)" in line
    assert "model.dtype=float32 trainer.precision=32-true" in line
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "model.dtype=bfloat16" in infos[0] and "hardware.cpu_capability=" in infos[0]
    assert params["model.dtype"] == "bfloat16" and params["trainer.precision"] == "bf16-mixed"


def test_no_warning_where_the_half_dtype_is_native_or_not_slower(machine, monkeypatch):
    def no_probe(dtype):
        raise AssertionError("no probe where the CPU computes bfloat16 natively")

    monkeypatch.setattr(hardware, "measure_slowdown", no_probe)
    machine(cpu=AVX512_BF16)
    assert hardware.slow_half_warning("bfloat16", "cpu", "bf16-mixed") is None
    machine(cpu=AVX2)
    assert hardware.slow_half_warning("float32", "cpu", "32-true") is None
    assert hardware.slow_half_warning("bfloat16", "cuda", "bf16-mixed") is None
    monkeypatch.setattr(hardware, "measure_slowdown", lambda dtype: 1.05)
    assert hardware.slow_half_warning("bfloat16", "cpu", "bf16-mixed") is None
    # a float32 model under bfloat16 autocast computes its products in bfloat16 too
    hardware.probe_path().unlink()
    monkeypatch.setattr(hardware, "measure_slowdown", lambda dtype: 9.0)
    assert "9.0x" in hardware.slow_half_warning("float32", "cpu", "bf16-mixed")
    # float16 where bfloat16 is native: the warning names what auto picks there
    machine(cpu=AVX512_BF16)
    line = hardware.slow_half_warning("float16", "cpu", "16-mixed")
    assert "no native float16" in line and "(bfloat16 and bf16-mixed on this CPU)" in line


def test_the_cache_is_per_machine(machine, monkeypatch):
    machine(cpu=AVX2)
    first = hardware.probe_path()
    machine(cpu=AMX)
    assert hardware.probe_path() != first
    monkeypatch.setattr(hardware.torch, "__version__", "0.0.0-other")
    machine(cpu=AVX2)
    assert hardware.probe_path() != first


def test_the_probe_measures_a_ratio():
    """The real probe, briefly: a positive finite ratio of two timed matrix products."""
    ratio = hardware.measure_slowdown("bfloat16")
    assert 0 < ratio < float("inf")


def test_this_cpu_is_described_by_torch():
    features = hardware.cpu_features()
    assert features.get("cpu_name")
    described = hardware.cpu_capability()
    assert described.split()[0] == hardware.torch.backends.cpu.get_cpu_capability()
    assert ("avx512_bf16" in described) == (features.get("avx512_bf16") is True)
    assert features["aten_capability"] == hardware.torch.backends.cpu.get_cpu_capability()


def test_without_torchs_feature_report_the_features_come_from_proc_cpuinfo(monkeypatch):
    """Older torch releases lack torch._C._cpu._get_cpu_capability: Linux's flags stand in."""
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    reported = hardware.cpu_features()
    monkeypatch.delattr(hardware.torch._C._cpu, "_get_cpu_capability", raising=False)
    fallback = hardware.cpu_features()
    assert fallback.get("cpu_name")
    flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags"))
    assert (fallback.get("avx512_bf16") is True) == ("avx512_bf16" in flags.split())
    assert hardware.cpu_native("bfloat16", fallback) == hardware.cpu_native("bfloat16", reported)


@pytest.mark.parametrize(
    ("cpu", "dtype", "precision"),
    [(AVX2, "float32", "32-true"), (AVX512_BF16, "bfloat16", "bf16-mixed")],
    ids=["avx2", "avx512-bf16"],
)
def test_the_small_real_recipe_runs_in_the_cpus_dtype(monkeypatch, cpu, dtype, precision):
    """+experiment=build_small_real with no overrides, and each of its stages: float32 on an
    AVX2-only CPU, bfloat16 where the CPU has it (the converted parts from the real cache)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from vzexp.config import register_configs, validate
    from vzexp.paths import config_dir
    from vzexp.tasks.stages import compose_stages

    monkeypatch.setattr(hardware, "cuda_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_features", lambda: dict(cpu))
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for name in ("build_small_real", "build_small_real_stage2"):
            cfg = compose("config", overrides=[f"+experiment={name}"], return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            with open_dict(cfg):
                del cfg["hydra"]
            settings = validate(cfg)
            runs = [settings, *compose_stages(settings)]
            assert {(s.model.dtype.value, s.trainer.precision) for s in runs} == {
                (dtype, precision)
            }, name
