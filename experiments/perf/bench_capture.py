"""On-demand benchmark: single-layer capture + VisionZip vs the plain SDPA tower vs the reference's
eager-with-all-attention-maps path, on a CLIP ViT-L/14-336-shaped tower with random weights.

Variants (all fp32, eval, torch.no_grad, same weights and input):
  plain_sdpa       model(pixel_values, output_hidden_states=True).hidden_states[-2]   (LLaVA's classic call)
  vzexp_visionzip  VisionZip(dominant=54, contextual=10).compress(capture_layer(model, pv, layer=-2))
  reference_eager  eager model, output_attentions=True + output_hidden_states=True (every layer's
                   map kept), keys of layer -2 from a hook on its k_proj, then VisionZip selection
                   written here independently from shared docs/visionzip.md.

Diagnostic variants (only with --variants): plain_sdpa_select = output_hidden_states=[-2], which is
what transformers 5.x's own LlavaModel passes to its tower; plain_sdpa_last = no hidden states.

Timing: one untimed warm-up call per variant at the first batch size (--warmup-every-batch for all;
a first full run showed no first-call effect at B=8), then `reps` rounds; each round runs every
variant once, in an order rotated from round to round, so drift hits all variants alike. Wall time
per call (time.perf_counter); median and IQR (linear-interpolation quartiles) over rounds; ratios =
variant median / baseline median (baseline = first variant, plain_sdpa by default), plus the median
of the per-round paired ratios. Also recorded per call: this process's CPU time, and the share of
the machine's cores that OTHER processes kept busy during the call (from /proc/stat), to tell
contention from the variants' own cost. The outputs of the first timed round are checked: vzexp
must pick the same dominant indices (same order) and give the same tokens (atol 1e-4) as the
reference; its captured features must equal plain's hidden_states[-2].

Memory: one fresh subprocess per variant and batch size. In it the model is built, RSS is read
(VmRSS), the kernel's peak-RSS counter is reset to the current RSS (`echo 5 >
/proc/self/clear_refs`), one forward (the first in that process, no warm-up) is run, and the peak
(VmHWM) is read. delta = VmHWM - VmRSS before; "extra vs baseline" = variant delta -
baseline delta. getrusage ru_maxrss is recorded too but is NOT usable here: it already holds the
model-build peak, and in a child started from the (large) benchmark process it starts at the
parent's peak (Linux carries the pre-exec peak over), so its deltas read 0. If clear_refs is not writable the script falls back to ru_maxrss
deltas and says so in the JSON (`method`).

Usage (from the repo root):
  PYTHONPATH=src python experiments/perf/bench_capture.py            # full, ~6-8 min on 2 cores
  PYTHONPATH=src python experiments/perf/bench_capture.py --quick    # tiny tower, seconds
  python experiments/perf/bench_capture.py --out /tmp/r.json         # after `pip install -e .`
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import gc
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import CLIPVisionConfig, CLIPVisionModel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

try:
    import vzexp  # noqa: F401
except ImportError:  # not installed and no PYTHONPATH: use the checkout this script lives in
    sys.path.insert(0, str(REPO / "src"))

from probe import CallProbe, pct, quartiles  # noqa: E402  (experiments/perf/probe.py)

from vzexp.compress.visionzip import VisionZip  # noqa: E402
from vzexp.encoders.capture import capture_layer  # noqa: E402

DEFAULT_VARIANTS = ("plain_sdpa", "vzexp_visionzip", "reference_eager")
# Diagnostics, not run by default (select with --variants):
#   plain_sdpa_select  output_hidden_states=[-2]: keep only that hidden state. This is what
#                      transformers 5.x's own LlavaModel.get_image_features passes to the tower
#                      (@select_hidden_states("vision_feature_layer")).
#   plain_sdpa_last    no hidden states at all (the tower's bare cost, last_hidden_state only).
DIAGNOSTIC_VARIANTS = ("plain_sdpa_select", "plain_sdpa_last")
VARIANTS = DEFAULT_VARIANTS + DIAGNOSTIC_VARIANTS
LAYER = -2
QUIET = 0.10  # a round is "quiet" if other processes used <= 10% of the cores during each call
DOMINANT, CONTEXTUAL = 54, 10

FULL = dict(
    config=dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    ),
    batch_sizes=(1, 8),
    reps={1: 5, 8: 3},  # ~8 min in all on 2 cores; raise with --reps
)
QUICK = dict(
    config=dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=224,
        patch_size=14,
        projection_dim=32,
        hidden_act="quick_gelu",
    ),
    batch_sizes=(1, 8),
    reps={1: 5, 8: 3},
)


# ----------------------------------------------------------------------------------------------
# models and variants
# ----------------------------------------------------------------------------------------------
def build(cfg_kwargs: dict, attn: str, seed: int = 0) -> CLIPVisionModel:
    # Each model gets its own config object: _from_config sets _attn_implementation on the
    # config it is given, so a shared config would silently turn the sdpa model eager.
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(**copy.deepcopy(cfg_kwargs))
    model = CLIPVisionModel._from_config(cfg, attn_implementation=attn).eval()
    assert model.config._attn_implementation == attn, model.config._attn_implementation
    return model


def pixels(cfg_kwargs: dict, batch: int, seed: int = 1234) -> torch.Tensor:
    s = cfg_kwargs["image_size"]
    return torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run_plain(model, pv):
    return {"features": model(pixel_values=pv, output_hidden_states=True).hidden_states[LAYER]}


@torch.no_grad()
def run_plain_select(model, pv):
    return {"features": model(pixel_values=pv, output_hidden_states=[LAYER]).hidden_states[LAYER]}


@torch.no_grad()
def run_plain_last(model, pv):
    return {"last": model(pixel_values=pv).last_hidden_state}


_VZ = VisionZip(dominant=DOMINANT, contextual=CONTEXTUAL, layer=LAYER)


@torch.no_grad()
def run_vzexp(model, pv):
    cap = capture_layer(model, pv, layer=LAYER)
    res = _VZ.compress(cap)
    return {"tokens": res.tokens, "index": res.index, "hidden": cap.hidden}


def reference_select(hidden, attn, keys, dominant, contextual):
    """VisionZip per shared docs/visionzip.md, written independently of vzexp.
    hidden (B, T, d) output of the selection layer; attn (B, H, T, T) its attention probabilities;
    keys (B, T, hd) its key projection averaged over heads. Returns (tokens (B, D+C, d), index (B, D))."""
    b, t, d = hidden.shape
    score = attn[:, :, 0, 1:].sum(dim=1)  # CLS row, summed over heads, patches only
    top = score.topk(dominant - 1, dim=1).indices + 1
    index = torch.cat([torch.zeros(b, 1, dtype=top.dtype), top], dim=1)
    keep = torch.zeros(b, t, dtype=torch.bool)
    keep[torch.arange(b).unsqueeze(1), index] = True
    dom = torch.stack([hidden[i, keep[i]] for i in range(b)])  # ascending sequence order
    rest_h = torch.stack([hidden[i, ~keep[i]] for i in range(b)])  # (B, M, d)
    rest_k = torch.stack([keys[i, ~keep[i]] for i in range(b)])
    m = rest_h.shape[1]
    unit = rest_k / rest_k.norm(dim=-1, keepdim=True)
    step = max(1, m // contextual)
    targets = list(range(0, m, step))[:contextual]
    others = [j for j in range(m) if j not in set(targets)]
    sim = unit[:, others] @ unit[:, targets].transpose(1, 2)  # (B, M-C, C)
    assign = sim.argmax(dim=2)  # (B, M-C)
    sums = torch.zeros(b, contextual, d, dtype=hidden.dtype)
    sums.scatter_add_(1, assign.unsqueeze(-1).expand(-1, -1, d), rest_h[:, others])
    counts = torch.zeros(b, contextual, dtype=hidden.dtype)
    counts.scatter_add_(1, assign, torch.ones_like(assign, dtype=hidden.dtype))
    ctx = rest_h[:, targets] + sums / counts.clamp(min=1).unsqueeze(-1)
    return torch.cat([dom, ctx], dim=1), index


@torch.no_grad()
def run_reference(model, pv):
    layer_mod = model.encoder.layers[LAYER].self_attn
    store = {}
    handle = layer_mod.k_proj.register_forward_hook(lambda _m, _i, out: store.__setitem__("k", out))
    try:
        out = model(pixel_values=pv, output_attentions=True, output_hidden_states=True)
    finally:
        handle.remove()
    assert len(out.attentions) == model.config.num_hidden_layers, "eager tower returned no maps"
    k = store["k"]
    b, t, _ = k.shape
    keys = k.view(b, t, layer_mod.num_heads, layer_mod.head_dim).mean(dim=2)
    tokens, index = reference_select(
        out.hidden_states[LAYER], out.attentions[LAYER], keys, DOMINANT, CONTEXTUAL
    )
    return {"tokens": tokens, "index": index, "hidden": out.hidden_states[LAYER]}


RUNNERS = {
    "plain_sdpa": run_plain,
    "vzexp_visionzip": run_vzexp,
    "reference_eager": run_reference,
    "plain_sdpa_select": run_plain_select,
    "plain_sdpa_last": run_plain_last,
}


def model_for(variant, models):
    return models["eager"] if variant == "reference_eager" else models["sdpa"]


# ----------------------------------------------------------------------------------------------
# equivalence check
# ----------------------------------------------------------------------------------------------
def check_equivalence(outs: dict, batch: int) -> dict:
    info = {"batch": batch}
    if "plain_sdpa_select" in outs and "plain_sdpa" in outs:
        assert torch.equal(outs["plain_sdpa_select"]["features"], outs["plain_sdpa"]["features"])
        info["plain_select_equals_plain"] = True
    if not {"vzexp_visionzip", "reference_eager", "plain_sdpa"} <= outs.keys():
        print(
            f"  check B={batch}: {info} (vzexp-vs-reference check needs all three default variants)",
            flush=True,
        )
        return info
    vz, ref, plain = outs["vzexp_visionzip"], outs["reference_eager"], outs["plain_sdpa"]
    same_index = torch.equal(vz["index"], ref["index"])
    same_set = torch.equal(vz["index"].sort(dim=1).values, ref["index"].sort(dim=1).values)
    tok_diff = (vz["tokens"] - ref["tokens"]).abs().max().item()
    feat_diff = (vz["hidden"] - plain["features"]).abs().max().item()
    eager_diff = (ref["hidden"] - plain["features"]).abs().max().item()
    info.update(
        {
            "dominant_index_equal": same_index,
            "dominant_set_equal": same_set,
            "tokens_max_abs_diff": tok_diff,
            "capture_hidden_vs_plain_max_abs_diff": feat_diff,
            "eager_hidden_vs_plain_max_abs_diff": eager_diff,
            "tokens_shape": list(vz["tokens"].shape),
        }
    )
    print(f"  check B={batch}: {info}", flush=True)
    assert vz["tokens"].shape == (batch, DOMINANT + CONTEXTUAL, vz["hidden"].shape[-1])
    assert same_index, f"dominant indices differ between vzexp and reference: {info}"
    assert torch.allclose(vz["tokens"], ref["tokens"], atol=1e-4), f"tokens differ: {info}"
    assert torch.allclose(vz["hidden"], plain["features"], atol=1e-5), (
        f"captured features differ: {info}"
    )
    return info


# ----------------------------------------------------------------------------------------------
# contention probe: CPU time burnt by OTHER processes while one call ran
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
def summarize(times: dict, cpu: dict, foreign: dict, base: str) -> dict:
    out = {}
    plain = times[base]
    for v, xs in times.items():
        f = [x for x in foreign[v] if x is not None]
        q1, med, q3 = quartiles(xs)
        paired = [a / p for a, p in zip(xs, plain)]
        out[v] = {
            "median_s": med,
            "q1_s": q1,
            "q3_s": q3,
            "iqr_s": q3 - q1,
            "min_s": min(xs),
            "times_s": xs,
            "ratio_of_medians": med / statistics.median(plain),
            "median_paired_ratio": statistics.median(paired),
            "paired_ratios": paired,
            "cpu_s": cpu[v],
            "cpu_median_s": statistics.median(cpu[v]),
            "cpu_ratio_of_medians": statistics.median(cpu[v]) / statistics.median(cpu[base]),
            "foreign_cpu_share": foreign[v],
            "foreign_cpu_share_max": max(f) if f else None,
        }
    # Rounds in which other processes used at most QUIET of the machine during every call.
    n = len(plain)
    quiet = [
        r
        for r in range(n)
        if all(foreign[v][r] is not None and foreign[v][r] <= QUIET for v in times)
    ]
    for v, xs in times.items():
        qx = [xs[r] for r in quiet]
        out[v]["quiet_rounds"] = quiet
        if qx:
            qmed = statistics.median(qx)
            out[v]["quiet_median_s"] = qmed
            out[v]["quiet_ratio_of_medians"] = qmed / statistics.median([plain[r] for r in quiet])
            out[v]["quiet_median_paired_ratio"] = statistics.median(
                [xs[r] / plain[r] for r in quiet]
            )
    return out


# ----------------------------------------------------------------------------------------------
# memory (child process)
# ----------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(variant: str, cfg_kwargs: dict, batch_sizes, threads: int) -> dict:
    torch.set_num_threads(threads)
    model = build(cfg_kwargs, "eager" if variant == "reference_eager" else "sdpa")
    runner = RUNNERS[variant]
    res = {"variant": variant, "per_batch": {}}
    for b in batch_sizes:
        pv = pixels(cfg_kwargs, b)
        gc.collect()
        rss_before = _status_kb("VmRSS")
        maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        reset_ok = _reset_peak() and _status_kb("VmHWM") is not None
        out = runner(model, pv)
        hwm = _status_kb("VmHWM")
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        del out
        gc.collect()
        rec = {
            "rss_before_kb": rss_before,
            "ru_maxrss_before_kb": maxrss_before,
            "ru_maxrss_after_kb": maxrss_after,
            "ru_maxrss_delta_kb": maxrss_after - maxrss_before,
        }
        if reset_ok:
            rec.update(
                method="VmHWM after clear_refs reset, minus VmRSS before",
                peak_kb=hwm,
                delta_kb=hwm - rss_before,
            )
        else:
            rec.update(
                method="ru_maxrss after minus before (no peak reset)",
                delta_kb=maxrss_after - maxrss_before,
            )
        res["per_batch"][str(b)] = rec
        del pv
    return res


def measure_memory(args, cfg_kwargs, batch_sizes, threads, variants) -> dict:
    """One fresh subprocess per (variant, batch size): a B=8 forward that follows a B=1 forward
    in the same process reads a different delta (the allocator's state carries over). Run one
    after the other, except with --quick (tiny tower: started together, a smoke test only)."""
    mem = {v: {"variant": v, "per_batch": {}} for v in variants}
    jobs = []
    for b in batch_sizes:
        for v in variants:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_mem-child", v]
            cmd += ["--threads", str(threads), "--batch-sizes", str(b)]
            if args.quick:
                cmd.append("--quick")
            jobs.append((v, b, cmd))

    def start(cmd):
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    t0 = time.perf_counter()
    procs = [start(cmd) for _v, _b, cmd in jobs] if args.quick else [None] * len(jobs)
    for i, (v, b, cmd) in enumerate(jobs):
        proc = procs[i] or start(cmd)
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            sys.stderr.write(stderr)
            raise RuntimeError(f"memory child for {v} B={b} failed")
        line = [ln for ln in stdout.splitlines() if ln.startswith("MEMJSON ")][-1]
        rec = json.loads(line[len("MEMJSON ") :])["per_batch"][str(b)]
        mem[v]["per_batch"][str(b)] = rec
        print(
            f"  memory B={b} {v}: delta {rec['delta_kb'] / 1024:.0f} MiB "
            f"(RSS before {rec['rss_before_kb'] / 1024:.0f} MiB; {rec['method']}; "
            f"t={time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    return mem


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def file_sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return None


def attention_map_bytes(cfg_kwargs, batch):
    t = (cfg_kwargs["image_size"] // cfg_kwargs["patch_size"]) ** 2 + 1
    return cfg_kwargs["num_hidden_layers"] * cfg_kwargs["num_attention_heads"] * t * t * 4 * batch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny tower smoke run (seconds)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results path (default experiments/perf/results.json; results-quick.json with --quick)",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    p.add_argument(
        "--reps", type=int, default=None, help="override repetitions for every batch size"
    )
    p.add_argument("--threads", type=int, default=None, help="default: number of usable CPU cores")
    p.add_argument(
        "--no-memory", action="store_true", help="skip the per-variant memory subprocesses"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(DEFAULT_VARIANTS),
        help="variants to run (default: the three compared ones; the first is the ratio baseline)",
    )
    p.add_argument(
        "--warmup-every-batch",
        action="store_true",
        help="warm up at every batch size, not only the first (measured: no first-call effect at B=8)",
    )
    p.add_argument("--_mem-child", dest="mem_child", choices=VARIANTS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    spec = QUICK if args.quick else FULL
    cfg_kwargs = spec["config"]
    batch_sizes = tuple(args.batch_sizes or spec["batch_sizes"])
    threads = args.threads or len(os.sched_getaffinity(0))
    variants = tuple(dict.fromkeys(args.variants))
    base = variants[0]

    if args.mem_child:
        res = memory_child(args.mem_child, cfg_kwargs, batch_sizes, threads)
        print("MEMJSON " + json.dumps(res), flush=True)
        return

    torch.set_num_threads(threads)
    out_path = args.out or HERE / ("results-quick.json" if args.quick else "results.json")
    t_start = time.perf_counter()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
        f"cores {os.cpu_count()}, config {'quick' if args.quick else 'ViT-L/14-336'}",
        flush=True,
    )

    t0 = time.perf_counter()
    sdpa = build(cfg_kwargs, "sdpa")
    eager = build(cfg_kwargs, "eager", seed=99)  # different init, then overwritten:
    eager.load_state_dict(sdpa.state_dict())
    assert (
        sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    )
    models = {"sdpa": sdpa, "eager": eager}
    print(f"built models in {time.perf_counter() - t0:.1f}s", flush=True)

    results = {
        "meta": {
            "date_run": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "quick": args.quick,
            "loadavg_start": os.getloadavg(),
            "config": cfg_kwargs,
            "dominant": DOMINANT,
            "contextual": CONTEXTUAL,
            "layer": LAYER,
            "variants": variants,
            "baseline": base,
            "vzexp_src": {
                "capture.py": file_sha(Path(sys.modules["vzexp.encoders.capture"].__file__)),
                "visionzip.py": file_sha(Path(sys.modules["vzexp.compress.visionzip"].__file__)),
                "location": str(Path(sys.modules["vzexp.encoders.capture"].__file__).parent.parent),
            },
        },
        "timing": {},
        "checks": {},
        "attention_maps_all_layers_bytes": {
            str(b): attention_map_bytes(cfg_kwargs, b) for b in batch_sizes
        },
    }

    for i, b in enumerate(batch_sizes):
        reps = args.reps or spec["reps"].get(b, 3)
        pv = pixels(cfg_kwargs, b)
        if i == 0 or args.warmup_every_batch:
            for v in variants:  # warm-up: one untimed call per variant
                with CallProbe() as probe:
                    out = RUNNERS[v](model_for(v, models), pv)
                del out
                gc.collect()
                print(
                    f"  warm-up B={b} {v}: {probe.wall:.2f}s (others {pct(probe.foreign)})",
                    flush=True,
                )

        times = {v: [] for v in variants}
        cpu = {v: [] for v in variants}
        foreign = {v: [] for v in variants}
        first_round = {}  # outputs of the first timed round feed the equivalence check
        orders = []
        for r in range(reps):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            orders.append(order)
            for v in order:
                m = model_for(v, models)
                with CallProbe() as probe:
                    out = RUNNERS[v](m, pv)
                if r == 0:
                    first_round[v] = out
                del out
                times[v].append(probe.wall)
                cpu[v].append(probe.cpu)
                foreign[v].append(probe.foreign)
                gc.collect()
            print(
                f"  B={b} rep {r + 1}/{reps}: "
                + ", ".join(
                    f"{v} {times[v][-1]:.3f}s (cpu {cpu[v][-1]:.2f}s, others {pct(foreign[v][-1])})"
                    for v in variants
                ),
                flush=True,
            )
            if r == 0:
                results["checks"][str(b)] = check_equivalence(first_round, b)
                del first_round
                gc.collect()
        results["timing"][str(b)] = {
            "reps": reps,
            "orders": orders,
            "variants": summarize(times, cpu, foreign, base),
        }

    del models, sdpa, eager
    gc.collect()

    if not args.no_memory:
        print("memory (fresh subprocess per variant and batch size):", flush=True)
        mem = measure_memory(args, cfg_kwargs, batch_sizes, threads, variants)
        results["memory"] = {"per_variant": mem, "extra_vs_plain_kb": {}}
        for b in batch_sizes:
            base_kb = mem[base]["per_batch"][str(b)]["delta_kb"]
            results["memory"]["extra_vs_plain_kb"][str(b)] = {
                v: mem[v]["per_batch"][str(b)]["delta_kb"] - base_kb for v in variants
            }

    results["meta"]["total_wall_s"] = time.perf_counter() - t_start
    results["meta"]["loadavg_end"] = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"total {results['meta']['total_wall_s']:.0f}s; wrote {out_path}")


def markdown(results) -> str:
    lines = [
        "",
        "| B | variant | median (s) | IQR (s) | ratio vs baseline (medians) | median paired ratio | CPU-time ratio | max others' CPU share | peak RSS delta (MiB) | extra vs baseline (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    mem = results.get("memory")
    for b, tb in results["timing"].items():
        for v, s in tb["variants"].items():
            if mem:
                d = mem["per_variant"][v]["per_batch"][b]["delta_kb"] / 1024
                e = mem["extra_vs_plain_kb"][b][v] / 1024
                ms = f"{d:.0f} | {e:+.0f}"
            else:
                ms = "- | -"
            lines.append(
                f"| {b} | {v} | {s['median_s']:.3f} | {s['iqr_s']:.3f} | {s['ratio_of_medians']:.3f} | "
                f"{s['median_paired_ratio']:.3f} | {s['cpu_ratio_of_medians']:.3f} | "
                f"{pct(s['foreign_cpu_share_max'])} | {ms} |"
            )
    lines.append("")
    for b, tb in results["timing"].items():
        vs = tb["variants"]
        first = next(iter(vs.values()))
        q = first["quiet_rounds"]
        if all(x is None for st in vs.values() for x in st["foreign_cpu_share"]):
            lines.append(f"B={b}: contention not measurable (calls shorter than 0.2 s).")
        elif len(q) == tb["reps"]:
            lines.append(
                f"B={b}: all {tb['reps']} rounds quiet (others <= {QUIET:.0%} of the cores)."
            )
        elif q:
            ratios = ", ".join(
                f"{v} {s['quiet_ratio_of_medians']:.3f} (paired {s['quiet_median_paired_ratio']:.3f})"
                for v, s in vs.items()
            )
            lines.append(
                f"B={b}: only rounds {q} of {tb['reps']} were quiet; ratios over them: {ratios}"
            )
        else:
            lines.append(
                f"B={b}: NO quiet round (other processes loaded the machine); wall times unreliable."
            )
    lines.append("")
    for b, nbytes in results["attention_maps_all_layers_bytes"].items():
        lines.append(
            f"all layers' attention maps, B={b}: {nbytes / 1e6:.1f} MB ({nbytes / 2**20:.1f} MiB)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
