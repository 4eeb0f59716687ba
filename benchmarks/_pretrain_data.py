"""Training data of the pretrained models: public photos and music from Debian.

Fetched with ``apt-get download`` + ``dpkg -x`` into ``$WALLOC_PRETRAIN_CACHE``
or ``~/.cache/sklearn-walloc/pretrained-data`` (nothing is installed):

- photos: the photographs among the Ubuntu community wallpapers of
  ``lomiri-wallpapers-16.04`` / ``-20.04`` (CC-BY-4.0, CC-BY-SA-3.0/4.0 and
  CC0-1.0, per file in the package's ``copyright``) and among KDE's
  ``plasma-workspace-wallpapers`` (LGPLv3 and CC-BY-SA-4.0, per wallpaper in
  its ``metadata.json``), drawings and renders left out, each downscaled
  (Lanczos) to each long side in ``PHOTO_SIDES``, plus the bundled fit photos
  (``load_photos(split="fit")``); the grey model takes the same photos
  through :func:`to_grey`;
- music: ``singularity-music`` (CC-BY-SA-3.0, Max McCracken; Ogg Vorbis at
  48 kHz, resampled to 44.1 kHz), ``CLIP_S`` seconds from each track.

No test or benchmark evaluates on these: the bundled hold-out photos, the
mate-backgrounds nature photos and the sonic-pi-samples clips stay held out.
``train_pretrained.py`` fits on them and ``training.py --data wallpapers``
records held-out curves of that training.
"""

import glob
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.signal import resample_poly

from sklearn_walloc.datasets import load_photos

__all__ = [
    "PHOTOS",
    "PLASMA",
    "PLASMA_PHOTOS",
    "fetch",
    "load_training_music",
    "load_training_photos",
    "to_grey",
]

# Long sides the wallpapers are downscaled to: each photo at each scale.
PHOTO_SIDES = tuple(
    int(v) for v in os.environ.get("WALLOC_PHOTO_SIDES", "1280").split(",")
)
CLIP_S = 40.0
PLASMA = "plasma-workspace-wallpapers"
PACKAGES = {
    "photos": ["lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", PLASMA],
    "music": ["singularity-music"],
}
# The photographs among the wallpapers (the rest are drawings and renders).
PHOTOS = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Infinite-Sea_by_Aury88.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)
# The photographs among Plasma's wallpapers (folders of usr/share/wallpapers;
# the rest are drawings and renders).
PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
MUSIC_LICENCE = "CC-BY-SA-3.0 (Max McCracken), see singularity-music's copyright"


def _cache():
    env = os.environ.get("WALLOC_PRETRAIN_CACHE")
    return Path(env) if env else Path.home() / ".cache/sklearn-walloc/pretrained-data"


def fetch(package):
    """Unpack the Debian package into the cache; return (root, version)."""
    root = _cache() / package
    stamp = root / ".version"
    if not stamp.exists():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
            (deb,) = glob.glob(os.path.join(tmp, f"{package}_*.deb"))
            subprocess.run(["dpkg", "-x", deb, str(root)], check=True)
            stamp.write_text(Path(deb).name.split("_")[1])
    return root, stamp.read_text()


def _licences(copyright_text):
    """File name -> licence, from a machine-readable Debian copyright file."""
    out = {}
    for stanza in re.split(r"\n\s*\n", copyright_text):
        files = re.search(r"^Files:\s*(.+)$", stanza, re.M)
        lic = re.search(r"^License:\s*(.+)$", stanza, re.M)
        if files and lic:
            for f in files.group(1).split():
                out.setdefault(Path(f).name, lic.group(1).strip())
    return out


def _lomiri_photos(root, package):
    """(name, path, licence) of the photographs in a lomiri wallpaper package."""
    text = (root / f"usr/share/doc/{package}/copyright").read_text()
    licences = _licences(text)
    for name in PHOTOS:
        hits = sorted(root.rglob(name))
        if hits:
            yield name, hits[0], licences.get(name, "see the package's copyright")


def _plasma_photos(root):
    """(name, path, licence) of Plasma's photographs: each at the largest
    landscape size its file names state (``WIDTHxHEIGHT.jpg``)."""
    for name in PLASMA_PHOTOS:
        folder = root / "usr/share/wallpapers" / name
        meta = json.loads((folder / "metadata.json").read_text())["KPlugin"]
        sizes = {}
        for path in (folder / "contents/images").iterdir():
            w, h = (int(v) for v in path.stem.split("x"))
            if w > h:
                sizes[w * h] = path
        author = ", ".join(a["Name"] for a in meta.get("Authors", []))
        yield name, sizes[max(sizes)], f"{meta['License']} ({author})"


def load_training_photos():
    """The training photos (RGB uint8) and one source record per photo."""
    sources, photos = [], []
    for package in PACKAGES["photos"]:
        root, version = fetch(package)
        found = (
            _plasma_photos(root) if package == PLASMA else _lomiri_photos(root, package)
        )
        for name, path, licence in found:
            if any(s["file"] == name for s in sources):
                continue
            img = Image.open(path).convert("RGB")
            used = []
            for side in PHOTO_SIDES:
                scale = side / max(img.size)
                size = (round(img.size[0] * scale), round(img.size[1] * scale))
                photos.append(np.asarray(img.resize(size, Image.LANCZOS)))
                used.append(list(size))
            sources.append(
                {
                    "package": f"{package} {version}",
                    "file": name,
                    "licence": licence,
                    "original_size": list(img.size),
                    "used_sizes": used,
                }
            )
    bundled, names = load_photos(split="fit", return_names=True)
    for p, n in zip(bundled, names):
        photos.append(p)
        sources.append(
            {
                "package": "scikit-image / scikit-learn (bundled)",
                "file": n,
                "licence": "see skimage.data / sklearn.datasets",
            }
        )
    return photos, sources


def to_grey(photo):
    """An RGB uint8 photo as grey uint8 ``(H, W)``: ITU-R BT.601 luma,
    ``L = (299 R + 587 G + 114 B) / 1000`` rounded, as Pillow's
    ``convert("L")`` computes it (which this calls; its fixed-point arithmetic
    differs from the rounded formula by one level in about 0.05% of pixels),
    and as most grey JPEGs and PNGs that users will compress were made."""
    return np.asarray(Image.fromarray(photo).convert("L"))


def load_training_music():
    import soundfile as sf

    root, version = fetch(PACKAGES["music"][0])
    clips, sources = [], []
    for path in sorted(root.rglob("*.ogg")):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        start = int(10 * rate)
        data = data[start : start + int(CLIP_S * rate)]
        if rate != 44100:
            g = np.gcd(44100, rate)
            data = resample_poly(data, 44100 // g, rate // g, axis=0)
        clips.append(np.clip(np.round(data * 32768), -32768, 32767).astype(np.int16))
        sources.append(
            {
                "package": f"singularity-music {version}",
                "file": path.name,
                "licence": MUSIC_LICENCE,
                "seconds": round(len(clips[-1]) / 44100, 1),
                "original_rate": rate,
            }
        )
    return clips, sources


# ---------------------------------------------------------------- the recipe
#: ``random_state`` of every pretrained fit.
SEED = 0
#: Five of the 32 photos validate (the default 0.1 would take three).
VALIDATION_FRACTION = 0.15


def recipe(steps, *, learning_rate=1e-3, batch_size=16, crop_size=None, verbose=0,
           **params):  # fmt: skip
    """The unfitted ``WallocTransformer`` the pretrained models are fitted
    with (``train_pretrained.py``; ``decoder_sweep.py`` trains other decoders
    the same way): ``params`` (structure), then ``steps`` of training with
    the library's trainer, keeping the state that validates best on
    ``VALIDATION_FRACTION`` of the signals, with a patience that covers the
    whole run (validation first dips, then rises after 2-4k steps)."""
    from sklearn_walloc import WallocTransformer

    return WallocTransformer(
        **params,
        max_iter=steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        crop_size=crop_size,
        validation_fraction=VALIDATION_FRACTION,
        n_iter_no_change=max(1, steps),
        tol=0.0,
        random_state=SEED,
        device="cpu",
        verbose=verbose,
    )
