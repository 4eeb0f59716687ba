"""Compare two runs of ``speed.py``: does a re-run reproduce the numbers?

Reads two ``speed.json`` files, matches their rows by (method, op, device,
size, batch) and prints, per row, both MP/s and their ratio, then a summary:
the median and spread of the ratios for WaLLoC's rows and for the peers', and
whether each issue target has the same verdict in both runs. A ratio's spread
is the run-to-run noise of this machine; the load averages of both runs are
printed with it, since timings on a shared 2-core machine move with the load.

Writes ``speed_rerun.md`` into ``--out`` (default: next to the first file)
unless ``--no-write``.

Run: ``python benchmarks/compare_speed.py benchmarks/results/speed.json
other/speed.json``.
"""

import json
import statistics
from pathlib import Path

from _common import benchmark_parser, load_text, markdown_table


def _key(row):
    return (row["family"], row["op"], row["device"], row["size"], row["batch"])


def _spread(ratios):
    if not ratios:
        return "no rows"
    q = statistics.quantiles(ratios, n=10) if len(ratios) > 1 else ratios * 9
    return (
        f"{len(ratios)} rows, median {statistics.median(ratios):.2f}, "
        f"10-90% {q[0]:.2f}-{q[-1]:.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}"
    )


def compare(first, second, names=("run 1", "run 2")):
    """Markdown lines comparing two speed reports."""
    rows2 = {_key(r): r for r in second["rows"]}
    lines = [
        "# speed.py: run against re-run",
        "",
        f"Run 1: `{names[0]}`; run 2: `{names[1]}`; the same code and machine.",
        "",
        f"Run 1: load {load_text(first['machine'])} at the start, "
        f"{load_text(first['machine_end'])} at the end, {first['runtime_s']:.0f} s. "
        f"Run 2: load {load_text(second['machine'])} at the start, "
        f"{load_text(second['machine_end'])} at the end, {second['runtime_s']:.0f} s.",
    ]
    walloc, peers, table = [], [], []
    for r in first["rows"]:
        other = rows2.get(_key(r))
        if other is None:
            continue
        ratio = other["mp_per_s"] / r["mp_per_s"]
        (walloc if r["family"].startswith("WaLLoC") else peers).append(ratio)
        table.append([r["family"], r["op"], r["size"], r["batch"],
                      f"{r['mp_per_s']:.3g}", f"{other['mp_per_s']:.3g}",
                      f"{ratio:.2f}"])  # fmt: skip
    lines += [
        "",
        markdown_table(
            [
                "method",
                "op",
                "size",
                "batch",
                "run 1 MP/s",
                "run 2 MP/s",
                "run 2 / run 1",
            ],
            table,
        ),
        "",
        f"WaLLoC rows: {_spread(walloc)}.",
        f"Peer rows: {_spread(peers)}.",
        "",
        "| target | where | run 1 | run 2 | same verdict? |",
        "|---|---|---|---|---|",
    ]
    targets2 = {(t["target"], t["where"]): t for t in second["targets"]}
    by_target = {t["target"]: t for t in second["targets"]}
    for t in first["targets"]:
        # "where" holds measured numbers for some targets: fall back to the name.
        other = targets2.get((t["target"], t["where"])) or by_target.get(t["target"])
        if other is None:
            continue
        same = (
            "n/a"
            if t["met"] is None
            else ("yes" if t["met"] == other["met"] else "**no**")
        )
        lines.append(
            f"| {t['target']} | {t['where']} | {t['value']:.3g} | "
            f"{other['value']:.3g} | {same} |"
        )
    return lines


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.set_defaults(out=None)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    first, second = (json.loads(p.read_text()) for p in (args.first, args.second))
    names = (args.first.name, args.second.name)
    text = "\n".join(compare(first, second, names)) + "\n"
    print(text)
    if not args.no_write:
        (args.out or args.first.parent).joinpath("speed_rerun.md").write_text(text)


if __name__ == "__main__":
    main()
