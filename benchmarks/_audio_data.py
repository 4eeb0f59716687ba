"""Real recorded audio for the benchmarks: Debian's ``sonic-pi-samples``.

The package ships 165 CC0 FLAC samples at 44.1 kHz (92 stereo, 73 mono; mostly
recorded drums, guitar, piano, choir and bells, a few synthesised) under
``/usr/share/sonic-pi/samples/``. When that folder is absent, the ``.deb`` is
fetched with ``apt-get download sonic-pi-samples`` and unpacked with
``dpkg -x`` (nothing is installed) into a cache folder,
``$WALLOC_AUDIO_CACHE`` or ``~/.cache/sklearn-walloc/sonic-pi-samples``. Needs
a Debian/Ubuntu system with the package in its apt lists (``apt-get update``).

Every file is read as 16-bit PCM (``soundfile``: the 24-bit files are reduced
to their top 16 bits). The split is a fixed rule on the sorted file names:
within each channel count, every fourth file (positions 3, 7, 11, ...) is held
out; the others are for fitting.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["SYSTEM_DIR", "audio_dir", "load_samples"]

SYSTEM_DIR = Path("/usr/share/sonic-pi/samples")
PACKAGE = "sonic-pi-samples"
HOLDOUT_EVERY = 4


def _cache_dir():
    env = os.environ.get("WALLOC_AUDIO_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "sklearn-walloc" / PACKAGE


def audio_dir():
    """The folder holding the FLAC samples, fetching the package if needed."""
    if SYSTEM_DIR.is_dir() and any(SYSTEM_DIR.glob("*.flac")):
        return SYSTEM_DIR
    cache = _cache_dir()
    target = cache / "usr/share/sonic-pi/samples"
    if target.is_dir() and any(target.glob("*.flac")):
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RuntimeError(
            f"{PACKAGE} not found and apt-get/dpkg are unavailable: "
            f"unpack the Debian package {PACKAGE} into {cache}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fetched = subprocess.run(
            ["apt-get", "download", PACKAGE],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        debs = glob.glob(os.path.join(tmp, f"{PACKAGE}_*.deb"))
        if not debs:
            raise RuntimeError(
                f"apt-get download {PACKAGE} failed (run apt-get update?): "
                f"{fetched.stderr.strip()[-500:]}"
            )
        subprocess.run(["dpkg", "-x", debs[0], str(cache)], check=True)
    return target


def load_samples(split=None, channels=None, max_seconds=None):
    """Samples as ``(name, int16 array (L, C), sample_rate)`` tuples.

    Parameters
    ----------
    split : {None, "fit", "holdout"}
        ``None``: every file; else the fixed split of the module docstring.
    channels : {None, 1, 2}
        Keep only mono (1) or stereo (2) files.
    max_seconds : float, default=None
        Keep at most the first ``max_seconds`` of each file.
    """
    import soundfile as sf

    files = sorted(audio_dir().glob("*.flac"))
    by_channels = {}
    for path in files:
        by_channels.setdefault(sf.info(str(path)).channels, []).append(path)
    out = []
    for n_channels, paths in sorted(by_channels.items()):
        if channels is not None and n_channels != channels:
            continue
        for k, path in enumerate(paths):
            held_out = k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
            if split == "holdout" and not held_out:
                continue
            if split == "fit" and held_out:
                continue
            data, rate = sf.read(str(path), dtype="int16", always_2d=True)
            if max_seconds is not None:
                data = data[: int(max_seconds * rate)]
            out.append((path.stem, np.ascontiguousarray(data), rate))
    return out
