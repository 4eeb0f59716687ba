"""Peak memory of the command line's image reading and writing (``_media``).

What it measures
----------------
The resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the step; Linux) of a fresh process that
imports ``sklearn_walloc._media`` and then does one thing to a large synthetic
photo (a smooth ``size x size`` RGB gradient, or the same with a soft alpha
ramp, saved as PNG), reported whole and above the resident size just before the
step:

- ``read``: ``read_signal`` (Pillow decodes the PNG, the pixels are copied to a
  NumPy array in strips of rows), and ``read (np.asarray)``: the same with the
  whole image converted at once, as before strips (``np.asarray`` goes through
  ``tobytes``);
- ``read + split alpha`` (RGBA only): ``read_signal`` then ``split_alpha``
  (the alpha plane PNG-compressed into the metadata);
- ``write``: ``write_signal`` of the decoded array to PNG (with the alpha plane
  put back for RGBA).

The model's own work (``WallocCodec.compress`` / ``decompress``) is not here:
see ``decode_memory.py``. Run ``python benchmarks/media_memory.py [--size N]``;
it prints a Markdown table and writes ``results/media_memory.md``.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

_CHILD = r"""
import resource, sys
import numpy as np
from sklearn_walloc import _media

def peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def reset():  # the high-water mark starts again from the current resident size
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

path, what = sys.argv[1], sys.argv[2]
if what == "write":  # the decoded array exists before the write starts
    from PIL import Image
    with Image.open(path) as img:
        arr = np.asarray(img)
    meta = {"media": "image", "mode": "RGBA" if arr.shape[2] == 4 else "RGB"}
    arr = _media.split_alpha(arr, meta)
reset()
before = peak()
if what == "read":
    signal, meta = _media.read_signal(path)
elif what == "asarray":
    _media._as_array = np.asarray
    signal, meta = _media.read_signal(path)
elif what == "split":
    signal, meta = _media.read_signal(path)
    signal = _media.split_alpha(signal, meta)
else:
    _media.write_signal(path + ".out.png", arr, meta, "png")
print(before, peak())
"""


def _photo(folder, size, alpha):
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size).astype(np.uint8)
    img = np.empty((size, size, 4 if alpha else 3), np.uint8)
    img[..., 0] = ramp[:, None]
    img[..., 1] = ramp[None, :]
    img[..., 2] = 255 - ramp[:, None] // 2 - ramp[None, :] // 2
    if alpha:
        img[..., 3] = ramp[None, ::-1]
    path = Path(folder) / f"photo_{size}_{'rgba' if alpha else 'rgb'}.png"
    Image.fromarray(img).save(path)
    return path


def _run(path, what):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), what],
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = map(float, out.stdout.split())
    return before, after


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=9000)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for alpha in (False, True):
            path = _photo(folder, args.size, alpha)
            kind = "RGBA" if alpha else "RGB"
            mb = args.size**2 * (4 if alpha else 3) / 2**20
            steps = [("read", "read"), ("read (np.asarray)", "asarray")]
            if alpha:
                steps.append(("read + split alpha", "split"))
            steps.append(("write", "write"))
            for label, what in steps:
                before, after = _run(path, what)
                rows.append((kind, label, mb, after, after - before))
    lines = [
        f"Peak RSS, {args.size} x {args.size} PNG (MiB; 'above start': above the "
        "resident size just before the step: sklearn_walloc._media imported and, "
        "for writes, the decoded array made)",
        "",
        "| image | step | array MiB | peak MiB | above start MiB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {kind} | {label} | {mb:.0f} | {peak:.0f} | {extra:.0f} |"
        for kind, label, mb, peak, extra in rows
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "media_memory.md").write_text(text)


if __name__ == "__main__":
    main()
