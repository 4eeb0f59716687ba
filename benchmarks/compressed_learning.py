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
  grey texture photos ``brick``, ``grass`` and ``gravel`` (3 classes, 256 each).

Reductions, at the same number of values per image for each factor (WaLLoC's
latent count sets it):

- **WaLLoC**: ``WallocTransformer(levels=2, latent_dim in {1, 2, 4},
  max_iter=0)`` (closed form: training inside every fold would dominate the CPU
  budget), flat input with ``signal_shape``; integer latents;
- **PCA**: scikit-learn ``PCA`` of the whole image with as many components
  (capped at the number of training images minus one), for the linear model; for
  the CNN, **block PCA**: the PCA of 4x4 pixel blocks with ``latent_dim``
  components, a latent grid of the same shape as WaLLoC's (PCA without the
  wavelet packet transform);
- **downsampling**: Pillow bicubic (antialiased) resize of the image to the
  side that gives the closest number of values;
- **pixels**: the images as they are (no reduction), as a reference.

Classifiers, with the same settings for every reduction (none tuned):
``StandardScaler`` + ``LogisticRegression(C=1, max_iter=3000)``, and a small CNN
(torch: two 3x3 conv layers of 32 channels with ReLU, then a linear layer on the
flattened grid; Adam 1e-3, batch 64, ``--epochs`` epochs, inputs standardised per
channel on the training fold) on the latent grid (channels = ``latent_dim``),
the block-PCA grid or the downsampled image. Every reduction is fitted inside
each fold on the training images only (a ``Pipeline``). Accuracy: mean and 95%
t-interval over stratified K folds (shuffled, seed 0; folds share training
data, so the interval is indicative). Encode time: wall-clock ``transform`` of
all images of the data set by the reduction fitted in the fold, in microseconds
per image, mean over folds.

Outputs ``compressed_learning.{md,csv,json,png}`` in ``--out``. Run
``python benchmarks/compressed_learning.py`` (about 18 minutes on 2 shared CPU cores) or
``--quick`` (2 folds, one reduction factor, 3 epochs: a smoke run).
"""

import math
import sys
import time

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
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_walloc import WallocTransformer

SEED = 0
LEVELS = 2
LATENT_DIMS = [1, 2, 4]
METHODS = ["WaLLoC", "PCA", "downsampling"]


# ------------------------------------------------------------------ data
def load_digits_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y, (8, 8), "scikit-learn load_digits"


def load_lfw_data():
    from skimage.data import lfw_subset

    X = lfw_subset().astype(np.float32)
    y = np.r_[np.ones(100, int), np.zeros(100, int)]  # faces first, per docstring
    return X.reshape(len(X), -1), y, (25, 25), "scikit-image data.lfw_subset()"


def load_texture_data(patch=32):
    import skimage.data

    names = ["brick", "grass", "gravel"]
    X, y = [], []
    for label, name in enumerate(names):
        img = getattr(skimage.data, name)().astype(np.float32)
        h, w = img.shape[0] // patch * patch, img.shape[1] // patch * patch
        p = img[:h, :w].reshape(h // patch, patch, w // patch, patch)
        p = p.transpose(0, 2, 1, 3).reshape(-1, patch * patch)
        X.append(p)
        y.append(np.full(len(p), label))
    source = "32x32 patches of scikit-image " + "/".join(names)
    return np.concatenate(X), np.concatenate(y), (patch, patch), source


DATASETS = {
    "digits": load_digits_data,
    "lfw": load_lfw_data,
    "textures": load_texture_data,
}


# ------------------------------------------------------------ reductions
class Downsample(TransformerMixin, BaseEstimator):
    """Bicubic (antialiased) resize of flat grey images to ``size`` (h, w)."""

    def __init__(self, shape=(8, 8), size=(4, 4)):
        self.shape = shape
        self.size = size

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        h, w = self.size
        out = np.empty((len(X), h * w), dtype=np.float32)
        for i, row in enumerate(np.asarray(X, dtype=np.float32)):
            img = Image.fromarray(row.reshape(self.shape))
            out[i] = np.asarray(img.resize((w, h), Image.BICUBIC)).ravel()
        return out


class BlockPCA(TransformerMixin, BaseEstimator):
    """PCA of b x b pixel blocks (symmetric padding): a grid like WaLLoC's."""

    def __init__(self, shape=(8, 8), block=4, n_components=1):
        self.shape = shape
        self.block = block
        self.n_components = n_components

    def _blocks(self, X):
        b = self.block
        imgs = np.asarray(X, dtype=np.float32).reshape(-1, *self.shape)
        ph, pw = -self.shape[0] % b, -self.shape[1] % b
        imgs = np.pad(imgs, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
        n, h, w = imgs.shape
        v = imgs.reshape(n, h // b, b, w // b, b).transpose(0, 1, 3, 2, 4)
        self.grid_ = (h // b, w // b)
        return v.reshape(-1, b * b)

    def fit(self, X, y=None):
        self.pca_ = PCA(self.n_components, random_state=SEED).fit(self._blocks(X))
        return self

    def transform(self, X):
        z = self.pca_.transform(self._blocks(X))  # (n * gh * gw, k)
        return z.reshape(len(X), -1).astype(np.float32)  # channels last, C order


def reductions(shape, n_train, latent_dim):
    """The three reductions at one factor, and the grid each gives to the CNN."""
    h, w = shape
    gh, gw = math.ceil(h / 2**LEVELS), math.ceil(w / 2**LEVELS)
    values = gh * gw * latent_dim
    s = math.sqrt(values / (h * w))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    k = min(values, n_train - 1)
    walloc = WallocTransformer(
        latent_dim=latent_dim,
        levels=LEVELS,
        signal_shape=shape,
        max_iter=0,
        random_state=SEED,
    )
    return {
        "WaLLoC": (walloc, (gh, gw, latent_dim), values),
        "PCA": (PCA(k, random_state=SEED), None, k),
        "block PCA": (
            BlockPCA(shape, 2**LEVELS, latent_dim),
            (gh, gw, latent_dim),
            values,
        ),
        "downsampling": (Downsample(shape, size), (*size, 1), size[0] * size[1]),
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
        return torch.from_numpy(
            np.ascontiguousarray(Z.reshape(-1, gh, gw, c).transpose(0, 3, 1, 2))
        ).float()

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
def run_dataset(name, X, y, shape, latent_dims, folds, epochs):
    cv = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    splits = list(cv.split(X, y))
    n_train = min(len(tr) for tr, _ in splits)
    h, w = shape
    records = []  # one per (factor, reduction, classifier, fold)
    configs = [(ld, reductions(shape, n_train, ld)) for ld in latent_dims]
    for fold, (tr, te) in enumerate(splits):
        t0 = time.perf_counter()
        # pixels reference
        acc = linear_model().fit(X[tr], y[tr]).score(X[te], y[te])
        cnn = cnn_accuracy(X[tr], y[tr], X[te], y[te], (h, w, 1), epochs, fold)
        for clf, a in (("logistic", acc), ("CNN", cnn)):
            records.append(
                dict(
                    dataset=name, factor=1.0, latent_dim=None, method="pixels",
                    classifier=clf, fold=fold, accuracy=a, values=h * w,
                    encode_us=0.0,
                )
            )  # fmt: skip
        for ld, reds in configs:
            for method, (red, grid, values) in reds.items():
                model = clone(red).fit(X[tr])
                with Timer() as t:
                    Z = model.transform(X)
                encode_us = 1e6 * t.s / len(X)
                factor = h * w / values
                common = dict(
                    dataset=name, factor=factor, latent_dim=ld, fold=fold,
                    values=values, encode_us=encode_us,
                )  # fmt: skip
                if method != "block PCA":
                    a = linear_model().fit(Z[tr], y[tr]).score(Z[te], y[te])
                    records.append(
                        dict(common, method=method, classifier="logistic", accuracy=a)
                    )
                if grid is not None:
                    a = cnn_accuracy(Z[tr], y[tr], Z[te], y[te], grid, epochs, fold)
                    cnn_method = "PCA" if method == "block PCA" else method
                    records.append(
                        dict(
                            common,
                            method=cnn_method,
                            classifier="CNN",
                            accuracy=a,
                            note="block PCA" if method == "block PCA" else "",
                        )
                    )
        print(
            f"  {name} fold {fold}: {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    for r in records:
        r.setdefault("note", "")
    return records


def summarise(records):
    keys = []
    for r in records:
        k = (r["dataset"], r["latent_dim"], r["method"], r["classifier"])
        if k not in keys:
            keys.append(k)
    out = []
    for k in keys:
        g = [
            r
            for r in records
            if (r["dataset"], r["latent_dim"], r["method"], r["classifier"]) == k
        ]
        mean, half = mean_ci95([r["accuracy"] for r in g])
        out.append(
            {
                "dataset": k[0],
                "latent_dim": k[1],
                "method": k[2],
                "classifier": k[3],
                "factor": g[0]["factor"],
                "values": g[0]["values"],
                "note": g[0]["note"],
                "accuracy": mean,
                "ci95": half,
                "folds": len(g),
                "encode_us": float(np.mean([r["encode_us"] for r in g])),
            }
        )
    return out


# ------------------------------------------------------------------ report
def table(summary, dataset):
    rows = []
    for s in summary:
        if s["dataset"] != dataset:
            continue
        method = s["method"] + (f" ({s['note']})" if s["note"] else "")
        rows.append(
            [
                f"{s['factor']:.1f}x",
                s["values"],
                method,
                s["classifier"],
                f"{100 * s['accuracy']:.1f} ± {100 * s['ci95']:.1f}",
                f"{s['encode_us']:.1f}",
            ]
        )
    head = ["reduction", "values/image", "method", "classifier"]
    head += ["accuracy % (95% CI)", "encode µs/image"]
    return markdown_table(head, rows)


def markdown(report):
    p = report["parameters"]
    mode = " (QUICK SMOKE RUN: not the results)" if p["quick"] else ""
    lines = [
        f"# Compressed learning: classifiers on reduced images{mode}",
        "",
        f"Machine: {machine_line(report['machine'])}. Total runtime "
        f"{report['runtime_s']:.0f} s (1-minute load average "
        f"{report['machine']['load_average'][0]:.1f} at the start: the machine is "
        "shared, so treat encode times as rough).",
        "",
        f"{p['folds']}-fold stratified cross-validation (shuffled, seed {SEED}); "
        "every reduction is fitted on the training fold only. WaLLoC: "
        f"`WallocTransformer(levels={LEVELS}, latent_dim=k, max_iter=0)` (closed "
        "form); PCA: whole-image PCA for the logistic model, PCA of "
        f"{2**LEVELS}x{2**LEVELS} blocks (same grid as WaLLoC) for the CNN; "
        "downsampling: Pillow bicubic to the closest number of values. "
        "Logistic: StandardScaler + LogisticRegression(C=1); CNN: 2 conv3x3 "
        f"layers (32 ch) + linear, Adam 1e-3, {p['epochs']} epochs, batch 64. "
        "Encode time: transform of every image of the data set, per image.",
        "",
    ]
    for ds, info in report["data"].items():
        lines += [
            f"## {ds}: {info['n']} images {info['shape'][0]}x{info['shape'][1]}, "
            f"{info['classes']} classes ({info['source']})",
            "",
            table(report["summary"], ds),
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

    colors = {"WaLLoC": "crimson", "PCA": "tab:gray", "downsampling": "tab:brown"}
    fig, axes = plt.subplots(
        2, len(datasets), figsize=(4.3 * len(datasets), 7), squeeze=False
    )
    for j, ds in enumerate(datasets):
        for i, clf in enumerate(["logistic", "CNN"]):
            ax = axes[i, j]
            for method, color in colors.items():
                pts = sorted(
                    (s["factor"], s["accuracy"], s["ci95"])
                    for s in summary
                    if s["dataset"] == ds
                    and s["method"] == method
                    and s["classifier"] == clf
                )
                if pts:
                    f, a, c = np.array(pts).T
                    ax.errorbar(
                        f, 100 * a, 100 * c, fmt="o-", color=color, capsize=3,
                        label=method,
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
            ax.xaxis.set_major_locator(FixedLocator([2, 4, 8, 16]))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("dimensionality reduction (log scale)")
            ax.set_ylabel("accuracy (%)")
            ax.set_title(f"{ds}, {clf}")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    save_figure(fig, path)


def _replot(report, path):
    plot(report["summary"], list(report["data"]), path)


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = benchmark_parser(__doc__, threads=1, replot="compressed_learning.json")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        BenchmarkRun.replot(args.out, "compressed_learning", _replot, markdown)
        return 0
    run = BenchmarkRun("compressed_learning", args)
    folds = 2 if args.quick else args.folds
    epochs = 3 if args.quick else args.epochs
    latent_dims = [2] if args.quick else LATENT_DIMS
    records, data, capped = [], {}, []
    for name, loader in DATASETS.items():
        X, y, shape, source = loader()
        data[name] = {
            "n": len(X),
            "shape": list(shape),
            "classes": len(np.unique(y)),
            "source": source,
        }
        print(f"{name}: {X.shape}, {data[name]['classes']} classes", flush=True)
        recs = run_dataset(name, X, y, shape, latent_dims, folds, epochs)
        records += recs
        for r in recs:
            if r["method"] == "PCA" and r["classifier"] == "logistic":
                h, w = shape
                gh, gw = math.ceil(h / 2**LEVELS), math.ceil(w / 2**LEVELS)
                if r["values"] < gh * gw * r["latent_dim"]:
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
            "latent_dims": latent_dims,
            "levels": LEVELS,
            "threads": args.threads,
            "random_state": SEED,
        },
        "data": data,
        "pca_capped": "; ".join(sorted(set(capped))),
        "summary": summary,
        "per_fold": records,
    }
    run.finish(report, markdown, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
