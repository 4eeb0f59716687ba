"""Bounded cost for small hostile files: peak memory of decoding them, before/after.

What it measures
----------------
Tiny, *valid* inputs that declare a huge output (or a huge model), decoded by
the library at git commit ``c5137f8`` (**before**, checked out as the worktree
``/work/wt-base``) and by the current working tree (**after**, ``/work/main``,
uncommitted changes included). Every case runs in its own child process
(``python decode_memory.py --case NAME --json``, the tree chosen with
``PYTHONPATH``; the child checks that ``sklearn_walloc.__file__`` lies in that
tree) under an address-space limit of 18 GiB (``RLIMIT_AS``, so a runaway case
ends in ``MemoryError``) and a 600 s timeout. The child records
``getrusage(RUSAGE_SELF).ru_maxrss`` once the model and the input are ready
(baseline) and again after the decode, the wall time, the output shape and
bytes, and what was raised. Whatever is expensive to *make* (the entropy-coded
zero latents, the model files) is made by a separate process, so that its own
peak does not hide the decode's (``ru_maxrss`` is a high-water mark); payloads
are cached under ``~/.cache/sklearn_walloc_bench/decode_memory``.

Models: closed-form codecs fitted in seconds, ``WallocCodec(latent_dim=12,
levels=3, max_iter=0, decoder_width=0, random_state=0)`` on eight 64x64 crops of
the bundled "fit" photos (images), ``WallocCodec(latent_dim=8, levels=5,
signal_ndim=1, max_iter=0, decoder_width=0, random_state=0)`` on random int16
audio ``(4, 8192, 1)`` (1D). Blobs: all-zero latents coded with
``encode_latents`` and wrapped with ``pack_blob`` (blob ``version=`` 3, the
default payload order, where the library has it; before, 2 for a symmetric-border
model, 1 for a periodic one, where ``pack_blob`` takes it).

Cases (every blob is well under 1 kB):

- ``rgb-6688``: a 6688 x 6688 x 3 uint8 image (just under the default
  ``max_values = MAX_DECODED_VALUES = 2**27``), ``decompress`` float32
  (``restore=False``); ``rgb-6688-uint8``: the same blob decoded to its uint8
  photo (``restore=True``, the default since the caller's units became it);
- ``rgb-1row``: a 1 x 5,600,000 x 3 image (padded to 8 rows inside the
  decoder), ``max_values=2**27``;
- ``mono-1d``: 2**27 samples of mono int16 audio at the default ``max_values``;
- ``model-levels11``: ``WallocCodec.load`` of a real model file whose JSON
  header was rewritten to say ``levels=11`` (everywhere it appears);
- ``model-zipbomb``: ``WallocCodec.load`` of a real model file (~5 MB) in which
  one weight member is replaced by a DEFLATE-compressed ``.npy`` declaring a
  4 GiB float32 array of zeros.

Private on purpose: making a hostile blob needs the coder and the container
(``sklearn_walloc._entropy``, ``sklearn_walloc._container``), since the public
API writes only blobs of signals it has encoded.

Run: ``python decode_memory.py`` from ``benchmarks/`` (5 to 15 minutes on 2 CPU
cores, most of it making and decoding the latents); ``--quick`` runs only
``rgb-1row`` and ``model-levels11`` on the current tree. Writes
``benchmarks/results/decode_memory.{md,json,csv,png}``.
"""

import hashlib
import inspect
import io
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NEW_TREE = HERE.parent
BASE_TREE = Path("/work/wt-base")
BASE_COMMIT = "c5137f8"
AS_LIMIT = 18 << 30
TIMEOUT = 600
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "sklearn_walloc_bench"
    / "decode_memory"
)

# name -> (kind, description)
CASES = {
    "rgb-6688": ("image", "6688 x 6688 x 3 image, default max_values"),
    "rgb-6688-uint8": ("image", "the same, decoded to uint8 (restore=True)"),
    "rgb-1row": ("image", "1 x 5,600,000 x 3 image, max_values=2**27"),
    "mono-1d": ("audio", "2**27 mono int16 samples, default max_values"),
    "model-levels11": ("model", "model file whose header says levels=11"),
    "model-zipbomb": ("model", "model file with a 4 GiB DEFLATE'd weight member"),
}
QUICK = ("rgb-1row", "model-levels11")
BOMB_FLOATS = 2**30  # 4 GiB of float32
BOMB_CHUNK = 64 << 20


def _maxrss_mb():
    """Peak resident set size of this process so far, in MB (Linux: kB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _limit_memory():
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = AS_LIMIT if hard == resource.RLIM_INFINITY else min(AS_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


# ----------------------------------------------------------------- the models
def _image_codec():
    from sklearn_walloc.codec import WallocCodec
    from sklearn_walloc.datasets import load_photos

    crops = [p[:64, :64] for p in load_photos(split="fit")]
    return WallocCodec(
        latent_dim=12, levels=3, max_iter=0, decoder_width=0, random_state=0
    ).fit(crops)


def _audio_codec():
    from sklearn_walloc.codec import WallocCodec

    rng = np.random.default_rng(0)
    audio = rng.integers(-(2**15), 2**15, size=(4, 8192, 1), dtype=np.int16)
    return WallocCodec(
        latent_dim=8,
        levels=5,
        signal_ndim=1,
        max_iter=0,
        decoder_width=0,
        random_state=0,
    ).fit(audio)


def _signal(case):
    """(signal_ndim, signal_shape, dtype, max_values or None for the default)."""
    if case in ("rgb-6688", "rgb-6688-uint8"):
        return 2, (6688, 6688, 3), np.uint8, None
    if case == "rgb-1row":
        return 2, (1, 5_600_000, 3), np.uint8, 2**27
    if case == "mono-1d":
        return 1, (2**27, 1), np.int16, None
    raise ValueError(case)


def _latent_shape(codec, ndim, signal_shape):
    f = 1 << codec.levels
    return (codec.latent_dim, *(-(-d // f) for d in signal_shape[:ndim]))


# ------------------------------------------------------------ making the inputs
def _payload_path(latent_shape, latent_bits):
    import sklearn_walloc._entropy as entropy

    src = hashlib.sha256(Path(entropy.__file__).read_bytes()).hexdigest()[:12]
    dims = "x".join(map(str, latent_shape))
    return CACHE / f"zeros-{dims}-b{latent_bits}-{src}.bin"


def _make_payload(latent_shape, latent_bits):
    """Entropy-code all-zero latents (slow: minutes for 2**25 latents)."""
    from sklearn_walloc._entropy import encode_latents

    path = _payload_path(latent_shape, latent_bits)
    if not path.exists():
        q = np.zeros(latent_shape, np.int32)
        payload = encode_latents(q, latent_bits)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        tmp.replace(path)
    return path


def _weight_members(names):
    """The zip members the loader reads weights from (format 1 or 2)."""
    for prefix in ("tensor/", "state/"):
        found = [n for n in names if n.startswith(prefix) and n.endswith(".npy")]
        if found:
            return found
    raise RuntimeError(f"no weight members among {names}")


def _set_levels(obj, value):
    """Set every ``levels`` key in a JSON tree; return how many were set."""
    n = 0
    if isinstance(obj, dict):
        for k in obj:
            if k == "levels" and isinstance(obj[k], int):
                obj[k] = value
                n += 1
            else:
                n += _set_levels(obj[k], value)
    elif isinstance(obj, list):
        for v in obj:
            n += _set_levels(v, value)
    return n


def _npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def _make_model_file(case, path):
    """Write the hostile model file of ``case`` to ``path``; return a note."""
    codec = _image_codec()
    real = Path(path).with_suffix(".real.npz")
    codec.save(real)
    with zipfile.ZipFile(real) as src:
        names = src.namelist()
        weights = _weight_members(names)
        header = json.loads(
            np.lib.format.read_array(io.BytesIO(src.read("header.npy"))).tobytes()
        )
        # Members keep their compression; only the bomb is DEFLATE'd.
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            if case == "model-levels11":
                n = _set_levels(header, 11)
                text = np.frombuffer(json.dumps(header).encode("utf-8"), np.uint8)
                for name in names:
                    data = src.read(name)
                    if name == "header.npy":
                        data = _npy_bytes(text)
                    dst.writestr(name, data, src.getinfo(name).compress_type)
                note = f"levels set to 11 in {n} places of the header"
            else:
                target = max(weights, key=lambda m: src.getinfo(m).file_size)
                for name in names:
                    if name != target:
                        kind = src.getinfo(name).compress_type
                        dst.writestr(name, src.read(name), kind)
                with dst.open(target, "w", force_zip64=True) as f:
                    np.lib.format.write_array_header_1_0(
                        f,
                        {
                            "descr": "<f4",
                            "fortran_order": False,
                            "shape": (BOMB_FLOATS,),
                        },
                    )
                    zeros = bytes(BOMB_CHUNK)
                    for _ in range(BOMB_FLOATS * 4 // BOMB_CHUNK):
                        f.write(zeros)
                note = f"{target} replaced by a (2**30,) float32 .npy"
    real.unlink()
    version = header.get("format_version")
    return f"model format {version}; {note}; {Path(path).stat().st_size} bytes"


def _prepare(case, path):
    """Make the slow-to-make input of ``case`` (separate process: see docstring)."""
    kind = CASES[case][0]
    if kind == "model":
        return {"note": _make_model_file(case, path)}
    codec = _image_codec() if kind == "image" else _audio_codec()
    ndim, shape, _, _ = _signal(case)
    payload = _make_payload(_latent_shape(codec, ndim, shape), codec.latent_bits_)
    return {"payload": str(payload)}


# ------------------------------------------------------------ one measurement
def _check_tree():
    import sklearn_walloc

    tree = Path(os.environ.get("DECODE_MEMORY_TREE", NEW_TREE)).resolve()
    got = Path(sklearn_walloc.__file__).resolve()
    if tree not in got.parents:
        raise RuntimeError(f"imported {got}, expected a file under {tree}")
    return str(got)


def _run_case(case, workdir):
    """Measure one case in this process; returns a JSON-able dict."""
    limit = _limit_memory()
    result = {"case": case, "as_limit_gib": limit / 2**30}
    result["module"] = _check_tree()
    kind = CASES[case][0]
    # The slow part in another process: its peak must not raise ours.
    prep = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--case",
            case,
            "--prepare",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if prep.returncode != 0:
        raise RuntimeError(f"preparing {case} failed:\n{prep.stderr[-2000:]}")
    made = json.loads(prep.stdout.strip().splitlines()[-1])
    result.update({k: v for k, v in made.items() if k == "note"})
    from sklearn_walloc._container import pack_blob
    from sklearn_walloc.codec import WallocCodec

    if kind == "model":
        path = Path(workdir) / f"{case}.npz"
        result["input_bytes"] = path.stat().st_size

        def action():
            WallocCodec.load(path)
            return None

    else:
        codec = _image_codec() if kind == "image" else _audio_codec()
        ndim, shape, dtype, max_values = _signal(case)
        q_shape = _latent_shape(codec, ndim, shape)
        payload = Path(made["payload"]).read_bytes()
        extra = {}
        if "version" in inspect.signature(pack_blob).parameters:
            # The payload is in encode_latents' default order: format 3 where
            # the library has it, else the model's version (2 or 1).
            from sklearn_walloc import _container

            if 3 in getattr(_container, "VERSIONS", ()):
                extra["version"] = 3
            else:
                symmetric = codec.module_.wpt.boundary == "symmetric"
                extra["version"] = 2 if symmetric else 1
        blob = pack_blob(
            payload,
            signal_ndim=ndim,
            signal_shape=shape,
            dtype=dtype,
            levels=codec.levels,
            latent_shape=q_shape,
            latent_bits=codec.latent_bits_,
            fingerprint=codec.fingerprint(),
            **extra,
        )
        result.update(
            input_bytes=len(blob),
            blob_version=extra.get("version", 1),
            latent_shape=list(q_shape),
            declared_shape=list(shape),
        )
        kwargs = {} if max_values is None else {"max_values": max_values}
        result["max_values"] = max_values

        # Float32 model units (the old default), or the photo's own uint8.
        restore = case.endswith("-uint8")
        result["restore"] = restore

        def action():
            return codec.decompress([blob], restore=restore, **kwargs)

    from _common import Timer

    result["baseline_mb"] = _maxrss_mb()
    with Timer() as t:
        try:
            out = action()
            result["outcome"] = "ok"
        except BaseException as e:  # MemoryError included
            out = None
            result["outcome"] = type(e).__name__
            result["message"] = str(e)
            result["traceback_tail"] = traceback.format_exc()[-1500:]
    result["seconds"] = t.s
    result["peak_mb"] = _maxrss_mb()
    if out is not None:
        result["output_shape"] = list(np.shape(out))
        result["output_dtype"] = str(np.asarray(out).dtype)
        result["output_mb"] = np.asarray(out).nbytes / 2**20
    return result


def _child(tree, case):
    """Run ``case`` under ``tree`` in a child process; returns its result."""
    env = dict(os.environ, PYTHONPATH=str(tree), DECODE_MEMORY_TREE=str(tree))
    with tempfile.TemporaryDirectory(prefix="decode_memory_") as workdir:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--case",
            case,
            "--json",
            "--workdir",
            workdir,
        ]
        from _common import Timer

        try:
            with Timer() as t:
                p = subprocess.run(
                    cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT + 120
                )
        except subprocess.TimeoutExpired:
            return {"case": case, "outcome": "timeout", "seconds": TIMEOUT + 120,
                    "message": f"killed after {TIMEOUT + 120} s"}  # fmt: skip
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            return {
                "case": case,
                "outcome": f"child exit {p.returncode}",
                "message": (p.stderr or p.stdout)[-500:],
                "seconds": t.s,
            }
        return json.loads(lines[-1])


# --------------------------------------------------------------------- report
def _short(text, n=100):
    text = " ".join(str(text).split())
    text = re.sub(r"\S*/decode_memory_\w+/\S+?\.npz:? ", "", text)
    text = text.replace(
        "is not a sklearn-walloc model file that this version can load: ", ""
    ).replace("Error(s) in loading state_dict for WallocAutoencoder: ", "")
    return text if len(text) <= n else text[: n - 1] + "…"


def _git(tree, *args):
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True
    ).stdout.strip()


def _tree_info(tree):
    dirty = _git(tree, "status", "--porcelain", "--", "sklearn_walloc")
    return {
        "path": str(tree),
        "commit": _git(tree, "rev-parse", "--short", "HEAD"),
        "library_uncommitted_changes": bool(dirty),
    }


def _row(tree_name, r):
    outcome = r["outcome"]
    if outcome != "ok":
        outcome = f"{outcome}: {_short(r.get('message', ''))}"
    peak, base = r.get("peak_mb"), r.get("baseline_mb")
    delta = None if peak is None or base is None else peak - base
    out_mb = r.get("output_mb")
    return {
        "case": r["case"],
        "tree": tree_name,
        "outcome": outcome,
        "output_shape": "x".join(map(str, r["output_shape"]))
        if r.get("output_shape")
        else "",
        "output_mb": out_mb,
        "input_bytes": r.get("input_bytes"),
        "baseline_mb": base,
        "peak_mb": peak,
        "peak_minus_baseline_mb": delta,
        "delta_per_output": delta / out_mb if delta is not None and out_mb else None,
        "seconds": r.get("seconds"),
    }


def _fmt(v, spec):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def _plot(rows, cases, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from _common import save_figure

    trees = ("before", "after")
    fig, ax = plt.subplots(figsize=(1.6 * len(cases) + 2, 3.8))
    width = 0.38
    top = 1.0
    for j, (tree, color) in enumerate(zip(trees, ("tab:red", "tab:blue"))):
        for i, case in enumerate(cases):
            r = next((r for r in rows if (r["case"], r["tree"]) == (case, tree)), None)
            if r is None or r["peak_minus_baseline_mb"] is None:
                continue
            v = max(r["peak_minus_baseline_mb"], 1.0)
            top = max(top, v)
            x = i + (j - 0.5) * width
            ax.bar(x, v, width, color=color, label=tree if i == 0 else None)
            tag = "ok" if r["outcome"] == "ok" else r["outcome"].split(":")[0]
            ax.text(x, v * 1.15, tag, ha="center", va="bottom", fontsize=6,
                    rotation=90)  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(0.5, top * 30)
    ax.set_xticks(range(len(cases)), cases, fontsize=8)
    ax.set_ylabel("peak RSS minus baseline (MB, log; floor 1)")
    ax.set_title(
        "Small hostile inputs: decode/load memory, before vs after", fontsize=9
    )
    ax.legend(fontsize=8, loc="upper right")
    save_figure(fig, path)


def main():
    from _common import BenchmarkRun, benchmark_parser

    parser = benchmark_parser(__doc__, replot="decode_memory.json")
    parser.set_defaults(out=HERE / "results")
    parser.add_argument("--case", choices=list(CASES), help="child: run one case")
    parser.add_argument("--json", action="store_true", help="child: print JSON")
    parser.add_argument("--workdir", type=Path, help="child: scratch folder")
    parser.add_argument("--prepare", type=Path, help="child: make the input only")
    args = parser.parse_args()
    if args.case and args.prepare:
        _limit_memory()
        made = _prepare(args.case, args.prepare / f"{args.case}.npz")
        print(json.dumps(made))
        return
    if args.case:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="decode_memory_"))
        r = _run_case(args.case, workdir)
        print(json.dumps(r) if args.json else json.dumps(r, indent=2))
        return

    if args.replot:
        report = json.loads((Path(args.out) / "decode_memory.json").read_text())
        _render(args.out, report, report["machine_line"])
        return
    from _machine import machine_line

    run = BenchmarkRun("decode_memory", args)
    if not BASE_TREE.exists():
        subprocess.run(["git", "-C", str(NEW_TREE), "worktree", "add",
                        str(BASE_TREE), BASE_COMMIT], check=True)  # fmt: skip
    trees = {"before": BASE_TREE, "after": NEW_TREE}
    if args.quick:
        trees = {"after": NEW_TREE}
    cases = list(QUICK if args.quick else CASES)
    info = {name: _tree_info(tree) for name, tree in trees.items()}
    results = []
    for tree_name, tree in trees.items():
        for case in cases:
            print(f"[{tree_name}] {case} ...", flush=True)
            r = _child(tree, case)
            r["tree"] = tree_name
            results.append(r)
            row = _row(tree_name, r)
            print(f"    {row['outcome']}, peak {_fmt(row['peak_mb'], '.0f')} MB, "
                  f"{_fmt(row['seconds'], '.1f')} s", flush=True)  # fmt: skip

    report = {"machine": run.machine, "machine_line": machine_line(run.machine),
              "trees": info, "cases": cases, "as_limit_bytes": AS_LIMIT,
              "timeout_s": TIMEOUT, "results": results}  # fmt: skip
    _render(args.out, report, machine_line())


def _render(out, report, machine):
    """Table, Markdown, CSV, JSON and figure from the children's results."""
    from _common import write_report

    info, cases, results = report["trees"], report["cases"], report["results"]
    rows = [_row(r["tree"], r) for r in results]
    header = ["case", "tree", "outcome", "output shape", "output MB",
              "peak RSS MB", "peak - baseline MB", "(peak - baseline) / output",
              "seconds"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['tree']} | {r['outcome'].replace('|', '/')} | "
            f"{r['output_shape'] or '-'} | {_fmt(r['output_mb'], '.0f')} | "
            f"{_fmt(r['peak_mb'], '.0f')} | {_fmt(r['peak_minus_baseline_mb'], '.0f')}"
            f" | {_fmt(r['delta_per_output'], '.2f')} | {_fmt(r['seconds'], '.1f')} |"
        )
    tree_lines = [
        f"- {name}: `{i['path']}` at `{i['commit']}`"
        + (
            " plus uncommitted changes to sklearn_walloc/"
            if i["library_uncommitted_changes"]
            else ""
        )
        for name, i in info.items()
    ]
    case_lines = [f"- `{c}`: {CASES[c][1]}" for c in cases]
    notes = sorted({f"- `{r['case']}` ({r['tree']}): {r['note']}"
                    for r in results if r.get("note")})  # fmt: skip
    text = "\n".join(
        [
            "# Decode memory of small hostile inputs, before and after",
            "",
            f"Machine: {machine}",
            "",
            "Trees:",
            "",
            *tree_lines,
            "",
            "Cases (blobs under 1 kB; model files of about 20 kB and 4 MB):",
            "",
            *case_lines,
            "",
            "One child process per case and tree, address space limited to "
            f"{AS_LIMIT / 2**30:.0f} GiB, timeout {TIMEOUT} s. Peak RSS: "
            "`ru_maxrss` after the call; baseline: `ru_maxrss` once the model and "
            "the input were ready (import, fit; inputs made in another process). "
            "Output MB in MiB of the float32 array returned (decode cases); "
            "seconds: the `decompress` / `load` call alone. Other jobs shared the "
            "2-core machine, so the seconds are rough; the memory is not.",
            "",
            *lines,
            "",
            "Model files:",
            "",
            *notes,
            "",
        ]
    )
    write_report(out, "decode_memory", report, text, rows)
    _plot(rows, cases, Path(out) / "decode_memory.png")


if __name__ == "__main__":
    main()
