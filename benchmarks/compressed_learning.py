"""Compressed learning: classifiers on WaLLoC latents vs PCA vs downsampling.

What it measures
----------------
The paper's claim that a classifier can be trained directly on WaLLoC latents,
in place of pixels reduced by PCA or by downsampling, tested on real labelled
images that ship with packages:

- ``digits``: scikit-learn ``load_digits`` (1797 8x8 grey digits, 10 classes);
- ``lfw``: scikit-image ``data.lfw_subset()`` (200 25x25 grey crops of the LFW
  data set; per its docstring the first 100 are faces, the last 100 non-faces);
- ``textures``: non-overlapping 32x32 patches cut from scikit-image's 512x512
  grey texture photos ``brick``, ``grass`` and ``gravel`` (3 classes, 256 each);
- ``textures64``: 64x64 patches of the same three photos, large enough for
  ``levels=3``. Each photo is cut into 128x128 tiles; each tile gives 3x3
  patches at a stride of 32 (they overlap inside the tile, never across
  tiles), and a tile is a group: all its patches are in the same fold
  (``StratifiedGroupKFold``), so no pixel is in both a training and a test
  patch (432 patches, 48 tiles);
- ``scenes64``: 64x64 RGB patches, cut the same way (128x128 tiles, grouped
  folds), of the three bundled photos that no shipped model was trained on
  (``sklearn_walloc.datasets.HOLDOUT_PHOTOS``: astronaut, coffee, china); the
  label is the photo a patch comes from (3 classes; a test tile is a region of
  the photo the classifier never saw). RGB, so the pretrained models apply.

Reductions, at the same number of values per image for each factor (WaLLoC's
latent count sets it):

- **WaLLoC closed form**: ``WallocTransformer(levels=J, latent_dim=k,
  max_iter=0)``, flat input with ``signal_shape``; integer latents;
- **WaLLoC trained**: the same with ``max_iter=TRAIN_STEPS`` (the
  wavelet-domain trainer from the closed form, library defaults otherwise:
  learning rate, batch, early stopping on a validation split of the training
  images that keeps the best state, possibly the closed form). Fitted inside
  each fold on the training fold's images (labels unused), like every other
  reduction; the steps run and kept and the validation gain are recorded;
- **WaLLoC pretrained** (``scenes64`` only, where the input form fits):
  ``WallocTransformer.from_pretrained("rgb-16x")`` (levels=3, latent_dim=12)
  and ``"rgb-4x"`` (levels=2, latent_dim=12), used as shipped (no fit); they
  were trained on other photos (``sklearn_walloc/data/pretrained/TRAINING.md``);
- **PCA**: scikit-learn ``PCA`` of the whole image with as many components
  (capped at the number of training images minus one), for the linear model; for
  the CNN, **block PCA**: the PCA of 2**J x 2**J pixel blocks (all channels) with
  ``latent_dim`` components, a latent grid of the same shape as WaLLoC's (PCA
  without the wavelet packet transform);
- **downsampling**: Pillow bicubic (antialiased) resize of each channel to the
  side that gives the closest number of values;
- **pixels**: the images as they are (no reduction), as a reference.

Classifiers, with the same settings for every reduction (none tuned):
``StandardScaler`` + ``LogisticRegression(C=1, max_iter=3000)``, and a small CNN
(torch: two 3x3 conv layers of 32 channels with ReLU, then a linear layer on the
flattened grid; Adam 1e-3, batch 64, ``--epochs`` epochs, inputs standardised per
channel on the training fold) on the latent grid (channels = ``latent_dim``),
the block-PCA grid or the downsampled image. Every reduction is fitted inside
each fold on the training images only. Accuracy: mean and 95% t-interval over K
folds (stratified, shuffled, seed 0; grouped by tile for the 64x64 tasks);
folds share training data, so the interval is indicative. The report also gives
paired per-fold differences (a WaLLoC variant minus PCA / downsampling, same
fold, same classifier) with their 95% t-interval. Encode time: wall-clock
``transform`` of all images of the data set by the reduction fitted in the
fold, in microseconds per image, mean over folds.

Outputs ``compressed_learning.{md,csv,json,png}`` in ``--out``. Run
``python benchmarks/compressed_learning.py`` (35 minutes with one torch thread on
2 CPU cores shared under a load average of 6-7, 21 of them for ``scenes64``;
``--datasets`` picks data sets) or ``--quick`` (2 folds, one reduction factor
per data set, 3 epochs, 30 training steps: a smoke run, about 4 minutes there).
"""

import math
import sys

import numpy as np
import torch
from _common import (
    BenchmarkRun,
    Timer,
    benchmark_parser,
    markdown_table,
    mean_ci95,
    save_figure,
)
from _machine import machine_line
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_walloc import WallocTransformer
from sklearn_walloc.datasets import HOLDOUT_PHOTOS, load_photos

SEED = 0
TRAIN_STEPS = 300
QUICK_TRAIN_STEPS = 30
WALLOC = ["WaLLoC closed form", "WaLLoC trained", "WaLLoC pretrained"]
BASELINES = ["PCA", "downsampling"]
# (levels, latent_dim) -> shipped model of that structure, for RGB input
PRETRAINED = {(3, 12): "rgb-16x", (2, 12): "rgb-4x"}
TEXTURES = ["brick", "grass", "gravel"]


# ------------------------------------------------------------------ data
def load_digits_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y, None, (8, 8, 1), "scikit-learn load_digits"


def load_lfw_data():
    from skimage.data import lfw_subset

    X = lfw_subset().astype(np.float32)
    y = np.r_[np.ones(100, int), np.zeros(100, int)]  # faces first, per docstring
    source = "scikit-image data.lfw_subset()"
    return X.reshape(len(X), -1), y, None, (25, 25, 1), source


def load_texture_data(patch=32):
    import skimage.data

    X, y = [], []
    for label, name in enumerate(TEXTURES):
        img = getattr(skimage.data, name)().astype(np.float32)
        h, w = img.shape[0] // patch * patch, img.shape[1] // patch * patch
        p = img[:h, :w].reshape(h // patch, patch, w // patch, patch)
        p = p.transpose(0, 2, 1, 3).reshape(-1, patch * patch)
        X.append(p)
        y.append(np.full(len(p), label))
    source = "non-overlapping 32x32 patches of scikit-image " + "/".join(TEXTURES)
    return np.concatenate(X), np.concatenate(y), None, (patch, patch, 1), source


def _tiled_patches(images, tile=128, patch=64, stride=32):
    """Patches inside non-overlapping tiles; returns (X, y, groups).

    ``images``: list of (H, W, C) arrays, one class each. A patch never crosses
    its tile, so grouping by tile keeps every pixel in one fold.
    """
    X, y, groups = [], [], []
    offsets = range(0, tile - patch + 1, stride)
    for label, img in enumerate(images):
        for ti in range(img.shape[0] // tile):
            for tj in range(img.shape[1] // tile):
                for di in offsets:
                    for dj in offsets:
                        i, j = ti * tile + di, tj * tile + dj
                        X.append(img[i : i + patch, j : j + patch].reshape(-1))
                        y.append(label)
                        groups.append(f"{label}-{ti}-{tj}")
    _, groups = np.unique(groups, return_inverse=True)
    return np.stack(X), np.array(y), groups


def load_texture64_data():
    import skimage.data

    images = [getattr(skimage.data, n)()[..., None] for n in TEXTURES]
    X, y, groups = _tiled_patches(images)
    source = (
        "64x64 patches (stride 32 inside 128x128 tiles, folds grouped by tile) "
        "of scikit-image " + "/".join(TEXTURES)
    )
    return X.astype(np.float32), y, groups, (64, 64, 1), source


def load_scene_data():
    X, y, groups = _tiled_patches(load_photos(HOLDOUT_PHOTOS))
    source = (
        "64x64 RGB patches (stride 32 inside 128x128 tiles, folds grouped by "
        "tile) of the bundled photos " + "/".join(HOLDOUT_PHOTOS) + "; label: photo"
    )
    return X, y, groups, (64, 64, 3), source  # uint8, as the pretrained models read


# name -> (loader, [(levels, latent_dim), ...] full, the same for --quick)
DATASETS = {
    "digits": (load_digits_data, [(2, 1), (2, 2), (2, 4)], [(2, 2)]),
    "lfw": (load_lfw_data, [(2, 1), (2, 2), (2, 4)], [(2, 2)]),
    "textures": (load_texture_data, [(2, 1), (2, 2), (2, 4)], [(2, 2)]),
    "textures64": (load_texture64_data, [(3, 1), (3, 4), (3, 16)], [(3, 4)]),
    "scenes64": (load_scene_data, [(3, 12), (2, 12)], [(3, 12)]),
}


# ------------------------------------------------------------ reductions
class Downsample(TransformerMixin, BaseEstimator):
    """Bicubic (antialiased) resize of each channel of flat images to ``size``."""

    def __init__(self, shape=(8, 8, 1), size=(4, 4)):
        self.shape = shape
        self.size = size

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        h, w = self.size
        c = self.shape[2]
        imgs = np.asarray(X, dtype=np.float32).reshape(-1, *self.shape)
        out = np.empty((len(X), h, w, c), dtype=np.float32)
        for i, img in enumerate(imgs):
            for k in range(c):
                band = Image.fromarray(np.ascontiguousarray(img[..., k]))
                out[i, ..., k] = np.asarray(band.resize((w, h), Image.BICUBIC))
        return out.reshape(len(X), -1)


class BlockPCA(TransformerMixin, BaseEstimator):
    """PCA of b x b pixel blocks (symmetric padding): a grid like WaLLoC's."""

    def __init__(self, shape=(8, 8, 1), block=4, n_components=1):
        self.shape = shape
        self.block = block
        self.n_components = n_components

    def _blocks(self, X):
        b = self.block
        imgs = np.asarray(X, dtype=np.float32).reshape(-1, *self.shape)
        ph, pw = -self.shape[0] % b, -self.shape[1] % b
        imgs = np.pad(imgs, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="symmetric")
        n, h, w, c = imgs.shape
        v = imgs.reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)
        return v.reshape(-1, b * b * c)

    def fit(self, X, y=None):
        self.pca_ = PCA(self.n_components, random_state=SEED).fit(self._blocks(X))
        return self

    def transform(self, X):
        z = self.pca_.transform(self._blocks(X))  # (n * gh * gw, k)
        return z.reshape(len(X), -1).astype(np.float32)  # channels last, C order


class Pretrained(TransformerMixin, BaseEstimator):
    """A shipped model on flat images: nothing is fitted, the weights are as shipped."""

    def __init__(self, name="rgb-16x", shape=(64, 64, 3)):
        self.name = name
        self.shape = shape

    def fit(self, X, y=None):
        self.model_ = WallocTransformer.from_pretrained(self.name)
        return self

    def transform(self, X):
        Z = self.model_.transform(np.asarray(X).reshape(-1, *self.shape))
        return Z.reshape(len(X), -1)


def reductions(shape, n_train, levels, latent_dim, train_steps):
    """Every reduction at one factor: name -> (estimator, CNN grid, values)."""
    h, w, c = shape
    gh, gw = math.ceil(h / 2**levels), math.ceil(w / 2**levels)
    values = gh * gw * latent_dim
    s = math.sqrt(values / (h * w * c))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    grid = (gh, gw, latent_dim)
    walloc = WallocTransformer(
        latent_dim=latent_dim,
        levels=levels,
        signal_shape=shape if c > 1 else shape[:2],
        max_iter=0,
        random_state=SEED,
    )
    walloc_trained = clone(walloc).set_params(max_iter=train_steps)
    out = {
        "WaLLoC closed form": (walloc, grid, values),
        "WaLLoC trained": (walloc_trained, grid, values),
    }
    if c == 3 and (levels, latent_dim) in PRETRAINED:
        pretrained = Pretrained(PRETRAINED[levels, latent_dim], shape)
        out["WaLLoC pretrained"] = (pretrained, grid, values)
    k = min(values, n_train - 1)
    out["PCA"] = (PCA(k, random_state=SEED), None, k)
    out["block PCA"] = (BlockPCA(shape, 2**levels, latent_dim), grid, values)
    out["downsampling"] = (Downsample(shape, size), (*size, c), size[0] * size[1] * c)
    return out


def _training_record(model):
    """What the trainer did in one fit (empty for other reductions)."""
    if not isinstance(model, WallocTransformer) or model.max_iter == 0:
        return {}
    gain = model.validation_gain_
    return {
        "steps_run": model.n_iter_,
        "steps_kept": model.n_iter_kept_,
        "validation_gain_db": float("nan") if gain is None else float(gain),
    }


# -------------------------------------------------------------------- CNN
class SmallCNN(torch.nn.Module):
    def __init__(self, channels, grid, n_classes, width=32):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
        )
        self.head = torch.nn.Linear(width * grid[0] * grid[1], n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def cnn_accuracy(Z_train, y_train, Z_test, y_test, grid, epochs, seed):
    """Train the small CNN on (n, gh, gw, C) grids; return test accuracy."""
    gh, gw, c = grid
    classes = np.unique(y_train)
    index = {v: i for i, v in enumerate(classes)}

    def to_tensor(Z):
        Z = np.asarray(Z, dtype=np.float32).reshape(-1, gh, gw, c)
        return torch.from_numpy(np.ascontiguousarray(Z.transpose(0, 3, 1, 2)))

    xt, xv = to_tensor(Z_train), to_tensor(Z_test)
    mean = xt.mean(dim=(0, 2, 3), keepdim=True)
    std = xt.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    xt, xv = (xt - mean) / std, (xv - mean) / std
    yt = torch.tensor([index[v] for v in y_train])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallCNN(c, (gh, gw), len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for start in range(0, len(xt), 64):
            sel = perm[start : start + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[sel]), yt[sel])
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = classes[model(xv).argmax(dim=1).numpy()]
    return float(np.mean(pred == y_test))


def linear_model():
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=3000, random_state=SEED)
    )


# ------------------------------------------------------------------- runs
def fold_splits(X, y, groups, folds):
    if groups is None:
        cv = StratifiedKFold(folds, shuffle=True, random_state=SEED)
        return list(cv.split(X, y))
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=SEED)
    return list(cv.split(X, y, groups))


def run_dataset(name, X, y, groups, shape, factors, folds, epochs, train_steps):
    splits = fold_splits(X, y, groups, folds)
    n_train = min(len(tr) for tr, _ in splits)
    h, w, c = shape
    Xf = X.astype(np.float32)  # pixels for the classifiers and the baselines
    records = []  # one per (factor, reduction, classifier, fold)
    base = dict(dataset=name, levels=None, latent_dim=None, note="")
    for fold, (tr, te) in enumerate(splits):
        clock = Timer()  # this fold's stopwatch
        acc = linear_model().fit(Xf[tr], y[tr]).score(Xf[te], y[te])
        cnn = cnn_accuracy(Xf[tr], y[tr], Xf[te], y[te], shape, epochs, fold)
        for clf, a in (("logistic", acc), ("CNN", cnn)):
            records.append(
                dict(
                    base, factor=1.0, method="pixels", classifier=clf, fold=fold,
                    accuracy=a, values=h * w * c, encode_us=0.0, fit_s=0.0,
                )
            )  # fmt: skip
        for levels, ld in factors:
            reds = reductions(shape, n_train, levels, ld, train_steps)
            factor = h * w * c / reds["WaLLoC closed form"][2]
            for method, (red, grid, values) in reds.items():
                # the WaLLoC models read the data in its own type (uint8 RGB)
                data = X if method.startswith("WaLLoC") else Xf
                with Timer() as tf:
                    model = clone(red).fit(data[tr])
                with Timer() as t:
                    Z = model.transform(data)
                common = dict(
                    base, levels=levels, latent_dim=ld, factor=factor, fold=fold,
                    values=values, encode_us=1e6 * t.s / len(X), fit_s=tf.s,
                    **_training_record(model),
                )  # fmt: skip
                if method != "block PCA":
                    a = linear_model().fit(Z[tr], y[tr]).score(Z[te], y[te])
                    records.append(
                        dict(common, method=method, classifier="logistic", accuracy=a)
                    )
                if grid is not None:
                    a = cnn_accuracy(Z[tr], y[tr], Z[te], y[te], grid, epochs, fold)
                    block = method == "block PCA"
                    records.append(
                        dict(
                            common,
                            method="PCA" if block else method,
                            classifier="CNN",
                            accuracy=a,
                            note="block PCA" if block else "",
                        )
                    )
        print(f"  {name} fold {fold}: {clock.elapsed():.1f} s", flush=True)
    keys = set().union(*records)
    return [{k: r.get(k, "") for k in sorted(keys, key=_column_order)} for r in records]


_COLUMNS = [
    "dataset", "levels", "latent_dim", "factor", "values", "method", "note",
    "classifier", "fold", "accuracy", "encode_us", "fit_s", "steps_run",
    "steps_kept", "validation_gain_db",
]  # fmt: skip


def _column_order(key):
    return _COLUMNS.index(key) if key in _COLUMNS else len(_COLUMNS)


def _key(r):
    return (r["dataset"], r["levels"], r["latent_dim"], r["method"], r["classifier"])


def summarise(records):
    groups = {}
    for r in records:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for k, g in groups.items():
        mean, half = mean_ci95([r["accuracy"] for r in g])
        s = {
            "dataset": k[0],
            "levels": k[1],
            "latent_dim": k[2],
            "method": k[3],
            "classifier": k[4],
            "factor": g[0]["factor"],
            "values": g[0]["values"],
            "note": g[0]["note"],
            "accuracy": mean,
            "ci95": half,
            "folds": len(g),
            "encode_us": float(np.mean([r["encode_us"] for r in g])),
            "fit_s": float(np.mean([r["fit_s"] for r in g])),
        }
        if g[0].get("steps_run", "") != "":
            s["steps_kept"] = [r["steps_kept"] for r in g]
            s["validation_gain_db"] = float(
                np.nanmean([r["validation_gain_db"] for r in g])
            )
        out.append(s)
    return out


def paired(records):
    """Per-fold differences: each WaLLoC variant minus each baseline."""
    by_key = {}
    for r in records:
        by_key.setdefault(_key(r), {})[r["fold"]] = r["accuracy"]
    out = []
    for (ds, lv, ld, method, clf), acc in by_key.items():
        if method not in WALLOC:
            continue
        others = ["WaLLoC closed form"] if method != "WaLLoC closed form" else []
        for other in others + BASELINES:
            ref = by_key.get((ds, lv, ld, other, clf))
            if ref is None:
                continue
            diff = [acc[f] - ref[f] for f in sorted(acc) if f in ref]
            mean, half = mean_ci95(diff)
            out.append(
                dict(
                    dataset=ds, levels=lv, latent_dim=ld, classifier=clf,
                    method=method, versus=other, diff=mean, ci95=half,
                    folds=len(diff),
                )
            )  # fmt: skip
    return out


# ------------------------------------------------------------------ report
def _pct(mean, half):
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def table(summary, dataset):
    rows = []
    for s in summary:
        if s["dataset"] != dataset:
            continue
        method = s["method"] + (f" ({s['note']})" if s["note"] else "")
        if "steps_kept" in s:
            kept = "/".join(str(k) for k in s["steps_kept"])
            train = f"kept steps {kept}; val. {s['validation_gain_db']:+.2f} dB"
        else:
            train = ""
        rows.append(
            [
                f"{s['factor']:.1f}x" + (f" (J={s['levels']})" if s["levels"] else ""),
                s["values"],
                method,
                s["classifier"],
                _pct(s["accuracy"], s["ci95"]),
                f"{s['encode_us']:.1f}",
                f"{s['fit_s']:.2f}",
                train,
            ]
        )
    head = ["reduction", "values/image", "method", "classifier"]
    head += ["accuracy % (95% CI)", "encode µs/image", "fit s", "training"]
    return markdown_table(head, rows)


def paired_table(diffs, dataset):
    rows = [
        [
            f"J={d['levels']}, k={d['latent_dim']}",
            d["classifier"],
            f"{d['method']} − {d['versus']}",
            f"{100 * d['diff']:+.1f} ± {100 * d['ci95']:.1f}",
            _verdict(d),
        ]
        for d in diffs
        if d["dataset"] == dataset
    ]
    head = ["factor", "classifier", "difference", "points (95% CI)", "verdict"]
    return markdown_table(head, rows)


def _verdict(d):
    if d["diff"] - d["ci95"] > 0:
        return "better"
    if d["diff"] + d["ci95"] < 0:
        return "worse"
    return "no significant difference"


def markdown(report):
    p = report["parameters"]
    mode = " (QUICK SMOKE RUN: not the results)" if p["quick"] else ""
    lines = [
        f"# Compressed learning: classifiers on reduced images{mode}",
        "",
        f"Machine: {machine_line(report['machine'])}. Total runtime "
        f"{report['runtime_s']:.0f} s (1-minute load average "
        f"{report['machine']['load_average'][0]:.1f} at the start, "
        f"{report['machine_end']['load_average'][0]:.1f} at the end: the machine is "
        "shared, so treat times as rough).",
        "",
        f"{p['folds']}-fold stratified cross-validation (shuffled, seed {SEED}; "
        "grouped by 128x128 tile for the 64x64 tasks); every reduction is fitted "
        "on the training fold only. WaLLoC closed form: "
        "`WallocTransformer(levels=J, latent_dim=k, max_iter=0)`; WaLLoC trained: "
        f"the same with `max_iter={p['train_steps']}` (library defaults otherwise; "
        "early stopping on a validation split of the training fold keeps the best "
        "state, step 0 being the closed form); WaLLoC pretrained: "
        "`from_pretrained('rgb-16x')` / `('rgb-4x')` as shipped (RGB only); "
        "PCA: whole-image PCA for the logistic model, PCA of 2^J x 2^J blocks "
        "(same grid as WaLLoC) for the CNN; downsampling: Pillow bicubic to the "
        "closest number of values. Logistic: StandardScaler + "
        "LogisticRegression(C=1); CNN: 2 conv3x3 layers (32 ch) + linear, Adam "
        f"1e-3, {p['epochs']} epochs, batch 64. Encode time: transform of every "
        "image of the data set, per image; fit s: fitting the reduction on the "
        "training fold. Training: the step kept in each fold and the mean "
        "validation gain (dB PSNR on the training fold's validation split).",
        "",
    ]
    for ds, info in report["data"].items():
        shape = "x".join(str(v) for v in info["shape"])
        lines += [
            f"## {ds}: {info['n']} images {shape}, "
            f"{info['classes']} classes ({info['source']})",
            "",
            f"Majority class: {100 * info['majority']:.1f}% of the images. "
            f"Runtime {info['runtime_s']:.0f} s.",
            "",
            table(report["summary"], ds),
            "",
            "Paired per-fold differences in accuracy (percentage points):",
            "",
            paired_table(report["paired"], ds),
            "",
        ]
    if report["pca_capped"]:
        lines += [
            "PCA components are capped at the training-fold size minus one where "
            "the matched number of values exceeds it (" + report["pca_capped"] + ").",
            "",
        ]
    return "\n".join(lines)


def plot(summary, datasets, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    colors = {
        "WaLLoC closed form": "crimson",
        "WaLLoC trained": "tab:orange",
        "WaLLoC pretrained": "tab:purple",
        "PCA": "tab:gray",
        "downsampling": "tab:brown",
    }
    fig, axes = plt.subplots(
        2, len(datasets), figsize=(4.0 * len(datasets), 7), squeeze=False
    )
    for j, ds in enumerate(datasets):
        for i, clf in enumerate(["logistic", "CNN"]):
            ax = axes[i, j]
            for m, (method, color) in enumerate(colors.items()):
                pts = sorted(
                    (s["factor"], s["accuracy"], s["ci95"])
                    for s in summary
                    if s["dataset"] == ds
                    and s["method"] == method
                    and s["classifier"] == clf
                )
                if pts:
                    f, a, c = np.array(pts).T
                    f = f * 1.04 ** (m - 2)  # side by side, so the bars show
                    ax.errorbar(
                        f, 100 * a, 100 * c, fmt="o-", color=color, capsize=3,
                        label=method, ms=4,
                    )  # fmt: skip
            ref = [
                s
                for s in summary
                if s["dataset"] == ds and s["method"] == "pixels"
                if s["classifier"] == clf
            ]
            if ref:
                ax.axhline(100 * ref[0]["accuracy"], color="k", ls=":", label="pixels")
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator([2, 4, 8, 16, 32, 64]))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("dimensionality reduction (log scale)")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{ds}, {clf}")
            ax.grid(alpha=0.3)
            if i == 0 and j == len(datasets) - 1:
                ax.legend(fontsize=7)
    save_figure(fig, path)


def _replot(report, path):
    plot(report["summary"], list(report["data"]), path)


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = benchmark_parser(__doc__, threads=1, replot="compressed_learning.json")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--train-steps", type=int, default=None,
        help=f"max_iter of the trained WaLLoC (default {TRAIN_STEPS}; "
        f"{QUICK_TRAIN_STEPS} with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS)
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        BenchmarkRun.replot(args.out, "compressed_learning", _replot, markdown)
        return 0
    run = BenchmarkRun("compressed_learning", args)
    folds = 2 if args.quick else args.folds
    epochs = 3 if args.quick else args.epochs
    train_steps = args.train_steps
    if train_steps is None:
        train_steps = QUICK_TRAIN_STEPS if args.quick else TRAIN_STEPS
    records, data, capped = [], {}, []
    for name in args.datasets:
        loader, factors, quick_factors = DATASETS[name]
        factors = quick_factors if args.quick else factors
        X, y, groups, shape, source = loader()
        data[name] = {
            "n": len(X),
            "shape": list(shape),
            "classes": len(np.unique(y)),
            "majority": float(np.bincount(y).max() / len(y)),
            "groups": None if groups is None else len(np.unique(groups)),
            "source": source,
            "factors": factors,
        }
        print(f"{name}: {X.shape}, {data[name]['classes']} classes", flush=True)
        with Timer() as t:
            recs = run_dataset(
                name, X, y, groups, shape, factors, folds, epochs, train_steps
            )
        data[name]["runtime_s"] = t.s
        records += recs
        for r in recs:
            if r["method"] == "PCA" and r["classifier"] == "logistic":
                if r["values"] < shape[2] * round(shape[0] * shape[1] / r["factor"]):
                    capped.append(f"{name}: {r['values']} for {r['factor']:.1f}x")
    summary = summarise(records)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(summary, list(data), args.out / "compressed_learning.png")
    report = {
        "machine": run.machine,
        "parameters": {
            "quick": args.quick,
            "folds": folds,
            "epochs": epochs,
            "train_steps": train_steps,
            "threads": args.threads,
            "random_state": SEED,
        },
        "data": data,
        "pca_capped": "; ".join(sorted(set(capped))),
        "summary": summary,
        "paired": paired(records),
        "per_fold": records,
    }
    run.finish(report, markdown, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
