"""Encode and decode throughput and peak memory: WaLLoC against its peers.

What it measures
----------------
Megapixels per second (MP/s, median of timed runs after a warm-up) and peak
memory to encode and decode batches of RGB photos (the bundled scikit-image /
scikit-learn photos resized to ``size x size`` with Pillow's bicubic filter, as
many different photos as the batch holds), for sizes 256, 512 and 1024 and
batch sizes 1 and 8, on the CPU (and on CUDA when available):

- WaLLoC 16x (``WallocTransformer(latent_dim=12, levels=3, max_iter=0)``, the
  closed form fitted on the "fit" photos; speed does not depend on training):
  ``transform`` / ``inverse_transform`` (numpy uint8 in, float32 out, the
  estimator's padding, layout and chunking), the torch module alone on a float32
  tensor (``encode_fused``: the composite filter of WPT + 1x1 factorised into
  one strided convolution per axis, plus companding and rounding;
  ``encode_single_conv``: the same composite filter as one 64x64 strided
  convolution, the previous inference path, for comparison; ``decode``), and
  ``WallocCodec`` ``compress`` / ``decompress`` (the same model plus
  context-model entropy coding to bytes);
- WaLLoC 16x with the paper's decoder size (``decoder_width=768``,
  ``decoder_depth=2``): decoding only (its encoder is the same);
- the Stable Diffusion 3 VAE (diffusers ``AutoencoderKL`` from its published
  configuration, random weights): ``encode(x).latent_dist.mode()`` and
  ``decode(z)``;
- CompressAI ``bmshj2018-hyperprior`` (``ScaleHyperprior(128, 192)``) and
  ``cheng2020-anchor`` (``Cheng2020Anchor(128)``), random weights: the analysis
  and synthesis networks alone (``g_a`` / ``g_s``) and the full ``compress`` /
  ``decompress`` with the range coder (cheng2020's context model runs serially
  over the latent grid);
- Pillow JPEG (quality 75), WebP (quality 75) and JPEG 2000 (OpenJPEG, 16:1),
  one image at a time (Pillow's coders are single-threaded).

Each (method, size, batch) runs in its own subprocess. Peak memory is the
process's resident-set high-water mark (``VmHWM``), reset before each operation
through ``/proc/self/clear_refs`` (Linux), reported whole and above the
resident size just before the operation (model and inputs loaded): the working
memory of the operation. Where the reset is not allowed, ``ru_maxrss`` (the
high-water mark of the whole process) is used and flagged. On CUDA,
``torch.cuda.max_memory_allocated``. After the timings of the 256x256
batch-1 configuration, ``torch.utils.flop_counter.FlopCounterMode`` counts each
network's floating-point operations per pixel (2 per multiply-accumulate; for
the SD3 VAE the attention's share grows with the image size).

The machine's ceilings: memory bandwidth from a 512 MiB float32 array copy
(read + write bytes over time, best of 5) and float32 matmul GFLOP/s (4096^2
``torch.mm``, best of 3), with torch's thread count; from them and the
encoder's FLOPs per pixel, the compute-bound limit of the fused encoder (and
the memory traffic it needs at the measured rate).

The issue's targets for WaLLoC 16x on 2 CPU cores are checked at the end:
encoder >= 30 MP/s, encoder >= 100x the SD3 VAE encoder (same size and batch),
decoder >= 10x the paper-sized decoder at equal or better PSNR (PSNR of both on
the held-out photos is measured here at the closed form, where both decoders
give the same output; see the report).

Outputs ``speed.csv``, ``speed.json``, ``speed.md`` and ``speed.png`` in
``--out``. Big networks are slow on CPU: SD3 VAE and cheng2020 are timed on the
small sizes only, with few repeats (listed in the table).

Last, ``benchmarks/codec_path.py`` (also alone: ``--codec-path``) times the byte
path of the closed-form 16x codec against Pillow WebP (quality 20, method 4) on the
held-out photos, interleaved in one process, with a profile of where ``compress``
and ``decompress`` spend their time (``codec_path.md``).

Run: ``python benchmarks/speed.py`` (about 10 minutes on 2 quiet CPU cores),
``python benchmarks/speed.py --quick`` (a smoke test, about 2 minutes; its
numbers are not the results). Timings mean something only on a quiet machine:
the load average is recorded at the start and the end.
"""

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    activate_refinement,
    benchmark_parser,
    best_time,
    device_sync,
    fmt,
    load_text,
    markdown_table,
    save_figure,
    time_calls,
)
from _machine import machine_line

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SEED = 0
WALLOC = {"latent_dim": 12, "levels": 3, "max_iter": 0, "random_state": SEED}
PAPER_DECODER = {"decoder_width": 768, "decoder_depth": 2}
SIZES = (256, 512, 1024)
BATCHES = (1, 8)
QUICK_CONFIGS = {(256, 1), (512, 8)}

# family -> (ops, configurations it is run at in a full run, in a quick run)
_ALL = {(s, b) for s in SIZES for b in BATCHES}
FAMILIES = {
    "WaLLoC 16x": (
        [
            "transform",
            "inverse_transform",
            "encode_fused",
            "encode_single_conv",
            "decode",
            "compress",
            "decompress",
        ],
        _ALL,
        QUICK_CONFIGS,
    ),
    "WaLLoC 16x, paper decoder (width 768)": (
        ["inverse_transform", "decode"],
        {(256, 1), (256, 8), (512, 1)},
        {(256, 1)},
    ),
    "SD3 VAE": (["encode", "decode"], {(256, 1), (512, 1)}, {(256, 1)}),
    "bmshj2018-hyperprior": (
        ["g_a", "g_s", "compress", "decompress"],
        {(256, 1), (256, 8), (512, 1), (1024, 1)},
        {(256, 1)},
    ),
    "cheng2020-anchor": (
        ["g_a", "g_s", "compress", "decompress"],
        {(256, 1), (512, 1)},
        {(256, 1)},
    ),
    "JPEG": (["encode", "decode"], _ALL, QUICK_CONFIGS),
    "WebP": (["encode", "decode"], _ALL, QUICK_CONFIGS),
    "JPEG 2000": (["encode", "decode"], _ALL, QUICK_CONFIGS),
}
ENCODE_OPS = {
    "transform",
    "encode_fused",
    "encode_single_conv",
    "compress",
    "encode",
    "g_a",
}
# The op that stands for each family's encoder / decoder in the plot.
PLOT_OPS = {
    "WaLLoC 16x": ("transform", "inverse_transform"),
    "WaLLoC 16x, paper decoder (width 768)": (None, "inverse_transform"),
    "SD3 VAE": ("encode", "decode"),
    "bmshj2018-hyperprior": ("compress", "decompress"),
    "cheng2020-anchor": ("compress", "decompress"),
    "JPEG": ("encode", "decode"),
    "WebP": ("encode", "decode"),
    "JPEG 2000": ("encode", "decode"),
}


# ------------------------------------------------------------------ memory
def _read_status(key):
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise KeyError(key)


class PeakMemory:
    """Peak resident memory (MiB) of a block, or CUDA's peak allocation."""

    def __init__(self, device):
        self.device = device
        self.method = None

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
            self.method = "cuda max_memory_allocated"
            return self
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # resets VmHWM to the current VmRSS
            self.base = _read_status("VmRSS")
            self.method = "VmHWM (reset per op)"
        except OSError:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.method = "ru_maxrss (whole process)"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.method.startswith("VmHWM"):
            self.peak = _read_status("VmHWM")
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return False


# ------------------------------------------------------------------ timing
def time_op(fn, device, min_repeats, max_repeats, min_time):
    """Median time of timed runs after a warm-up run, and their count."""
    times = time_calls(fn, min_repeats, min_time=min_time, max_repeat=max_repeats,
                       sync=device_sync(device))  # fmt: skip
    return statistics.median(times), len(times)


def count_flops(fn):
    """Floating-point operations of one call (torch's FLOP counter).

    Run after the timings: a ``FlopCounterMode`` once entered leaves some
    torch operations slower in the same process (measured here: a WaLLoC
    decode 3-4x slower afterwards).
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    except Exception:  # its module hooks fail on some models (CompressAI)
        return None
    return counter.get_total_flops()


# ------------------------------------------------------------------ inputs
def photo_batch(size, batch):
    """``batch`` different bundled photos, resized to ``size x size``, uint8."""
    from PIL import Image

    from sklearn_walloc.datasets import load_photos

    photos, names = load_photos(return_names=True)
    out = []
    for k in range(batch):
        image = Image.fromarray(photos[k % len(photos)])
        out.append(np.asarray(image.resize((size, size), Image.BICUBIC)))
    return np.stack(out), [names[k % len(names)] for k in range(batch)]


# ---------------------------------------------------------------- the ops
def _to_tensor(images, device, scale=1.0, shift=0.0):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return (x * scale + shift).contiguous().to(device)


def _walloc_ops(family, images, device, model_dir):
    from sklearn_walloc import WallocCodec, WallocTransformer

    name = "paper" if "paper" in family else "default"
    model = WallocTransformer.load(Path(model_dir) / f"{name}.walloc")
    model.set_params(device=str(device))
    module = model.module_.to(device)
    fused = module.fused_encoder().to(device)
    single_conv = _single_conv_encoder(module, device)
    x = _to_tensor(images, device)
    with torch.inference_mode():
        q = module.encode_fused(x, fused)
    z = model.transform(images)
    ops = {
        "transform": lambda: model.transform(images),
        "inverse_transform": lambda: model.inverse_transform(z),
        "encode_fused": lambda: module.encode_fused(x, fused),
        "encode_single_conv": lambda: single_conv(x),
        "decode": lambda: module.decode(q),
    }
    sizes = {}
    if name == "default":
        codec = WallocCodec.load(Path(model_dir) / "codec.walloc")
        codec.set_params(device=str(device))
        blobs = codec.compress(images)
        sizes = {"compress": blobs, "decompress": blobs}
        ops["compress"] = lambda: codec.compress(images)
        ops["decompress"] = lambda: codec.decompress(blobs, restore=False)
    return ops, sizes


def _sd3_ops(images, device):
    from _peers import sd3_vae

    vae = sd3_vae(SEED).to(device)
    x = _to_tensor(images, device, 2 / 255, -1.0)
    with torch.inference_mode():
        z = vae.encode(x).latent_dist.mode()
    return {
        "encode": lambda: vae.encode(x).latent_dist.mode(),
        "decode": lambda: vae.decode(z).sample,
    }, {}


def _compressai_ops(family, images, device):
    from _peers import compressai_model

    model = compressai_model(family, SEED).to(device)
    x = _to_tensor(images, device, 1 / 255)
    with torch.inference_mode():
        y = model.g_a(x)
        out = model.compress(x)
    blobs = [sum(len(s[k]) for s in out["strings"]) for k in range(images.shape[0])]
    return {
        "g_a": lambda: model.g_a(x),
        "g_s": lambda: model.g_s(y),
        "compress": lambda: model.compress(x),
        "decompress": lambda: model.decompress(
            out["strings"], out["shape"], restore=False
        ),
    }, {"compress": blobs, "decompress": blobs}


def _pillow_ops(family, images):
    from _peers import pillow_decode, pillow_encode

    blobs = pillow_encode(images, family)
    return {
        "encode": lambda: pillow_encode(images, family),
        "decode": lambda: pillow_decode(blobs),
    }, {"encode": blobs, "decode": blobs}


def worker(spec):
    """Run one (family, size, batch, device); rows as JSON on stdout."""
    device = torch.device(spec["device"])
    family, size, batch = spec["family"], spec["size"], spec["batch"]
    images, _ = photo_batch(size, batch)
    if family.startswith("WaLLoC"):
        ops, blobs = _walloc_ops(family, images, device, spec["model_dir"])
    elif family == "SD3 VAE":
        ops, blobs = _sd3_ops(images, device)
    elif family in ("bmshj2018-hyperprior", "cheng2020-anchor"):
        ops, blobs = _compressai_ops(family, images, device)
    else:
        ops, blobs = _pillow_ops(family, images)
    megapixels = batch * size * size / 1e6
    rows = []
    for op in FAMILIES[family][0]:
        fn = ops[op]

        def call(fn=fn):
            with torch.inference_mode():
                fn()

        with PeakMemory(device) as mem:
            seconds, repeats = time_op(
                call, device, spec["min_repeats"], spec["max_repeats"], spec["min_time"]
            )
        coded = blobs.get(op)
        n_bytes = None
        if coded is not None:
            n_bytes = sum(b if isinstance(b, int) else len(b) for b in coded)
        rows.append(
            {
                "family": family,
                "op": op,
                "direction": "encode" if op in ENCODE_OPS else "decode",
                "device": str(device),
                "size": size,
                "batch": batch,
                "megapixels": megapixels,
                "seconds": seconds,
                "repeats": repeats,
                "mp_per_s": megapixels / seconds,
                "gflop_per_mp": None,
                "peak_mb": mem.peak,
                "working_mb": mem.peak - mem.base,
                "memory_method": mem.method,
                "bpp": None if n_bytes is None else 8 * n_bytes / (megapixels * 1e6),
                "torch_threads": torch.get_num_threads(),
            }
        )
    if (size, batch) == (256, 1) and not family.startswith("JPEG") and family != "WebP":
        # Networks' FLOPs, counted once at the smallest configuration.
        for row in rows:
            flops = count_flops(lambda op=row["op"]: _no_grad(ops[op]))
            row["gflop_per_mp"] = flops / 1e9 / megapixels if flops else None
    print("ROWS " + json.dumps(rows), flush=True)


def _no_grad(fn):
    with torch.inference_mode():
        return fn()


def run_worker(spec):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    with Timer() as t:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = t.s
    for line in proc.stdout.splitlines():
        if line.startswith("ROWS "):
            return json.loads(line[5:]), wall, None
    return [], wall, (proc.stderr or proc.stdout)[-2000:]


# ---------------------------------------------------------------- ceilings
def _copy_bandwidth():
    """GB/s of a 512 MiB float32 copy (read + write), best of 5."""
    src = np.ones(2**27, dtype=np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), 5) / 1e9


def ceilings():
    """Memory bandwidth (GB/s, copy) and float32 matmul GFLOP/s."""
    n = 4096
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    result = {
        "copy_gb_per_s": _copy_bandwidth(),
        "matmul_gflop_per_s": 2
        * n**3
        / best_time(lambda: torch.mm(a, b), warmup=1)
        / 1e9,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        a, b = a.cuda(), b.cuda()
        seconds = time_calls(lambda: [torch.mm(a, b) for _ in range(10)], 1,
                             sync=device_sync("cuda"))[0]  # fmt: skip
        result["cuda_matmul_gflop_per_s"] = 20 * n**3 / seconds / 1e9
    return result


def single_conv_kernel(module):
    """The composite filter as one dense kernel (float32) and its left padding.

    Normalisation is not folded in: the timing does not depend on it. Private
    on purpose (with :func:`_single_conv_encoder`): the previous inference path,
    which the library no longer ships, is the reference for the fused one.
    """
    from sklearn_walloc._wavelets import fused_encoder

    kernel, offset = fused_encoder(
        module.wpt, module.encoder.weight.detach().flatten(1), module.encoder.bias
    )
    return kernel.float(), offset


def _single_conv_encoder(module, device):
    """``x -> symbols`` through the single dense kernel (see above)."""
    from sklearn_walloc._wavelets import apply_fused

    kernel, offset = single_conv_kernel(module)
    kernel, bias = kernel.to(device), module.fused_encoder().to(device).bias
    return lambda x: module.bottleneck.quantize(
        apply_fused(x, kernel, bias, offset, module.stride), "symbols"
    )


def encoder_cost(model):
    """MACs per pixel of the factorised encoder, the single kernel, the cascade."""
    module = model.module_
    kernel, _ = single_conv_kernel(module)
    stride = module.stride
    # Two-step: each level filters every band along both axes (two-channel
    # filter bank, `filter_taps` MACs per output sample per axis), then the
    # 1x1 layer maps C * 4**J bands to latent_dim per stride x stride block.
    latent_dim, channels = kernel.shape[:2]
    levels = module.wpt.levels
    cascade_macs = 2 * levels * module.wpt.taps * channels
    fused = module.fused_encoder()
    return {
        "stages": [
            {"kernel": list(s.kernel.shape), "axis": s.axis, "groups": s.groups}
            for s in fused.stages
        ],
        "kernel_shape": list(kernel.shape),
        "stride": stride,
        "fused_macs_per_pixel": fused.macs_per_sample,
        "single_conv_macs_per_pixel": kernel.shape[0] * kernel[0].numel() / stride**2,
        "two_step_macs_per_pixel": cascade_macs + channels * latent_dim,
        "parameters": int(sum(p.numel() for p in module.encoder.parameters())),
        "decoder_parameters": int(sum(p.numel() for p in module.decoder.parameters())),
    }


# -------------------------------------------------------------- the models
def fit_models(model_dir):
    """WaLLoC 16x closed form, its paper-decoder twin and codec; PSNRs."""
    from sklearn_walloc import WallocCodec, WallocTransformer
    from sklearn_walloc.datasets import load_photos

    fit = load_photos(split="fit")
    holdout = load_photos(split="holdout")
    with Timer() as t:
        default = WallocTransformer(**WALLOC).fit(fit)
    fit_s = t.s
    # A closed form leaves the 768-wide residual path zero, and inference would
    # skip it: give it weights, as training would, so its cost is timed.
    paper = activate_refinement(WallocTransformer(**WALLOC, **PAPER_DECODER).fit(fit))
    codec = WallocCodec(**WALLOC).fit(fit)
    default.save(Path(model_dir) / "default.walloc")
    paper.save(Path(model_dir) / "paper.walloc")
    codec.save(Path(model_dir) / "codec.walloc")
    return default, {
        "fit_s": fit_s,
        "psnr_holdout_default": float(default.score(holdout)),
        "psnr_holdout_paper_decoder": float(paper.score(holdout)),
        "decoder_parameters_paper": int(
            sum(p.numel() for p in paper.module_.decoder.parameters())
        ),
    }


# ---------------------------------------------------------------- reporting
def speed_table(rows):
    head = ["method", "op", "device", "size", "batch", "MP/s", "s/call", "runs",
            "GFLOP/MP", "peak MiB", "working MiB", "bpp"]  # fmt: skip
    return markdown_table(head, [
        [r["family"], r["op"], r["device"], r["size"], r["batch"],
         f"**{r['mp_per_s']:.3g}**", f"{r['seconds']:.3g}", r["repeats"],
         fmt(r["gflop_per_mp"], ".3g", ""), f"{r['peak_mb']:.0f}",
         f"{r['working_mb']:.0f}", fmt(r["bpp"], ".2f", "")]
        for r in rows
    ])  # fmt: skip


def _rate(rows, family, op, size, batch, device="cpu"):
    for r in rows:
        if (r["family"], r["op"], r["size"], r["batch"], r["device"]) == (
            family,
            op,
            size,
            batch,
            device,
        ):
            return r["mp_per_s"]
    return None


_INPUT_BYTES_PER_PIXEL = 3 * 4  # float32 RGB, read once


def check_targets(rows, quality, cost, ceiling):
    """The issue's targets, each with the numbers behind it."""
    out = []
    enc = [
        (r["size"], r["batch"], r["mp_per_s"])
        for r in rows
        if r["family"] == "WaLLoC 16x"
        and r["op"] == "transform"
        and r["device"] == "cpu"
    ]
    if enc:
        best = max(enc, key=lambda t: t[2])
        out.append(
            {
                "target": "encoder (transform) >= 30 MP/s on CPU",
                "value": best[2],
                "where": f"best config {best[0]}x{best[0]}, batch {best[1]}",
                "met": best[2] >= 30,
            }
        )
        fused = [
            r["mp_per_s"]
            for r in rows
            if r["family"] == "WaLLoC 16x"
            and r["op"] == "encode_fused"
            and r["device"] == "cpu"
        ]
        flop_limit = ceiling["matmul_gflop_per_s"] / (
            2 * cost["fused_macs_per_pixel"] / 1e3
        )
        memory_limit = ceiling["copy_gb_per_s"] * 1e3 / _INPUT_BYTES_PER_PIXEL
        out.append(
            {
                "target": "fused encoder vs compute ceiling "
                "(matmul GFLOP/s / FLOPs per pixel)",
                "value": max(fused) if fused else None,
                "where": f"ceiling {flop_limit:.1f} MP/s at "
                f"{2 * cost['fused_macs_per_pixel']:.0f} FLOP/pixel; reading "
                f"its float32 RGB input once at copy speed caps it at "
                f"{memory_limit:.0f} MP/s",
                "met": None,
            }
        )
    for size, batch in [(256, 1), (512, 1)]:
        w = _rate(rows, "WaLLoC 16x", "transform", size, batch)
        s = _rate(rows, "SD3 VAE", "encode", size, batch)
        if w and s:
            out.append(
                {
                    "target": "encoder >= 100x SD3 VAE encoder",
                    "value": w / s,
                    "where": f"{size}x{size}, batch {batch}",
                    "met": w / s >= 100,
                }
            )
    for size, batch in [(256, 1), (256, 8), (512, 1)]:
        w = _rate(rows, "WaLLoC 16x", "inverse_transform", size, batch)
        p = _rate(
            rows,
            "WaLLoC 16x, paper decoder (width 768)",
            "inverse_transform",
            size,
            batch,
        )
        if w and p:
            equal = (
                quality["psnr_holdout_default"]
                >= quality["psnr_holdout_paper_decoder"] - 1e-6
            )
            out.append(
                {
                    "target": "decoder >= 10x paper-sized decoder, PSNR >=",
                    "value": w / p,
                    "where": f"{size}x{size}, batch {batch}; held-out PSNR "
                    f"{quality['psnr_holdout_default']:.2f} vs "
                    f"{quality['psnr_holdout_paper_decoder']:.2f} dB (closed form)",
                    "met": w / p >= 10 and equal,
                }
            )
    return out


def targets_table(targets):
    verdict = {None: "n/a", True: "yes", False: "**no**"}
    return markdown_table(["target", "value", "where", "met?"], [
        [t["target"], fmt(t["value"], ".3g", ""), t["where"], verdict[t["met"]]]
        for t in targets
    ])  # fmt: skip


def markdown(report):
    mode = " (QUICK SMOKE RUN, not the results)" if report["quick"] else ""
    c, cost, q = report["ceilings"], report["encoder_cost"], report["quality"]
    return "\n".join(
        [
            f"# Encode/decode speed and memory{mode}",
            "",
            f"Machine: {machine_line(report['machine'])}. Load average (1, 5, 15 "
            f"min): {load_text(report['machine'])} at the start, "
            f"{load_text(report['machine_end'])} at the end. Total runtime "
            f"{report['runtime_s']:.0f} s.",
            "",
            f"Ceilings: memory copy {c['copy_gb_per_s']:.1f} GB/s (read + write), "
            f"float32 matmul {c['matmul_gflop_per_s']:.1f} GFLOP/s "
            f"({c['torch_threads']} torch threads).",
            "",
            "WaLLoC 16x encoder: the composite filter of WPT + 1x1 factorised "
            "into one strided correlation per axis ("
            + ", then ".join(
                f"kernel {st['kernel']} along axis {st['axis']}, "
                f"{st['groups']} group(s)"
                for st in cost["stages"]
            )
            + f", stride {cost['stride']}): {cost['fused_macs_per_pixel']:.0f} "
            f"MACs per pixel, against {cost['single_conv_macs_per_pixel']:.0f} for "
            f"the same filter as one {cost['kernel_shape']} kernel "
            f"(`encode_single_conv`) and about "
            f"{cost['two_step_macs_per_pixel']:.0f} for the two-step path (WPT "
            f"cascade, then 1x1; memory-bound); {cost['parameters']} parameters "
            "in the 1x1 layer. Compute-bound limit of the fused encoder on this "
            "machine: "
            f"{c['matmul_gflop_per_s'] / (2 * cost['fused_macs_per_pixel'] / 1e3):.1f}"
            " MP/s. Decoder parameters: "
            f"{cost['decoder_parameters']} (width 64), "
            f"{q['decoder_parameters_paper']} (width 768).",
            "",
            "## Targets",
            "",
            targets_table(report["targets"]),
            "",
            "## All measurements",
            "",
            "Photos resized to size x size; MP/s = batch x size^2 / median "
            "seconds per call; GFLOP/MP from torch's FLOP counter (networks "
            "only; blank for Pillow); peak MiB: resident-set high-water mark of "
            "the operation's process, working MiB: the part above the resident "
            "size before the call (model and inputs loaded); bpp: coded bits "
            "per pixel of the produced bytes (random weights for the CompressAI "
            "models: their rates mean nothing).",
            "",
            speed_table(report["rows"]),
            "",
            *(
                [
                    "Failed configurations: "
                    + "; ".join(
                        f"{k}: {v[-300:]}" for k, v in report["errors"].items()
                    ),
                    "",
                ]
                if report["errors"]
                else []
            ),
        ]
    )


def plot(report, path):
    rows = [r for r in report["rows"] if r["device"] == "cpu"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for k, direction in enumerate(("encode", "decode")):
        ax = axes[k]
        for family, ops in PLOT_OPS.items():
            op = ops[k]
            for batch, style in ((1, "-o"), (8, "--s")):
                pts = sorted(
                    (r["size"], r["mp_per_s"])
                    for r in rows
                    if r["family"] == family and r["op"] == op and r["batch"] == batch
                )
                if op and pts:
                    color = f"C{list(PLOT_OPS).index(family)}"
                    ax.plot(
                        *zip(*pts),
                        style,
                        color=color,
                        label=f"{family} {op} (batch {batch})",
                    )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(SIZES, [str(s) for s in SIZES])
        ax.set_xlabel("image side (pixels)")
        ax.set_ylabel("MP/s (CPU)")
        ax.set_title(f"{direction} throughput")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    ax = axes[2]
    labels, values = [], []
    for family, ops in PLOT_OPS.items():
        for op in ops:
            pts = [
                r["working_mb"]
                for r in rows
                if r["family"] == family
                and r["op"] == op
                and r["size"] == 256
                and r["batch"] == 1
            ]
            if op and pts:
                labels.append(f"{family}: {op}")
                values.append(max(pts[0], 0.1))
    ax.barh(labels, values, color="C0")
    ax.set_xscale("log")
    ax.set_xlabel("working memory (MiB), 256x256, batch 1")
    ax.tick_params(axis="y", labelsize=7)
    mode = " (quick run)" if report["quick"] else ""
    fig.suptitle(f"Speed on {report['machine']['usable_cores']} CPU cores{mode}")
    save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------- main
def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--codec-path",
        action="store_true",
        help="only the byte path against Pillow WebP, with its profile "
        "(benchmarks/codec_path.py)",
    )
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.codec_path:
        _codec_path(args)
        return
    run = BenchmarkRun("speed", args)
    print(f"Machine: {machine_line(run.machine)}; load {load_text(run.machine)}")
    ceiling = ceilings()
    print(f"Ceilings: {ceiling}", flush=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    timing = (
        {"min_repeats": 1, "max_repeats": 3, "min_time": 0.3}
        if args.quick
        else {"min_repeats": 2, "max_repeats": 20, "min_time": 2.0}
    )
    rows, errors = [], {}
    with tempfile.TemporaryDirectory() as model_dir:
        model, quality = fit_models(model_dir)
        cost = encoder_cost(model)
        for device in devices:
            for family, (_, full, quick) in FAMILIES.items():
                configs = quick if args.quick else full
                for size, batch in sorted(configs, key=lambda c: (c[0], c[1])):
                    if device == "cuda" and family in ("JPEG", "WebP", "JPEG 2000"):
                        continue
                    slow = (
                        family in ("SD3 VAE", "cheng2020-anchor") or "paper" in family
                    )
                    spec = {
                        "family": family,
                        "size": size,
                        "batch": batch,
                        "device": device,
                        "model_dir": model_dir,
                        **(
                            {"min_repeats": 1, "max_repeats": 2, "min_time": 0.0}
                            if slow
                            else timing
                        ),
                    }
                    got, wall, err = run_worker(spec)
                    label = f"{family} {size}x{size} b{batch} {device}"
                    if err:
                        errors[label] = err
                        print(f"[{label}] FAILED: {err[-500:]}", flush=True)
                        continue
                    rows += got
                    rates = ", ".join(f"{r['op']} {r['mp_per_s']:.3g}" for r in got)
                    print(f"[{label}] {wall:.0f} s: {rates} MP/s", flush=True)
    report = {
        "quick": args.quick,
        "machine": run.machine,
        "ceilings": ceiling,
        "encoder_cost": cost,
        "quality": quality,
        "timing": timing,
        "rows": rows,
        "errors": errors,
    }
    report["targets"] = check_targets(rows, quality, cost, ceiling)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(report, args.out / "speed.png")
    run.finish(report, markdown, rows)
    _codec_path(args)


def _codec_path(args):
    """The issue-11 ratios (compress, decompress against WebP; inverse_transform
    against transform), measured interleaved by ``codec_path.py`` in a process
    of its own (scripts do not import each other)."""
    script = Path(__file__).with_name("codec_path.py")
    cmd = [sys.executable, str(script), "--out", str(args.out)]
    subprocess.run(cmd + (["--quick"] if args.quick else []), check=True)


if __name__ == "__main__":
    main()
