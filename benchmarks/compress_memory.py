"""Peak memory and time of ``compress`` on large photos, before and after strips.

What it measures
----------------
``WallocCodec.from_pretrained("rgb-16x").compress([x])`` of one large uint8 RGB
image, each in a fresh child process that imports the library from a given
tree, loads the image from a ``.npy`` file, warms the model up on a 64 x 64
crop, then records its resident size (``VmRSS``, the *baseline*: the image and
the model are in memory) and, after the call, the high-water mark (``VmHWM``).
Reported: the peak above the baseline, that over the image's bytes (the
caller's uint8 array), the call's seconds, and the blob's SHA-256 (the trees
must agree byte for byte).

Trees: **before** is the library at ``BASE`` (the commit before the strip
encoder and the sliced entropy coder; exported with ``git archive`` into a
scratch folder, not a worktree), **after** this checkout. The children of the
two trees alternate case by case, so both see the same machine load; the
seconds are still rough on a shared machine (the load is recorded).

Images (made once, cached under ``~/.cache/sklearn_walloc_bench/compress_memory``):

- ``photo-20MP``: scikit-image's astronaut tiled to 4500 x 4500 (an
  edge-rich photo at 20 MP);
- ``photo-81MP``: the same tiled to 9000 x 9000;
- ``noise-20MP``: uniform uint8 noise, 4500 x 4500 (the entropy coder's worst
  case: every latent large).

Run: ``python benchmarks/compress_memory.py [--quick]`` (``--quick``: the 20 MP
photo only). Writes ``benchmarks/results/compress_memory.{md,json}``.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NEW_TREE = HERE.parent
BASE = "736b5df"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "sklearn_walloc_bench"
    / "compress_memory"
)
CASES = {"photo-20MP": 4500, "photo-81MP": 9000, "noise-20MP": 4500}

_CHILD = r"""
import hashlib, json, sys, time
import numpy as np
tree, path = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
import sklearn_walloc
assert sklearn_walloc.__file__.startswith(tree), sklearn_walloc.__file__
from sklearn_walloc import WallocCodec

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024

codec = WallocCodec.from_pretrained("rgb-16x").set_params(gain=0)  # own rate
codec.verbose = 0
x = np.load(path)
codec.compress([x[:64, :64]])
base = status("VmRSS:")
t = time.perf_counter()
blob = codec.compress([x])[0]
seconds = time.perf_counter() - t
peak = status("VmHWM:")
with open("/proc/loadavg") as f:
    load = float(f.read().split()[0])
print(json.dumps({"baseline_mb": base, "peak_mb": peak, "seconds": seconds,
                  "input_mb": x.nbytes / 2**20, "blob_bytes": len(blob),
                  "sha256": hashlib.sha256(blob).hexdigest(), "load": load}))
"""


def _image(case):
    path = CACHE / f"{case}.npy"
    if not path.exists():
        side = CASES[case]
        if case.startswith("photo"):
            from skimage import data

            a = data.astronaut()
            reps = -(-side // a.shape[0])
            x = np.tile(a, (reps, reps, 1))[:side, :side]
        else:
            x = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ascontiguousarray(x))
    return path


def _base_tree():
    tree = Path(tempfile.gettempdir()) / f"sklearn_walloc_{BASE}"
    if not (tree / "sklearn_walloc").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(NEW_TREE), "archive", BASE, "sklearn_walloc"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    return tree


def _child(tree, path):
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(path)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if p.returncode:
        return {"error": p.stderr[-800:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _commit():
    return subprocess.run(
        ["git", "-C", str(NEW_TREE), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from _machine import machine_line

    trees = {"before": _base_tree(), "after": NEW_TREE}
    cases = ["photo-20MP"] if args.quick else list(CASES)
    rows = []
    for case in cases:
        path = _image(case)
        for name, tree in trees.items():
            print(f"[{name}] {case} ...", flush=True)
            r = _child(tree, path)
            r.update(case=case, tree=name)
            rows.append(r)
            print("   ", json.dumps(r), flush=True)
    lines = [
        "# Peak memory of `compress` on large photos, before and after strips",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Trees: before = `{BASE}` (whole-image encoder, unsliced entropy "
        f"coder), after = `{_commit()}` plus any uncommitted changes. Model: "
        "`rgb-16x`. One fresh process per row; 'above baseline': peak RSS "
        "(`VmHWM`) minus the resident size with the image and the model "
        "loaded and warm. 'x input': that over the caller's uint8 array. "
        "Seconds: the `compress` call alone, rough (shared machine; the "
        "1-minute load average is given).",
        "",
        "| image | tree | input MiB | above baseline MiB | x input | seconds "
        "| load | blob bytes | same blob |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['tree']} | error: "
                         f"{' '.join(r['error'].split())[-120:]} |||||||")  # fmt: skip
            continue
        other = [o for o in rows if o["case"] == r["case"] and "sha256" in o]
        same = len({o["sha256"] for o in other}) == 1
        delta = r["peak_mb"] - r["baseline_mb"]
        lines.append(
            f"| {r['case']} | {r['tree']} | {r['input_mb']:.0f} | {delta:.0f} | "
            f"{delta / r['input_mb']:.2f} | {r['seconds']:.1f} | {r['load']:.1f} | "
            f"{r['blob_bytes']} | {'yes' if same else 'NO'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compress_memory.md").write_text(text)
    (args.out / "compress_memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
