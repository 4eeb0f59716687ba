"""Peak memory of the shipped rgb-16x decoding a 136-byte decompression bomb.

What it measures
----------------
The blob of a constant 6688 x 6688 RGB photo (all-zero latents coded with
``encode_latents``, packed with rgb-16x's fingerprint: 136 bytes; just under
the default ``max_values = 2**27``) decoded by
``WallocCodec.from_pretrained("rgb-16x").decompress`` to its uint8 photo (128
MiB), each run in its own child process: ``ru_maxrss`` once the model and the
blob are loaded (baseline) and after the call, and the wall time. The same for
the two phases alone: the entropy decoding of the latent grid
(``decode_latents``) and the synthesis of a zero grid (``_decode_gained``,
tiles rounded to uint8 as they are decoded). Each with the tiles of outputs
above ``_tiles.LARGE_OUTPUT`` at ``TILE_VALUES / d`` for ``d`` in 2, 4, 8
(``_tiles.LARGE_TILE_DIVISOR``, shipped: 8), three runs each
(``ru_maxrss`` is a high-water mark that glibc's reuse of freed memory moves
by tens of MB from run to run).

Run: ``python benchmarks/bomb_memory.py`` (about a minute). Writes
``bomb_memory.md`` / ``.json`` in ``--out``.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import BenchmarkRun, benchmark_parser, markdown_table
from _machine import machine_line

_MAKE = """
import numpy as np, sys
from sklearn_walloc import WallocCodec
from sklearn_walloc._container import pack_blob
from sklearn_walloc._entropy import encode_latents
c = WallocCodec.from_pretrained("rgb-16x")
q = np.zeros((12, 836, 836), np.int32)
blob = pack_blob(encode_latents(q, 8, version=4), signal_ndim=2,
                 signal_shape=(6688, 6688, 3), dtype="uint8", levels=3,
                 latent_shape=q.shape, latent_bits=8, fingerprint=c.fingerprint(),
                 version=4)
open(sys.argv[1], "wb").write(blob)
"""

_RUN = """
import json, resource, sys, time
from functools import partial
import numpy as np
from sklearn_walloc import WallocCodec, _tiles
from sklearn_walloc._container import unpack_blob
from sklearn_walloc._entropy import decode_latents
from sklearn_walloc._units import restore_values
path, phase, div = sys.argv[1], sys.argv[2], int(sys.argv[3])
_tiles.LARGE_TILE_DIVISOR = div
c = WallocCodec.from_pretrained("rgb-16x")
blob = open(path, "rb").read()
b = unpack_blob(blob)
z = np.zeros((1, *b.latent_shape), np.float32) if phase == "synthesis" else None
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base, t = rss(), time.perf_counter()
if phase == "decompress":
    (y,) = c.decompress([blob])
elif phase == "entropy":
    y = decode_latents(b.payload, b.latent_shape, b.latent_bits, version=b.version)
else:
    finish = (b.dtype, partial(restore_values, b=b, spec=c.spec_))
    y = c._decode_gained(z, (6688, 6688), b.gain_steps, b.latent_bits, finish)
print(json.dumps({"delta_mib": rss() - base, "seconds": time.perf_counter() - t,
                  "output_mib": y.nbytes / 2**20}))
"""


def main():
    parser = benchmark_parser(__doc__)
    args = parser.parse_args()
    run = BenchmarkRun("bomb_memory", args)
    root = Path(__file__).resolve().parents[1]
    rows, table = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bomb.wlc")
        subprocess.run([sys.executable, "-c", _MAKE, path], check=True, cwd=root)
        blob_bytes = Path(path).stat().st_size
        for phase in ("decompress", "entropy", "synthesis"):
            for div in (2, 4, 8):
                runs = []
                for _ in range(3):
                    out = subprocess.run(
                        [sys.executable, "-c", _RUN, path, phase, str(div)],
                        check=True,
                        capture_output=True,
                        text=True,
                        cwd=root,
                    ).stdout
                    runs.append(json.loads(out.strip().splitlines()[-1]))
                deltas = [r["delta_mib"] for r in runs]
                row = {
                    "phase": phase,
                    "tile_divisor": div,
                    "delta_mib": deltas,
                    "seconds": min(r["seconds"] for r in runs),
                    "output_mib": runs[0]["output_mib"],
                }
                rows.append(row)
                ratio = ""
                if phase == "decompress":
                    ratio = f"{min(deltas) / row['output_mib']:.2f}-"
                    ratio += f"{max(deltas) / row['output_mib']:.2f}x"
                table.append(
                    [
                        phase,
                        str(div),
                        ", ".join(f"{d:.0f}" for d in deltas),
                        f"{row['output_mib']:.0f}",
                        ratio,
                        f"{row['seconds']:.1f}",
                    ]
                )
    text = "\n".join(
        [
            "# rgb-16x decoding a 136-byte decompression bomb",
            "",
            f"Machine: {machine_line(run.machine)}",
            "",
            f"A {blob_bytes}-byte blob declaring a 6688 x 6688 RGB photo; peak RSS "
            "over the loaded model (`ru_maxrss`), three child processes per row; "
            "tiles of outputs above 2**26 values at `TILE_VALUES / d` "
            "(`_tiles.LARGE_TILE_DIVISOR`, shipped: 8).",
            "",
            markdown_table(
                [
                    "phase",
                    "d",
                    "peak - baseline MiB",
                    "result MiB",
                    "/ output",
                    "best s",
                ],
                table,
            ),
            "",
        ]
    )
    run.finish({"machine": run.machine, "rows": rows}, lambda report: text, rows)


if __name__ == "__main__":
    main()
