"""What exact rounding of image latents costs, and what it buys.

What it measures
----------------
Cost: ``WallocCodec.from_pretrained("rgb-16x").compress`` (the model's own
rate, gain 0) and ``transform`` of one photo per call, under three settings,
interleaved (each repeat times every setting on every set, so that a change in
the machine's load hits them alike):

- ``off``: latents rounded in float32 (``_ties.EXACT_IMAGES = False``);
- ``first stage``: the default. Latents within the tolerance of a rounding tie
  take the dense stage of the encoder in float64 over the first stage's
  float32 output (``ExactRounding.values`` with ``first``); the ends solved by
  least squares, from the samples;
- ``samples``: every near tie recomputed from the 3x57x57 samples it reads in
  float64 (the only reference before; the first stage's output withheld).

Sets: the 3 held-out photos (``load_photos(split="holdout")``, 0.78 MP), a
1024x1536 tile of coffee (3x3 copies, cropped) and (without ``--quick``) a
4500x4500 tile of it, 20 MP, which ``compress`` encodes in strips (its first
stage is recomputed in bands of rows for its near ties). Times are the best
over repeats of the set's summed CPU time (``time.process_time``) and of its
wall-clock time, with the near-tie positions recomputed and the CPU time in
``ExactRounding.values``.

What it buys: 40 random crops (200 px to the whole photo) of five bundled
photos, each transformed with 1, 2, 3 and 4 torch threads; the latents that
differ from the 1-thread ones, with exact rounding off and on.

Run: ``python benchmarks/exact_rounding.py`` (about a minute; ``--threads``
sets torch's threads for the timings, default 1; ``--quick`` 2 repeats
instead of 7 and no 20 MP tile). Writes ``exact_rounding.md`` / ``.json``
(``exact_rounding_threads<n>`` for other thread counts) in ``--out``.
"""

import contextlib
import time

import numpy as np
import torch
from _common import BenchmarkRun, benchmark_parser, markdown_table
from _machine import machine_line
from skimage import data

from sklearn_walloc import WallocCodec, _networks, _rate, _ties
from sklearn_walloc.datasets import load_photos

SETTINGS = ("off", "first stage", "samples")


def _no_first(fused, x):
    return fused(x), None


@contextlib.contextmanager
def _setting(name):
    """``_ties.EXACT_IMAGES`` and the first stage's output as ``name`` says."""
    saved = (_ties.EXACT_IMAGES, _networks.latents_and_first, _rate.latents_and_first)
    _ties.EXACT_IMAGES = name != "off"
    if name == "samples":
        _networks.latents_and_first = _rate.latents_and_first = _no_first
    try:
        yield
    finally:
        _ties.EXACT_IMAGES = saved[0]
        _networks.latents_and_first, _rate.latents_and_first = saved[1:]


def _crops(n_per_photo=8, seed=1):
    rng = np.random.default_rng(seed)
    base = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    base.append(data.immunohistochemistry())
    out = []
    for b in base:
        for _ in range(n_per_photo):
            h, w = rng.integers(200, b.shape[0]), rng.integers(200, b.shape[1])
            y, x = (
                rng.integers(0, b.shape[0] - h + 1),
                rng.integers(0, b.shape[1] - w + 1),
            )
            out.append(np.ascontiguousarray(b[y : y + h, x : x + w]))
    return out


def _thread_check(model):
    """Latents that differ from the 1-thread ones at 2, 3 and 4 threads."""
    before = torch.get_num_threads()
    out = {}
    try:
        for name in ("off", "first stage"):
            with _setting(name):
                total = differing = photos = 0
                for img in _crops():
                    zs = []
                    for t in (1, 2, 3, 4):
                        torch.set_num_threads(t)
                        zs.append(model.transform(img[None]))
                    d = max(int((zs[0] != z).sum()) for z in zs[1:])
                    total += zs[0].size
                    differing += d
                    photos += d > 0
                out[name] = {"latents": total, "differing": differing, "photos": photos}
    finally:
        torch.set_num_threads(before)
    return out


def main():
    parser = benchmark_parser(__doc__, threads=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    name = (
        "exact_rounding"
        if args.threads == 1
        else f"exact_rounding_threads{args.threads}"
    )
    run = BenchmarkRun(name, args)
    repeats = 2 if args.quick else args.repeats
    codec = WallocCodec.from_pretrained("rgb-16x").set_params(gain=0)  # own rate
    photos = load_photos(split="holdout")
    tile = np.tile(photos[1], (3, 3, 1))[:1024, :1536]
    sets = {"3 held-out photos": photos, "1024x1536 tile": [tile]}
    if not args.quick:  # 20 MP: encoded in strips
        sets["4500x4500 tile (strips)"] = [np.tile(photos[1], (12, 8, 1))[:4500, :4500]]
    stats = {"n": 0, "s": 0.0}
    values = _ties.ExactRounding.values

    def counted(self, x, index, first=None):
        start = time.process_time()
        out = values(self, x, index, first)
        stats["s"] += time.process_time() - start
        stats["n"] += len(index)
        return out

    _ties.ExactRounding.values = counted
    best, blobs, near = {}, {}, {}
    try:
        for rep in range(repeats + 1):  # the first round warms caches up
            for set_name, signals in sets.items():
                for setting in SETTINGS:
                    for op in ("compress", "transform"):
                        fn = codec.compress if op == "compress" else codec.transform
                        with _setting(setting):
                            stats.update(n=0, s=0.0)
                            cpu, wall = time.process_time(), time.perf_counter()
                            out = [fn([s])[0] for s in signals]
                            cpu = time.process_time() - cpu
                            wall = time.perf_counter() - wall
                        key = (set_name, setting, op)
                        if op == "compress":
                            blobs[(set_name, setting)] = out
                        if rep == 0:  # warm-up round: not timed
                            best[key], near[key] = (np.inf, np.inf), (0, np.inf)
                            continue
                        old = best[key]
                        best[key] = (min(old[0], cpu), min(old[1], wall))
                        near[key] = (stats["n"], min(near[key][1], stats["s"]))
    finally:
        _ties.ExactRounding.values = values
    threads = _thread_check(codec)
    rows, table = [], []
    for set_name in sets:
        for op in ("compress", "transform"):
            cpu0, wall0 = best[(set_name, "off", op)]
            for setting in SETTINGS:
                cpu, wall = best[(set_name, setting, op)]
                n, s = near[(set_name, setting, op)]
                row = {
                    "set": set_name,
                    "operation": op,
                    "setting": setting,
                    "cpu_ms": 1e3 * cpu,
                    "wall_ms": 1e3 * wall,
                    "cpu_overhead": cpu / cpu0 - 1,
                    "wall_overhead": wall / wall0 - 1,
                    "near_positions": n,
                    "values_cpu_ms": 1e3 * s if n else 0.0,
                    "same_blobs_as_off": blobs[(set_name, setting)]
                    == blobs[(set_name, "off")],
                }
                rows.append(row)
                table.append(
                    [
                        set_name,
                        op,
                        setting,
                        f"{row['cpu_ms']:.1f}",
                        f"{row['cpu_overhead']:+.0%}",
                        f"{row['wall_ms']:.1f}",
                        f"{row['wall_overhead']:+.0%}",
                        str(n),
                        f"{row['values_cpu_ms']:.1f}",
                    ]
                )
    check = [
        [k, str(v["latents"]), str(v["differing"]), f"{v['photos']} of 40"]
        for k, v in threads.items()
    ]
    text = "\n".join(
        [
            "# Exact rounding of image latents: cost and thread independence",
            "",
            f"Machine: {machine_line(run.machine)}",
            "",
            f"rgb-16x at its own rate (gain 0), one photo per call, torch threads "
            f"{args.threads}, best of {repeats} interleaved repeats; 1-minute load "
            f"{run.machine['load_average'][0]:.1f} at the start. `first stage` is "
            "the default.",
            "",
            markdown_table(
                [
                    "set",
                    "operation",
                    "setting",
                    "CPU ms",
                    "CPU vs off",
                    "wall ms",
                    "wall vs off",
                    "near positions",
                    "recompute CPU ms",
                ],
                table,
            ),
            "",
            "Thread independence: 40 random crops of five bundled photos, `transform` "
            "with 1, 2, 3 and 4 threads; latents differing from the 1-thread ones "
            "(the most at any of 2, 3, 4 threads, summed over the crops).",
            "",
            markdown_table(
                ["setting", "latents", "differing", "crops differing"], check
            ),
            "",
        ]
    )
    run.finish(
        {"machine": run.machine, "rows": rows, "threads": threads},
        lambda report: text,
        rows,
    )


if __name__ == "__main__":
    main()
