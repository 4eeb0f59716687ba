"""Scaling out with dask.distributed: throughput with 1 and 2 workers, projected to N.

What it measures
----------------
Megapixels per second of ``WallocCodec.transform`` and ``compress`` (16x
closed-form model, ``latent_dim=12, levels=3``, fitted on the bundled "fit"
photos) on a dask array of ``--tiles`` 256x256 RGB uint8 tiles cut from all
the bundled scikit-image / scikit-learn photos (8 tiles per chunk):

- ``in-process``: the estimator on the numpy array in this process, with one
  torch thread (a worker's share), no dask;
- ``1 worker`` / ``2 workers``: the lazy dask result computed on a
  ``LocalCluster`` of 2 worker processes with 1 thread each, using one worker
  (tasks and input restricted to it) or both. The input is persisted on the
  workers first (as when each worker reads its own files), the results are
  gathered to the client (latents or blobs travel), and the model travels
  once per worker inside each graph.

The three are interleaved, ``--repeat`` rounds, and the median is reported.
Bytes per megapixel in (uint8 samples) and out (float32 latents or blobs) are
measured, and from them and the per-worker rate a projection for N machines of
``--cores`` workers each: linear ``N * cores * rate``, the same times the
measured efficiency (2-worker speed-up over 2, at most 1), and that capped by
what one client link of 1 or 10 Gbit/s can gather (outputs only: inputs are
read where they are stored). The projection is arithmetic on measured numbers, not a
measurement of a cluster.

The machine is shared with other jobs while this runs: the load average is
recorded before and after, and 2 workers on 2 cores compete with the client
and the scheduler.

Run: ``python benchmarks/scaling.py`` (``--quick`` for a smoke run).
"""

import os
import statistics

import numpy as np
from _common import BenchmarkRun, Timer, benchmark_parser, markdown_table

LINKS_GBIT = (1, 10)
NODES = (1, 2, 4, 8, 16, 64)


def _tiles(n, side=256):
    from sklearn_walloc.datasets import load_photos

    tiles = []
    for photo in load_photos():
        h, w = photo.shape[:2]
        for y in range(0, h - side + 1, side):
            for x in range(0, w - side + 1, side):
                tiles.append(photo[y : y + side, x : x + side])
    reps = -(-n // len(tiles))
    return np.stack((tiles * reps)[:n])


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cores", type=int, default=2, help="workers per machine")
    args = parser.parse_args()
    if args.quick:
        args.tiles, args.repeat = 16, 2
    run = BenchmarkRun("scaling", args)

    import dask.array as da
    import distributed
    import torch

    from sklearn_walloc import WallocCodec
    from sklearn_walloc.datasets import load_photos

    codec = WallocCodec(latent_dim=12, levels=3, max_iter=0, random_state=0)
    codec.fit(load_photos(split="fit"))
    X = _tiles(args.tiles)
    mp = X.shape[0] * X.shape[1] * X.shape[2] / 1e6
    chunk = (8, -1, -1, -1)
    threads = torch.get_num_threads()

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    client.wait_for_workers(2)
    workers = sorted(client.scheduler_info()["workers"])
    placed = {
        1: client.persist(da.from_array(X, chunks=chunk), workers=workers[:1]),
        2: client.persist(da.from_array(X, chunks=chunk)),
    }
    distributed.wait(list(placed.values()))

    def on_cluster(method, n_workers):
        lazy = getattr(codec, method)(placed[n_workers])
        kw = {"workers": workers[:1]} if n_workers == 1 else {}
        return client.compute(lazy, **kw).result()

    def in_process(method):
        torch.set_num_threads(1)
        try:
            return getattr(codec, method)(X)
        finally:
            torch.set_num_threads(threads)

    # Warm-up (workers import torch, receive the model) and exactness checks.
    exact = {}
    for method in ("transform", "compress"):
        ref = in_process(method)
        for n in (1, 2):
            out = on_cluster(method, n)
            same = out == ref if method == "compress" else np.array_equal(out, ref)
            exact[f"{method}/{n}"] = bool(same)
    out_bytes = {
        "transform": codec.transform(X[:1]).nbytes * len(X),
        "compress": sum(len(b) for b in codec.compress(X)),
    }

    rows, results = [], {}
    for method in ("transform", "compress"):
        times = {"in-process": [], "1 worker": [], "2 workers": []}
        for _ in range(args.repeat):  # interleaved rounds
            for label, fn in (
                ("in-process", lambda: in_process(method)),
                ("1 worker", lambda: on_cluster(method, 1)),
                ("2 workers", lambda: on_cluster(method, 2)),
            ):
                with Timer() as t:
                    fn()
                times[label].append(t.s)
        med = {k: statistics.median(v) for k, v in times.items()}
        rate = {k: mp / v for k, v in med.items()}
        results[method] = {
            "seconds": times,
            "median_s": med,
            "mp_per_s": rate,
            "speedup_2_over_1": med["1 worker"] / med["2 workers"],
            "dask_overhead_1_worker": med["1 worker"] / med["in-process"],
            "bytes_in_per_mp": X.nbytes / mp,
            "bytes_out_per_mp": out_bytes[method] / mp,
        }
        for label in times:
            rows.append(
                {
                    "method": method,
                    "setup": label,
                    "median_s": round(med[label], 4),
                    "mp_per_s": round(rate[label], 2),
                }
            )
    client.close()
    cluster.close()
    load_after = list(os.getloadavg())

    projection = []
    for method, r in results.items():
        per_worker = r["mp_per_s"]["1 worker"]
        efficiency = min(1.0, r["speedup_2_over_1"] / 2)
        for nodes in NODES:
            linear = nodes * args.cores * per_worker
            compute = linear * efficiency
            row = {
                "method": method,
                "machines": nodes,
                "linear_mp_s": linear,
                "compute_mp_s": compute,
            }
            for gbit in LINKS_GBIT:
                cap = gbit * 1e9 / 8 / r["bytes_out_per_mp"]
                row[f"gather_{gbit}gbit_mp_s"] = min(compute, cap)
            projection.append(row)

    report = {
        "machine": run.machine,
        "load_average_before": run.machine["load_average"],
        "load_average_after": load_after,
        "tiles": int(X.shape[0]),
        "tile_shape": list(X.shape[1:]),
        "megapixels": mp,
        "chunk_tiles": chunk[0],
        "repeat": args.repeat,
        "results_equal_in_memory": exact,
        "results": results,
        "projection": {
            "cores_per_machine": args.cores,
            "links_gbit": list(LINKS_GBIT),
            "rows": projection,
        },
        "rows": rows,
    }
    run.finish(report, markdown)


def markdown(report):
    m, res, rows = report["machine"], report["results"], report["rows"]
    projection = report["projection"]["rows"]
    cores = report["projection"]["cores_per_machine"]
    lines = [
        "# Scaling out: transform and compress on a dask.distributed LocalCluster",
        "",
        f"{report['tiles']} tiles of 256x256 RGB uint8 ({report['megapixels']:.2f}"
        f" MP) from the bundled photos, {report['chunk_tiles']} tiles per chunk; "
        "16x closed-form WallocCodec. Median of "
        f"{report['repeat']} interleaved rounds. Machine: {m['cpu_model']}, "
        f"{m['usable_cores']} usable cores, shared with other jobs (load average "
        f"{report['load_average_before'][0]:.1f} before, "
        f"{report['load_average_after'][0]:.1f} after): absolute rates are low "
        "and noisy; the ratios were taken in the same rounds.",
        "",
        "Results equal the in-memory ones (byte for byte for blobs): "
        + ", ".join(f"{k}: {v}" for k, v in report["results_equal_in_memory"].items())
        + ".",
        "",
        markdown_table(
            ["method", "setup", "median s", "MP/s"],
            [[r["method"], r["setup"], r["median_s"], r["mp_per_s"]] for r in rows],
        ),
        "",
        markdown_table(
            [
                "method",
                "2 workers / 1 worker",
                "1 worker / in-process (time)",
                "bytes in per MP",
                "bytes out per MP",
            ],
            [
                [
                    k,
                    f"{v['speedup_2_over_1']:.2f}x",
                    f"{v['dask_overhead_1_worker']:.2f}",
                    f"{v['bytes_in_per_mp'] / 1e6:.2f} MB",
                    f"{v['bytes_out_per_mp'] / 1e6:.3f} MB",
                ]
                for k, v in res.items()
            ],
        ),
        "",
        f"Projection for N machines of {cores} workers each: linear is N x "
        f"{cores} x the 1-worker rate; then times the measured 2-worker "
        "efficiency (speed-up / 2, at most 1; on this shared 2-core machine the "
        "client, the scheduler and other jobs compete with the workers, so it is "
        "a pessimistic bound); then capped by gathering the outputs over one "
        "client link (inputs read where they are stored). Arithmetic on the "
        "numbers above, not a measurement of a cluster:",
        "",
        markdown_table(
            ["method", "machines", "linear MP/s", "at measured efficiency"]
            + [f"+ {g} Gbit/s client link" for g in LINKS_GBIT],
            [
                [
                    p["method"],
                    p["machines"],
                    f"{p['linear_mp_s']:.1f}",
                    f"{p['compute_mp_s']:.1f}",
                ]
                + [f"{p[f'gather_{g}gbit_mp_s']:.1f}" for g in LINKS_GBIT]
                for p in projection
            ],
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
