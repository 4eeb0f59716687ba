"""Fashion-MNIST: linear reductions onto WaLLoC's grid, trained on the labels.

What it asks
------------
``fashion_mnist.py`` finds the small CNN 0.85 points *under* bicubic
downsampling at 16x on WaLLoC's 7x7x1 latent grid, and 0.53 under it at 8x on
its 7x7x2 grid (bicubic: 10x10x1), whatever the wavelet or the amount of MSE
training. Would an encoder that saw the labels do better? WaLLoC's encoder is
one linear 1x1 layer on the wavelet packets. This script trains linear
reductions onto the same grid *jointly with the CNN, on the labels*, freezes
them, and trains a fresh CNN on their values with the recipe every reduction
gets (``fashion_mnist.torch_predict``: Adam, batch 256, 10 epochs, cosine from
1e-2). What joint training reaches is achievable, so it bounds the best linear
reduction from below; it is an estimate of the ceiling, not a proof of it.

Reductions, at 16x (7x7x1, 49 values) and 8x (7x7x2, 98 values):

- **bicubic**: Pillow's antialiased resize, 7x7 at 16x and 10x10 (100 values)
  at 8x, as in ``fashion_mnist.py``: the goal's yardstick;
- **WaLLoC closed form**: the shipped ``WallocTransformer(levels=2,
  max_iter=0)``, integer latents;
- **lowpass packet, float** (16x): the ``bior4.4`` two-level lowpass packet
  unquantised, which is what the closed form's 16x encoder keeps (99.95% of its
  squared weight on the raw packets): the quantiser's cost;
- **packets, 1x1, labels**: a linear 1x1 layer (bias too) on the 16 packets of
  each 4x4 block (standardised per packet), started at the lowpass packet (the
  closed form's choice; the 8x second channel at random) and trained with the
  CNN on the labels: a WaLLoC encoder with labels in its loss, before
  quantisation;
- **16x16 conv, labels**: a 16x16 convolution of stride 4 on the pixels (any
  linear map from a 16x16 window to a grid value, the same at every position;
  bicubic's 4x window is 16 taps wide), started at bicubic's weights (the 8x
  second channel at random) and trained with the CNN on the labels. The pixels
  are in [0, 1] and zero-padded, so the padding is the black background; only
  bicubic's renormalised border weights differ from that start;
- **16x16 conv, labels, random start**: the same from PyTorch's default
  initialisation, in case bicubic's weights hold the training in a corner.

Every learned reduction starts with unit-norm weights per output channel: its
output is batch-normalised (no affine) before the CNN, so only its direction
counts, and Adam's steps (at the CNN's learning rate) then move the starts at
the same relative rate. The joint training uses the fresh CNN's recipe.
Reported: test accuracy of the fresh CNN (mean and 95% t-interval over seeds)
and of the joint network; how far each trained filter ends from its start and
from bicubic (cosine similarity); paired differences with the t-interval over
seeds and a bootstrap over the 10,000 test images, as ``fashion_mnist.py``
reports them. Run ``nice -n 15 python benchmarks/fashion_mnist_ceiling.py
--threads 2`` (about 32 minutes on two cores) or ``--quick`` (5,000 training
images, 1 seed, 1 epoch).
"""

import sys
import warnings
from pathlib import Path

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
from _fashion_mnist import PACKAGE, fashion_mnist_dir, load_fashion_mnist
from _machine import machine_line
from compressed_learning import SmallCNN
from fashion_mnist import (
    BATCH,
    LR,
    PIXELS,
    SHAPE,
    Records,
    _bicubic_taps,
    _pack,
    paired_difference,
    reduction,
    torch_predict,
)
from sklearn.base import clone

from sklearn_walloc._wavelets import WaveletPacket

NAME = "fashion_mnist_ceiling"
FACTORS = (16, 8)
K = {16: 1, 8: 2}  # latents per 7x7 grid position
METHODS = (
    "bicubic",
    "WaLLoC closed form",
    "lowpass packet, float",
    "packets, 1x1, labels",
    "16x16 conv, labels",
    "16x16 conv, labels, random start",
)
CONV = METHODS[4:]
PAIRS = (  # (method, versus): what each difference isolates
    *((m, "bicubic") for m in METHODS[1:]),
    ("packets, 1x1, labels", "lowpass packet, float"),  # labels, no quantiser
    ("packets, 1x1, labels", "WaLLoC closed form"),  # labels and no quantiser
    ("16x16 conv, labels", "packets, 1x1, labels"),  # the filter family
)
LEARNED = METHODS[3:]
GRID = 7
WINDOW, STRIDE, PAD = 16, 4, 6  # (28 + 2*6 - 16) / 4 + 1 = 7


class _Joint(torch.nn.Module):
    """A linear reduction, batch-normalised, then the benchmark's CNN."""

    def __init__(self, reduce, k):
        super().__init__()
        self.reduce = reduce
        self.norm = torch.nn.BatchNorm2d(k, affine=False)
        self.cnn = SmallCNN(k, (GRID, GRID), 10)

    def forward(self, x):
        return self.cnn(self.norm(self.reduce(x)))


def _train_joint(reduce, k, x, y, epochs, seed):
    """Train the reduction and a CNN together on the labels (the CNN's recipe)."""
    torch.manual_seed(seed)
    net = _Joint(reduce, k)
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=LR["CNN"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, epochs * -(-len(x) // BATCH)
    )
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=order).split(BATCH):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def _grid_values(Z):
    """(n, k, 7, 7) tensor -> (n, 7*7*k) channels-last rows, as the CNN reads them."""
    return Z.detach().permute(0, 2, 3, 1).reshape(len(Z), -1).numpy()


def _pixels(X):
    """(n, 1, 28, 28) in [0, 1]: zero padding is then the black background."""
    return torch.from_numpy(X.astype(np.float32).reshape(-1, 1, *SHAPE) / 255)


def _packets(X, wpt):
    """The 16 two-level packets of each 4x4 block, (n, 16, 7, 7)."""
    with torch.no_grad():
        return torch.cat([wpt(b) for b in _pixels(X).split(5000)])


class _Inputs:
    """The training and test images as the reductions read them (made once)."""

    def __init__(self, Xtr, Xte):
        self.Xtr, self.Xte = Xtr, Xte
        self.pixels = _pixels(Xtr), _pixels(Xte)
        wpt = WaveletPacket(2, "bior4.4", 2)
        Ptr, Pte = _packets(Xtr, wpt), _packets(Xte, wpt)
        mu = Ptr.mean(dim=(0, 2, 3), keepdim=True)
        sd = Ptr.std(dim=(0, 2, 3), keepdim=True)
        self.packets = (Ptr - mu) / sd, (Pte - mu) / sd


def _fixed(method, factor, inputs):
    """Values (train, test) and grid of a reduction that needs no labels."""
    if method == "lowpass packet, float":
        Ptr, Pte = inputs.packets
        return _grid_values(Ptr[:, :1]), _grid_values(Pte[:, :1]), (GRID, GRID, 1)
    estimator, grid, _ = reduction(method, factor, 0, None)
    dtype = np.uint8 if method.startswith("WaLLoC") else np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = clone(estimator).fit(inputs.Xtr.astype(dtype))
    return (
        model.transform(inputs.Xtr.astype(dtype)),
        model.transform(inputs.Xte.astype(dtype)),
        grid,
    )


def _bicubic_kernel():
    taps = torch.from_numpy(_bicubic_taps(4)).float()
    return torch.outer(taps, taps)


def _cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def _start(method, k):
    """The untrained reduction, each output channel's weights of unit norm."""
    if method == "packets, 1x1, labels":
        reduce = torch.nn.Conv2d(16, k, 1)
        with torch.no_grad():  # channel 0 at the lowpass packet, as the closed form
            reduce.weight[0] = 0.0
            reduce.weight[0, 0] = 1.0
            reduce.bias[0] = 0.0
    else:
        reduce = torch.nn.Conv2d(1, k, WINDOW, stride=STRIDE, padding=PAD)
        if method == "16x16 conv, labels":
            with torch.no_grad():
                reduce.weight[0, 0] = _bicubic_kernel()
                reduce.bias[0] = 0.0
    with torch.no_grad():
        w = reduce.weight
        w /= w.flatten(1).norm(dim=1).reshape(-1, *([1] * (w.dim() - 1)))
    return reduce


def _learned(method, factor, inputs, y, epochs, seed):
    """Train a linear reduction with the CNN on the labels.

    Returns
    -------
    Ztr, Zte : ndarray
        The frozen reduction's values, channels-last rows.
    joint : ndarray
        The joint network's test predictions.
    info : dict
        Per output channel: cosine similarity of the trained weights to the
        start and to bicubic's kernel (16x16 conv), or the lowpass packet's
        share of the squared weights (1x1 on packets).
    """
    k = K[factor]
    torch.manual_seed(seed)
    reduce = _start(method, k)
    start = reduce.weight.detach().clone()
    xtr, xte = inputs.packets if method == "packets, 1x1, labels" else inputs.pixels
    net = _train_joint(reduce, k, xtr, torch.from_numpy(y), epochs, seed)
    with torch.no_grad():
        joint = torch.cat([net(b).argmax(dim=1) for b in xte.split(4096)]).numpy()
        Ztr, Zte = net.reduce(xtr), net.reduce(xte)
    w = net.reduce.weight.detach()
    if method == "packets, 1x1, labels":
        sq = w.reshape(k, 16).double() ** 2
        info = {"lowpass_share": (sq[:, 0] / sq.sum(dim=1)).tolist()}
    else:
        info = {
            "cos_to_start": [_cosine(w[c], start[c]) for c in range(k)],
            "cos_to_bicubic": [_cosine(w[c, 0], _bicubic_kernel()) for c in range(k)],
        }
    return _grid_values(Ztr), _grid_values(Zte), joint, info


def filter_analysis(inputs):
    """How near the packets come to bicubic's 7x7 image, and where the lowpass
    packet sits in its 4x4 block (deterministic)."""
    Ptr = inputs.packets[0].permute(0, 2, 3, 1).reshape(-1, 16).double()
    A = torch.cat([Ptr, torch.ones(len(Ptr), 1, dtype=torch.float64)], dim=1)
    bicubic = _fixed("bicubic", 16, inputs)[0]
    b = torch.from_numpy(np.asarray(bicubic, dtype=np.float64).reshape(-1, 1))
    fit = A @ torch.linalg.lstsq(A, b).solution
    r2 = 1 - float(((fit - b) ** 2).mean() / b.var())
    line = WaveletPacket(2, "bior4.4", 1).double()
    n, j = 32, 4  # output j of 8, far from the ends; its block starts at 4j
    weights = line(torch.eye(n, dtype=torch.float64)[:, None])[:, 0, j].numpy()
    centre = float((weights * np.arange(n)).sum() / weights.sum()) - 4 * j
    return {"bicubic_from_packets_r2": r2, "lowpass_centre_in_block": centre}


def run(rec, inputs, ytr, yte, factor, method, seeds, epochs):
    """One reduction at one factor, every seed not yet in the records: the
    joint network's accuracy (learned reductions), then the fresh CNN's."""
    for seed in seeds:
        key = dict(kind="accuracy", factor=factor, method=method, seed=seed)
        if rec.has(classifier="CNN", **key):
            continue
        common = dict(factor=factor, method=method, seed=seed, values=49 * K[factor])
        with Timer() as t:
            if method in LEARNED:
                Ztr, Zte, joint, info = _learned(
                    method, factor, inputs, ytr, epochs, seed
                )
                grid = (GRID, GRID, K[factor])
            else:
                Ztr, Zte, grid = _fixed(method, factor, inputs)
        if method in LEARNED:
            correct = joint == yte
            rec.add(dict(common, kind="accuracy", classifier="joint",
                         accuracy=float(correct.mean()), train_s=t.s,
                         correct=_pack(correct), **info))  # fmt: skip
        common["values"] = int(np.prod(grid))
        with Timer() as t:
            pred = torch_predict("CNN", Ztr, ytr, Zte, grid, epochs, seed)
        correct = pred == yte
        rec.add(dict(common, kind="accuracy", classifier="CNN",
                     accuracy=float(correct.mean()), train_s=t.s,
                     correct=_pack(correct)))  # fmt: skip


# ------------------------------------------------------------------ report
def _rows(rows, factor, method, classifier):
    """The records of one reduction and classifier, by seed."""
    return {
        r["seed"]: r
        for r in rows
        if (r["factor"], r["method"], r["classifier"]) == (factor, method, classifier)
    }


INFO = ("lowpass_share", "cos_to_start", "cos_to_bicubic")


def _paired(rows, factor, method, versus, seeds, n_test, salt):
    """``method`` minus ``versus`` with the CNN: t-interval over seeds and a
    bootstrap over the test images; None where either is missing."""
    A = _rows(rows, factor, method, "CNN")
    B = _rows(rows, factor, versus, "CNN")
    common = [s for s in seeds if s in A and s in B]
    if not common:
        return None
    mean, half, lo, hi = paired_difference(A, B, common, n_test, salt)
    return dict(factor=factor, method=method, versus=versus, diff=mean, ci95=half,
                seeds=len(common), bootstrap_lo=lo, bootstrap_hi=hi)  # fmt: skip


def build_report(rows, seeds, n_test, run_info):
    """Accuracy per reduction, the trained filters' statistics (mean over
    seeds, per output channel) and the paired differences of ``PAIRS``."""
    summary = []
    for factor in FACTORS:
        for method in METHODS:
            row = {"factor": factor, "method": method}
            for clf in ("CNN", "joint"):
                found = _rows(rows, factor, method, clf)
                if not found:
                    continue
                row[clf] = mean_ci95([r["accuracy"] for r in found.values()])
                row["values"] = next(iter(found.values()))["values"]
                row["seeds"] = sorted(found)
                for key in INFO:
                    per_seed = [r[key] for r in found.values() if key in r]
                    if per_seed:
                        row[key] = np.mean(per_seed, axis=0).tolist()
            if "CNN" in row:
                summary.append(row)
    diffs = []
    for factor in FACTORS:
        for i, (method, versus) in enumerate(PAIRS):
            d = _paired(rows, factor, method, versus, seeds, n_test, 1000 * factor + i)
            if d is not None:
                diffs.append(d)
    return dict(run_info, summary=summary, paired=diffs)


def _pm_points(d):
    text = f"{100 * d['diff']:+.2f}"
    return text + (f" ± {100 * d['ci95']:.2f}" if d["ci95"] else "")


def _pct(v):
    if not v:
        return "-"
    mean, half = v
    return f"{100 * mean:.2f}" + (f" ± {100 * half:.2f}" if half else "")


def markdown(report):
    p = report["parameters"]
    m = report["machine"]
    mode = " (QUICK SMOKE RUN: not the results)" if p["quick"] else ""

    def channels(r, key):
        return ", ".join(f"{v:.2f}" for v in r.get(key, [])) or "-"

    summary = markdown_table(
        ["factor", "method", "values", "CNN on the frozen values", "joint network",
         "lowpass share", "cos to start", "cos to bicubic"],
        [[f"{r['factor']}x", r["method"], r["values"], _pct(r.get("CNN")),
          _pct(r.get("joint")), channels(r, "lowpass_share"),
          channels(r, "cos_to_start"), channels(r, "cos_to_bicubic")]
         for r in report["summary"]],
    )  # fmt: skip
    paired = markdown_table(
        ["factor", "method", "minus", "points (t-interval over seeds)",
         "bootstrap 95% over test images"],
        [[f"{d['factor']}x", d["method"], d["versus"], _pm_points(d),
          f"[{100 * d['bootstrap_lo']:+.2f}, {100 * d['bootstrap_hi']:+.2f}]"]
         for d in report["paired"]],
    )  # fmt: skip
    return "\n".join(
        [
            f"# Fashion-MNIST: linear reductions trained with labels{mode}",
            "",
            f"Machine: {machine_line(m)}. Runtime {report['runtime_s'] / 60:.0f} min, "
            f"torch on {p['threads']} thread(s).",
            "",
            f"Data: {report['data']['source']}: {report['data']['n_train']} training "
            f"and {report['data']['n_test']} test images. Seeds {p['seeds']}. Every "
            f"CNN: `fashion_mnist.torch_predict` (Adam, batch {BATCH}, {p['epochs']} "
            f"epochs, cosine from {LR['CNN']:g}); the joint networks train the "
            "reduction with the same CNN and recipe on the labels, then a fresh CNN "
            "is trained on the frozen reduction's values. Every learned reduction "
            "starts with unit-norm weights per output channel.",
            "",
            "Test accuracy in % (mean ± 95% t-interval over seeds). Per output "
            "channel, mean over seeds: the lowpass packet's share of the trained 1x1 "
            "layer's squared weights (on standardised packets), and the cosine "
            "similarity of a trained 16x16 filter to its start and to bicubic's "
            "kernel:",
            "",
            summary,
            "",
            "Paired differences (same seed), in points:",
            "",
            paired,
            "",
            *_filters_text(report.get("filters")),
        ]
    )


def _filters_text(f):
    if not f:
        return []
    return [
        "The filter the packets allow: least squares from the 16 packets of each "
        "4x4 block (and a constant) to bicubic's 7x7 value at the same position "
        f"explains {100 * f['bicubic_from_packets_r2']:.1f}% of its variance on the "
        "training images; the bior4.4 lowpass packet is centred "
        f"{f['lowpass_centre_in_block']:.2f} pixels into its 4x4 block (bicubic and "
        "the block mean: 1.50).",
        "",
    ]


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FACTORS), figsize=(12.5, 3.8))
    for ax, factor in zip(axes, FACTORS):
        rows = [r for r in report["summary"] if r["factor"] == factor]
        means = [100 * r["CNN"][0] for r in rows]
        halves = [100 * r["CNN"][1] for r in rows]
        colours = ["tab:grey" if r["method"] == "bicubic" else "tab:blue" for r in rows]
        ax.barh(range(len(rows)), means, xerr=halves, color=colours, alpha=0.7)
        ax.set_yticks(range(len(rows)), [r["method"] for r in rows])
        ax.invert_yaxis()
        ax.set_title(f"{factor}x: CNN test accuracy (%), 95% intervals")
        goal = [100 * r["CNN"][0] + 1 for r in rows if r["method"] == "bicubic"]
        for g in goal:  # the goal
            ax.axvline(g, color="tab:red", ls="--", lw=1)
            ax.text(g, len(rows) - 0.45, "bicubic + 1 point ", color="tab:red",
                    fontsize=8, ha="right", va="bottom")  # fmt: skip
        right = max([m + h for m, h in zip(means, halves)] + goal)
        ax.set_xlim(min(means) - 1.5, right + 0.6)
        for y, (v, h) in enumerate(zip(means, halves)):
            ax.text(v + h + 0.1, y, f"{v:.2f}", va="center", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def parse_args(argv=None):
    parser = benchmark_parser(__doc__, threads=1, replot=f"{NAME}.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None, help="default 10")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--factors", type=int, nargs="+", default=list(FACTORS), choices=FACTORS
    )
    parser.add_argument(
        "--records", type=Path,
        default=Path.home() / f".cache/sklearn_walloc_bench/{NAME}_records.jsonl",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true", help="keep --records, skip what is in it"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        BenchmarkRun.replot(args.out, NAME, plot, markdown)
        return 0
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    epochs = args.epochs or (1 if args.quick else 10)
    run_ = BenchmarkRun(NAME, args)
    Xtr, ytr = load_fashion_mnist("train")
    Xte, yte = load_fashion_mnist("test")
    if args.quick:
        Xtr, ytr = Xtr[:5000], ytr[:5000]
    Xtr, Xte = Xtr.reshape(-1, PIXELS), Xte.reshape(-1, PIXELS)
    inputs = _Inputs(Xtr, Xte)
    rec = Records(args.records, args.resume)
    for factor in args.factors:
        for method in args.methods:
            if method == "lowpass packet, float" and factor != 16:
                continue
            run(rec, inputs, ytr, yte, factor, method, seeds, epochs)
    _, version = fashion_mnist_dir()
    run_info = {
        "parameters": {"quick": args.quick, "seeds": seeds, "epochs": epochs,
                       "threads": args.threads},
        "data": {"source": f"Debian {PACKAGE} {version}", "n_train": len(Xtr),
                 "n_test": len(Xte)},
        "machine": run_.machine,
    }  # fmt: skip
    report = build_report(rec.rows, seeds, len(Xte), run_info)
    report["filters"] = filter_analysis(inputs)
    flat = [{k: v for k, v in r.items() if k not in ("correct", *INFO)}
            for r in rec.rows]  # fmt: skip
    run_.finish(report, markdown, flat)
    plot(report, args.out / f"{NAME}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
