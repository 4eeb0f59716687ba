"""The device check: the CUDA tests and the GPU timings in one run, results to a file.

What it does
------------
1. Runs the CUDA tests (``pytest -m cuda tests``) and records their summary line.
2. On ``--device`` (default ``cuda``) and, for reference, on the CPU, in this
   process, one after the other (``torch.cuda.synchronize`` around every timing,
   best of ``--repeat``, after a warm-up):

   - ``transform`` and ``inverse_transform`` of a closed-form 16x model
     (``latent_dim=12, levels=3``) on random RGB batches, numpy in and out
     (transfers included: what a user gets), with the linear decoder
     (``decoder_width=0``) and with a trained-size residual decoder (width 64,
     depth 2, random weights, so it is not skipped);
   - the fused encoder module alone on a tensor already on the device;
   - ``compress`` / ``decompress`` of the three bundled held-out photos
     (entropy coding always runs on the CPU);
   - training steps per second (``max_iter`` steps, batch 16, crops of 128,
     no early stopping), from two fits that differ only in ``max_iter``.

3. Checks the device against the CPU: the fraction of equal latents, and the
   largest difference of the reconstructions.
4. Writes ``gpu_check.{md,json}`` into ``--out`` (``benchmarks/results``).

Run on a machine with a GPU: ``python benchmarks/gpu_check.py`` (a few minutes
on one H100). ``--device cpu --quick`` runs the same code on the CPU in seconds;
``tests/test_gpu_check.py`` does, so the script keeps working where no GPU is at
hand.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    activate_refinement,
    benchmark_parser,
    best_time,
    device_sync,
    markdown_table,
)
from _machine import machine_line

from sklearn_walloc import WallocCodec, WallocTransformer
from sklearn_walloc.datasets import load_photos

ROOT = Path(__file__).resolve().parents[1]


def _cuda_tests():
    """Summary line of the CUDA tests (all skipped on a machine without CUDA)."""
    # The project's addopts already hold -q; twice would drop the closing line.
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-rfE", "-m", "cuda"]
    proc = subprocess.run(
        [*cmd, "tests"], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    # pytest's closing line ("3 passed, 1 skipped in 2.1s"); -ra lists come before.
    closing = [
        ln.strip("= ")
        for ln in proc.stdout.splitlines()
        if re.search(r"\d+ (passed|failed|skipped|deselected|error)", ln)
        and " in " in ln
    ]
    return {"exit_code": proc.returncode, "summary": closing[-1] if closing else ""}


def _models(device, photos):
    params = dict(latent_dim=12, levels=3, max_iter=0, random_state=0, device=device)
    linear = WallocCodec(decoder_width=0, **params).fit(photos)
    wide = activate_refinement(WallocCodec(**params).fit(photos), scale=0.05)
    return {"linear decoder": linear, "width-64 decoder": wide}


def _encoder_module_seconds(model, X, time):
    """Seconds of the fused encoder module alone on a tensor already on the device.

    Private on purpose: ``transform`` includes the host-device transfers and
    numpy conversion; the device's own encoder speed needs the runtime module.
    """
    module, fused, dev = model._runtime_model()
    t = torch.from_numpy(np.moveaxis(X, -1, 1).astype(np.float32)).to(dev)
    t = t.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return time(lambda: module.encode_fused(t, fused))


def _time_device(device, args, batches, photos, held):
    rows, latents, recons = [], {}, {}
    sync = device_sync(device)

    def time(fn):
        return best_time(fn, args.repeat, warmup=1, sync=sync)

    def row(name, shape, what, mp, seconds):
        rows.append({"device": device, "model": name, "input": shape,
                     "what": what, "MP/s": mp / seconds})  # fmt: skip

    for name, model in _models(device, photos).items():
        for shape, X in batches.items():
            mp = X.shape[0] * X.shape[1] * X.shape[2] / 1e6
            Z = latents[name, shape] = model.transform(X)
            recons[name, shape] = model.inverse_transform(Z)
            row(name, shape, "transform", mp, time(lambda: model.transform(X)))
            row(name, shape, "inverse_transform", mp,
                time(lambda: model.inverse_transform(Z)))  # fmt: skip
        shape, X = next(iter(batches.items()))
        mp = X.shape[0] * X.shape[1] * X.shape[2] / 1e6
        row(name, shape, "encoder module (on device)", mp,
            _encoder_module_seconds(model, X, time))  # fmt: skip
        mp_held = sum(x.shape[0] * x.shape[1] for x in held) / 1e6
        blobs = model.compress(held)
        row(name, "held-out photos", "compress", mp_held,
            time(lambda: model.compress(held)))  # fmt: skip
        row(name, "held-out photos", "decompress", mp_held,
            time(lambda: model.decompress(blobs, restore=False)))  # fmt: skip
    return rows, latents, recons


def _training_steps(device, photos, steps):
    crops = [p[:128, :128] for p in photos]
    times = {}
    for n in (0, steps):
        model = WallocTransformer(
            latent_dim=12,
            levels=3,
            max_iter=n,
            batch_size=16,
            crop_size=128,
            early_stopping=False,
            random_state=0,
            device=device,
        )
        with Timer(device_sync(device)) as t:
            model.fit(crops)
        times[n] = t.s
    return steps / max(times[steps] - times[0], 1e-9)


def markdown(report):
    tests, steps = report["cuda_tests"], report["training_steps"]
    gpu = f" ({report['gpu']})" if "gpu" in report else ""
    lines = [
        "# Device check (`benchmarks/gpu_check.py`)",
        "",
        f"Machine: {machine_line(report['machine'])}; device: {report['device']}{gpu}",
        "",
        "CUDA tests: "
        + ("not run" if tests is None
           else f"`{tests['summary']}` (exit {tests['exit_code']})"),
        "",
        markdown_table(
            ["device", "model", "input", "what", "MP/s"],
            [[*list(r.values())[:4], f"{r['MP/s']:.1f}"] for r in report["rows"]],
        ),
        "",
        f"Training steps per second (batch 16, 128x128 crops, {steps} steps): "
        + ", ".join(f"{k} {v:.2f}" for k, v in report["training_steps_per_s"].items()),
    ]  # fmt: skip
    if "agreement" in report:
        lines += ["", "Device against CPU:", ""] + [
            f"- {k}: {v['equal_latents']:.4%} equal latents, largest reconstruction "
            f"difference {v['max_reconstruction_diff']:.3g}"
            for k, v in report["agreement"].items()
        ]
    return "\n".join(lines)


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu to check the script")
    run = BenchmarkRun("gpu_check", args)
    rng = np.random.default_rng(0)
    sizes = [(1, 128, 128)] if args.quick else [(8, 512, 512), (1, 2048, 2048)]
    batches = {
        f"{n}x{h}x{w}": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        for n, h, w in sizes
    }
    photos = load_photos(split="fit")
    held = load_photos(split="holdout")
    if args.quick:
        photos, held = [p[:96, :128] for p in photos], [h[:64, :64] for h in held]
    steps = 3 if args.quick else 50
    report = {"machine": run.machine, "device": args.device, "training_steps": steps}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
    report["cuda_tests"] = None if args.no_tests else _cuda_tests()
    rows, lat, rec = _time_device(args.device, args, batches, photos, held)
    steps_dev = _training_steps(args.device, photos, steps)
    if args.device != "cpu":
        cpu_rows, cpu_lat, cpu_rec = _time_device("cpu", args, batches, photos, held)
        rows += cpu_rows
        report["agreement"] = {
            " / ".join(k): {
                "equal_latents": float(np.mean(lat[k] == cpu_lat[k])),
                "max_reconstruction_diff": float(np.abs(rec[k] - cpu_rec[k]).max()),
            }
            for k in lat
        }
        steps_cpu = _training_steps("cpu", photos, steps)
    else:
        steps_cpu = steps_dev
    report["training_steps_per_s"] = {args.device: steps_dev, "cpu": steps_cpu}
    report["rows"] = rows
    run.finish(report, markdown, rows)


if __name__ == "__main__":
    main()
