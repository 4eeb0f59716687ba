"""Rate, distortion and speed of WaLLoC on real recorded audio, against audio codecs.

What it measures
----------------
Data: Debian's ``sonic-pi-samples`` (165 CC0 FLAC recordings at 44.1 kHz, read
as 16-bit PCM; see ``_audio_data.py``, which fetches the package with
``apt-get download`` + ``dpkg -x`` when it is missing). Within each channel
count, every fourth file in name order is held out; the rest is for fitting.
Stereo and mono are evaluated separately.

Methods, on the same held-out clips:

- WaLLoC (``WallocCodec(signal_ndim=1)``, bior4.4): stereo with ``levels=5``
  (64 coefficients per 32 frames) and mono with ``levels=6`` (64 per 64), at
  ``latent_dim=13`` (4.9x fewer values) and ``latent_dim=3`` (21.3x); fitted on
  the fit clips (``max_iter=200`` training steps after the closed form, other
  parameters default: 8-bit latents and the codec's per-signal gain;
  ``--quick``: closed form only). Bits from the sizes of
  the ``compress`` blobs (each a self-contained file with its header);
  reconstruction from ``decompress(..., restore=True)`` (int16).
- FLAC (lossless reference), Ogg Vorbis and MP3 (libsndfile via ``soundfile``)
  at several ``compression_level`` settings; Ogg Opus likewise, but libsndfile's
  Opus needs 48 kHz, so the clip is resampled to 48 kHz (``resample_poly``,
  160/147), coded, decoded and resampled back (the resampling is part of that
  codec's error). Lossy coders get float32 input (libsndfile's MP3 encoder
  garbles interleaved int16 stereo).
- Downsampling to the same number of values as each WaLLoC setting
  (``resample_poly`` by ``latent_dim / (C * 2**levels)`` per channel, i.e.
  13/64 or 3/64, Kaiser-windowed polyphase filter), rounded to int16 and coded
  with FLAC for a rate; upsampled back with ``resample_poly``.

Latent bits and gain: the closed form (plain WPT-PCA, ``max_iter=0``) at
``latent_dim=13`` with 16-bit latents, 8-bit latents, and 8-bit latents with
the codec's per-signal gain (``adaptive_gain``: a gain for quiet clips, and a
higher gain with wider latents for clips whose rounding would cost more than
``GAIN_MAX_LOSS_DB``), on the held-out clips as recorded and attenuated by 30
and 50 dB (then rounded to int16). The rows count the blobs with wider latents.

Metrics, pooled over all held-out clips: bits per sample = coded bits / number
of sample values (frames x channels; 16 for the PCM source); compression ratio
``16 / bps``; SNR = 10 log10(signal energy / error energy) (dB); PSNR = 10
log10(32768^2 / MSE) (dB), i.e. peak 1 for signals scaled to [-1, 1) (the
full-scale amplitude of 16-bit audio; ``WallocTransformer.score`` uses the
peak-to-peak range 65535, 6.02 dB higher). Also the encode and decode
throughput in millions of sample values per second (whole held-out set, one
call per clip for the libsndfile coders, one call for all clips for WaLLoC).

Paper reference (arXiv:2412.09405, stereo music, trained models): 5x at CR
21.3 and PSNR 39.0 dB, 20x at CR 76.3 and PSNR 33.3 dB (its PSNR definition
and data differ: not directly comparable).

Outputs ``audio.csv``, ``audio.json``, ``audio.md`` and ``audio.png`` in
``--out``. Run ``python benchmarks/audio.py`` (under a minute on 2 quiet CPU
cores, 4.5 minutes under a load average of 4.5) or ``--quick`` (first 2 s of
each clip, closed-form WaLLoC; a smoke test, not the results).
"""

import io

import matplotlib
import numpy as np
import soundfile as sf
import torch
from _audio_data import audio_dir, load_samples
from _common import BenchmarkRun, Timer, benchmark_parser, save_figure
from _machine import machine_line
from scipy.signal import resample_poly

from sklearn_walloc import WallocCodec
from sklearn_walloc.codec import blob_info
from sklearn_walloc.metrics import snr

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter, ScalarFormatter

SEED = 0
PEAK = 32768.0
SOURCE_BITS = 16
# channels -> levels; latent_dim -> nominal reduction label
LEVELS = {2: 5, 1: 6}
LATENTS = {13: "4.9x", 3: "21.3x"}
LEVELS_SWEEP = (0.9, 0.7, 0.5, 0.3, 0.1)  # libsndfile compression_level
LOSSY = {
    "Vorbis": {"format": "OGG", "subtype": "VORBIS"},
    "Opus": {"format": "OGG", "subtype": "OPUS"},
    "MP3": {"format": "MP3", "subtype": "MPEG_LAYER_III"},
}
OPUS_RATE = 48000
# The paper's stereo results: reduction -> (CR, PSNR dB)
PAPER = {"5x": (21.3, 39.0), "20x": (76.3, 33.3)}


# ------------------------------------------------------------------ metrics
class Pooled:
    """Accumulates squared error, energy and counts over clips.

    The pooled SNR and PSNR are ratios of sums over all clips (energy, squared
    error, sample values), kept here as sums; each clip's own SNR is
    :func:`sklearn_walloc.metrics.snr`.
    """

    def __init__(self):
        self.sse = self.energy = 0.0
        self.values = self.bits = 0
        self.snrs = []

    def add(self, x, y, bits):
        x = x.astype(np.float64)
        y = y.astype(np.float64)[: len(x)]
        if len(y) < len(x):
            y = np.concatenate([y, np.zeros((len(x) - len(y), *y.shape[1:]))])
        self.sse += float(np.sum((x - y) ** 2))
        self.energy += float(np.sum(x**2))
        self.values += x.size
        self.bits += bits
        self.snrs.append(snr(x, y))

    def summary(self):
        bps = self.bits / self.values
        mse = self.sse / self.values
        return {
            "bits_per_sample": bps,
            "compression_ratio": SOURCE_BITS / bps,
            "snr_db": _db(self.energy, self.sse),
            "median_clip_snr_db": float(np.median(self.snrs)),
            "psnr_db": _db(PEAK**2, mse),
        }


def _db(num, den):
    return float("inf") if den == 0 else float(10 * np.log10(num / den))


# ------------------------------------------------------------ soundfile io
def sf_encode(x, rate, **kw):
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, **kw)
    return buffer.getvalue()


def sf_decode(blob):
    y, _ = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    return y


def _to_int16(y):
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def flac_rows(clips):
    """FLAC: lossless, its rate and speed."""
    pooled, enc_s, dec_s = Pooled(), 0.0, 0.0
    for x, rate in clips:
        with Timer() as enc:
            blob = sf_encode(x, rate, format="FLAC", subtype="PCM_16")
        with Timer() as dec:
            y, _ = sf.read(io.BytesIO(blob), dtype="int16", always_2d=True)
        enc_s, dec_s = enc_s + enc.s, dec_s + dec.s
        pooled.add(x, y, 8 * len(blob))
    return [_row("FLAC", "lossless", None, pooled, enc_s, dec_s)]


def lossy_rows(clips, name):
    rows = []
    kw = LOSSY[name]
    for level in LEVELS_SWEEP:
        pooled, enc_s, dec_s = Pooled(), 0.0, 0.0
        for x, rate in clips:
            with Timer() as enc:
                source = x.astype(np.float32) / PEAK
                if name == "Opus":
                    source = resample_poly(source, 160, 147, axis=0).astype(np.float32)
                    coded_rate = OPUS_RATE
                else:
                    coded_rate = rate
                blob = sf_encode(source, coded_rate, compression_level=level, **kw)
            with Timer() as dec:
                y = sf_decode(blob)
                if name == "Opus":
                    y = resample_poly(y, 147, 160, axis=0)
                y = _to_int16(y * PEAK)
            enc_s, dec_s = enc_s + enc.s, dec_s + dec.s
            pooled.add(x, y, 8 * len(blob))
        rows.append(_row(name, f"level {level}", None, pooled, enc_s, dec_s))
    return rows


def downsample_rows(clips, channels):
    rows = []
    for latent_dim, label in LATENTS.items():
        up, down = latent_dim, channels * 2 ** LEVELS[channels]
        up, down = up // np.gcd(up, down), down // np.gcd(up, down)
        pooled, enc_s, dec_s = Pooled(), 0.0, 0.0
        for x, rate in clips:
            with Timer() as enc:
                small = _to_int16(resample_poly(x.astype(np.float64), up, down, axis=0))
                small_rate = max(1, round(rate * up / down))
                blob = sf_encode(small, small_rate, format="FLAC", subtype="PCM_16")
            with Timer() as dec:
                y, _ = sf.read(io.BytesIO(blob), dtype="int16", always_2d=True)
                y = _to_int16(resample_poly(y.astype(np.float64), down, up, axis=0))
            enc_s, dec_s = enc_s + enc.s, dec_s + dec.s
            pooled.add(x, y, 8 * len(blob))
        rows.append(
            _row(
                "Downsampling + FLAC",
                f"{up}/{down} ({label} fewer values)",
                label,
                pooled,
                enc_s,
                dec_s,
            )
        )
    return rows


def walloc_rows(fit, clips, channels, max_iter):
    rows, models = [], {}
    signals = [x for x, _ in clips]
    for latent_dim, label in LATENTS.items():
        codec = WallocCodec(
            signal_ndim=1,
            levels=LEVELS[channels],
            latent_dim=latent_dim,
            max_iter=max_iter,
            random_state=SEED,
            device="cpu",
        )
        with Timer() as fit_t:
            codec.fit(fit)
        with Timer() as enc:
            blobs = codec.compress(signals)
        with Timer() as dec:
            recs = codec.decompress(blobs, restore=True)
        with Timer() as transform_t:
            codec.transform(signals)
        pooled = Pooled()
        for x, y, blob in zip(signals, recs, blobs):
            pooled.add(x, y.reshape(len(y), -1), 8 * len(blob))
        reduction = channels * 2 ** LEVELS[channels] / latent_dim
        row = _row(
            "WaLLoC",
            f"levels={LEVELS[channels]}, latent_dim={latent_dim} "
            f"({reduction:.1f}x), {max_iter} steps",
            label,
            pooled,
            enc.s,
            dec.s,
        )
        row["fit_s"] = fit_t.s
        row["transform_msamples_per_s"] = pooled.values / transform_t.s / 1e6
        rows.append(row)
        models[label] = codec
    return rows, models


QUIET_DB = (-30, -50)  # attenuations of the held-out clips for the quiet sets
GAIN_VARIANTS = {
    # name -> (latent_bits, adaptive_gain)
    "WPT-PCA 16-bit": (16, False),
    "WPT-PCA 8-bit (plain)": (8, False),
    "WPT-PCA 8-bit + gain": (8, True),
}


def gain_rows(fit, clips, channels, latent_dim=13):
    """Latent bits and the per-signal gain, on the closed form (no training).

    The held-out clips as they are, and attenuated by each of ``QUIET_DB``
    (scaled, then rounded to int16: real quiet recordings), coded with the
    plain WPT-PCA (``max_iter=0``) at 16 and 8 bits and at 8 bits with the
    codec's gain (``adaptive_gain=True``, the default).
    """
    signals = [x for x, _ in clips]
    sets = {"as recorded": signals}
    for db in QUIET_DB:
        sets[f"{db} dB"] = [
            _to_int16(x.astype(np.float64) * 10 ** (db / 20)) for x in signals
        ]
    rows = []
    for name, (bits, gain) in GAIN_VARIANTS.items():
        codec = WallocCodec(
            signal_ndim=1,
            levels=LEVELS[channels],
            latent_dim=latent_dim,
            latent_bits=bits,
            adaptive_gain=gain,
            max_iter=0,
            random_state=SEED,
            device="cpu",
        ).fit(fit)
        for set_name, xs in sets.items():
            with Timer() as enc:
                blobs = codec.compress(xs)
            with Timer() as dec:
                recs = codec.decompress(blobs, restore=True)
            pooled = Pooled()
            for x, y, blob in zip(xs, recs, blobs):
                pooled.add(x, y.reshape(len(y), -1), 8 * len(blob))
            row = _row(name, set_name, None, pooled, enc.s, dec.s)
            row["mean_clip_snr_db"] = float(np.mean(pooled.snrs))
            row["wide_blobs"] = sum(blob_info(b)["latent_bits"] > bits for b in blobs)
            row["n_blobs"] = len(blobs)
            rows.append(row)
    return rows


def gain_table(rows):
    head = [
        "method",
        "clips",
        "bits/sample",
        "CR",
        "pooled SNR dB",
        "mean clip SNR",
        "wider latents",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["method"],
            r["setting"],
            f"{r['bits_per_sample']:.3f}",
            f"{r['compression_ratio']:.1f}",
            f"{r['snr_db']:.2f}",
            f"{r['mean_clip_snr_db']:.2f}",
            f"{r.get('wide_blobs', 0)} of {r.get('n_blobs', '?')}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gain_goal(rows):
    """The issue's goal, checked on the rows: lines of text."""
    by = {(r["method"], r["setting"]): r for r in rows}
    plain = by[("WPT-PCA 8-bit (plain)", "as recorded")]
    gain = by[("WPT-PCA 8-bit + gain", "as recorded")]
    out = [
        f"- music as recorded: 8-bit + gain {gain['snr_db']:.2f} dB at CR "
        f"{gain['compression_ratio']:.1f} against plain 8-bit "
        f"{plain['snr_db']:.2f} dB at CR {plain['compression_ratio']:.1f} "
        f"(CR ratio {gain['compression_ratio'] / plain['compression_ratio']:.2f}; "
        "goal: SNR at least the plain one's at a CR ratio of at least 0.8)"
    ]
    for db in QUIET_DB:
        key = f"{db} dB"
        g, w = by[("WPT-PCA 8-bit + gain", key)], by[("WPT-PCA 16-bit", key)]
        p = by[("WPT-PCA 8-bit (plain)", key)]
        out.append(
            f"- clips at {key}: mean clip SNR 8-bit + gain {g['mean_clip_snr_db']:.2f}"
            f" dB (CR {g['compression_ratio']:.1f}), 16-bit "
            f"{w['mean_clip_snr_db']:.2f} dB (CR {w['compression_ratio']:.1f}), plain "
            f"8-bit {p['mean_clip_snr_db']:.2f} dB (goal: within 1 dB of 16-bit)"
        )
    return out


def _row(method, setting, reduction, pooled, enc_s, dec_s):
    return {
        "method": method,
        "setting": setting,
        "reduction": reduction,
        **pooled.summary(),
        "encode_msamples_per_s": pooled.values / enc_s / 1e6,
        "decode_msamples_per_s": pooled.values / dec_s / 1e6,
        "n_values": pooled.values,
    }


# ---------------------------------------------------------------- reporting
def table(rows):
    head = [
        "method",
        "setting",
        "bits/sample",
        "CR",
        "SNR dB",
        "median clip SNR",
        "PSNR dB",
        "enc Msamples/s",
        "dec Msamples/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["method"],
                    r["setting"],
                    f"{r['bits_per_sample']:.3f}",
                    f"{r['compression_ratio']:.1f}",
                    f"**{r['snr_db']:.2f}**",
                    f"{r['median_clip_snr_db']:.2f}",
                    f"{r['psnr_db']:.2f}",
                    f"{r['encode_msamples_per_s']:.2f}",
                    f"{r['decode_msamples_per_s']:.2f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def markdown(report):
    mode = " (QUICK SMOKE RUN, not the results)" if report["quick"] else ""
    parts = [
        f"# WaLLoC on real recorded audio{mode}",
        "",
        f"Machine: {machine_line(report['machine'])}. Load average (1 min): "
        f"{report['machine']['load_average'][0]:.1f} at the start, "
        f"{report['machine_end']['load_average'][0]:.1f} at the end. Total "
        f"runtime {report['runtime_s']:.0f} s.",
        "",
        "Data: Debian package `sonic-pi-samples` (CC0 FLAC, 44.1 kHz, read as "
        "16-bit), every fourth file per channel count held out (name order). "
        "Bits/sample over all sample values (frames x channels); CR = 16 / "
        "bits/sample; SNR pooled over the held-out set (energy / error energy), "
        "median clip SNR over clips; PSNR with peak 32768 (full-scale amplitude); "
        "speeds in millions of sample values per second (WaLLoC: `compress` / "
        "`decompress` of the whole set, entropy coding included).",
        "",
    ]
    for key, data in report["sets"].items():
        parts += [
            f"## {key}: {data['n_fit']} fit clips ({data['fit_seconds']:.0f} s), "
            f"{data['n_holdout']} held-out clips ({data['holdout_seconds']:.0f} s)",
            "",
            table(data["rows"]),
            "",
        ]
        parts += [
            "Latent bits and the codec's per-signal gain (closed form, "
            f"`levels={LEVELS[2 if key == 'stereo' else 1]}, latent_dim=13`; the "
            "held-out clips as recorded and attenuated):",
            "",
            gain_table(data["gain_rows"]),
            "",
            *gain_goal(data["gain_rows"]),
            "",
        ]
        walloc = [r for r in data["rows"] if r["method"] == "WaLLoC"]
        if walloc:
            parts += [
                "WaLLoC fit times: "
                + ", ".join(f"{r['reduction']}: {r['fit_s']:.0f} s" for r in walloc)
                + "; `transform` (encoder only, no entropy coding): "
                + ", ".join(
                    f"{r['reduction']}: {r['transform_msamples_per_s']:.2f} Msamples/s"
                    for r in walloc
                )
                + ".",
                "",
            ]
    paper = "; ".join(f"{k}: CR {c}, PSNR {p} dB" for k, (c, p) in PAPER.items())
    parts += [f"Paper (stereo, trained, other data and PSNR convention): {paper}.", ""]
    return "\n".join(parts)


MARKERS = {
    "Vorbis": "-o",
    "Opus": "-s",
    "MP3": "-^",
    "WaLLoC": "*",
    "Downsampling + FLAC": "D",
}


def plot(report, path):
    sets = report["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 5), squeeze=False)
    for ax, (key, data) in zip(axes[0], sets.items()):
        rows = data["rows"]
        for k, (method, style) in enumerate(MARKERS.items()):
            pts = sorted(
                (r["bits_per_sample"], r["psnr_db"])
                for r in rows
                if r["method"] == method
            )
            if pts:
                size = 14 if method == "WaLLoC" else 6
                ax.plot(*zip(*pts), style, color=f"C{k}", ms=size, label=method)
            for r in rows:
                if r["method"] == method and r["reduction"]:
                    ax.annotate(
                        r["reduction"],
                        (r["bits_per_sample"], r["psnr_db"]),
                        xytext=(5, -10),
                        textcoords="offset points",
                        fontsize=7,
                        color=f"C{k}",
                    )
        flac = [r for r in rows if r["method"] == "FLAC"]
        if flac:
            ax.axvline(
                flac[0]["bits_per_sample"],
                color="gray",
                ls=":",
                label=f"FLAC (lossless) {flac[0]['bits_per_sample']:.2f}",
            )
        if key.startswith("stereo"):
            for label, (cr, psnr) in PAPER.items():
                ax.plot(SOURCE_BITS / cr, psnr, "P", color="k", ms=10)
                ax.annotate(f"paper {label}", (SOURCE_BITS / cr, psnr), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([0.1, 0.2, 0.5, 1, 2, 4, 8])
        ax.set_xlabel("bits per sample (log)")
        ax.set_ylabel("PSNR (dB, peak 32768)")
        ax.set_title(key)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    mode = " (quick run)" if report["quick"] else ""
    fig.suptitle(f"Rate-distortion on held-out sonic-pi-samples{mode}")
    save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------- main
def evaluate(channels, max_iter, max_seconds):
    fit = load_samples("fit", channels, max_seconds)
    holdout = load_samples("holdout", channels, max_seconds)
    clips = [(x, rate) for _, x, rate in holdout]
    rows = flac_rows(clips)
    for name in LOSSY:
        print(f"[{channels} ch] {name}", flush=True)
        rows += lossy_rows(clips, name)
    rows += downsample_rows(clips, channels)
    print(f"[{channels} ch] WaLLoC ({max_iter} steps)", flush=True)
    walloc, _ = walloc_rows([x for _, x, _ in fit], clips, channels, max_iter)
    rows += walloc
    print(f"[{channels} ch] latent bits and gain (closed form)", flush=True)
    gains = gain_rows([x for _, x, _ in fit], clips, channels)
    return {
        "gain_rows": gains,
        "n_fit": len(fit),
        "n_holdout": len(holdout),
        "fit_seconds": sum(len(x) / r for _, x, r in fit),
        "holdout_seconds": sum(len(x) / r for _, x, r in holdout),
        "holdout_names": [n for n, _, _ in holdout],
        "rows": rows,
    }


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument("--max-iter", type=int, default=None)
    args = parser.parse_args()
    run = BenchmarkRun("audio", args)
    torch.manual_seed(SEED)
    print(f"Machine: {machine_line(run.machine)}; data: {audio_dir()}", flush=True)
    max_iter = (
        args.max_iter if args.max_iter is not None else (0 if args.quick else 200)
    )
    max_seconds = 2.0 if args.quick else None
    sets = {}
    for channels, key in ((2, "stereo"), (1, "mono")):
        sets[key] = evaluate(channels, max_iter, max_seconds)
        print(table(sets[key]["rows"]), flush=True)
        print(gain_table(sets[key]["gain_rows"]), flush=True)
        print("\n".join(gain_goal(sets[key]["gain_rows"])), flush=True)
    report = {
        "quick": args.quick,
        "max_iter": max_iter,
        "machine": run.machine,
        "data": {"package": "sonic-pi-samples (Debian)", "dir": str(audio_dir())},
        "paper": PAPER,
        "sets": sets,
    }
    rows = [{"set": k, **r} for k, d in sets.items() for r in d["rows"]]
    # WaLLoC's rows add fit and transform columns: every row gets every column
    # (empty where it has none), in the order of the last (a WaLLoC) row.
    fields = sorted({f for r in rows for f in r}, key=lambda f: list(rows[-1]).index(f))
    run.finish(report, markdown, [{f: r.get(f, "") for f in fields} for r in rows])
    plot(report, run.out / "audio.png")


if __name__ == "__main__":
    main()
