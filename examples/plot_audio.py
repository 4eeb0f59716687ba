"""
=================
Compressing audio
=================

WaLLoC works the same way on 1D signals: ``signal_ndim=1`` reads a recording
as ``(L, C)``, channels last, and a ``levels``-level wavelet packet cuts it into
blocks of ``2**levels`` samples per channel. For stereo with ``levels=4`` that
is 32 values per block; ``latent_dim=6`` keeps 6 of them (5.3x fewer values).

So that nothing is downloaded, the "music" is synthesised here: notes of a
plucked-string model (harmonics with decaying envelopes), panned between the two
channels, with a little noise, as 16-bit PCM at 22.05 kHz. The codec is fitted
on a few phrases and compresses another.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from sklearn_walloc import WallocCodec, metrics

RATE = 22050


def phrase(seed, seconds=2.0):
    """Random notes of a plucked string, stereo int16 of shape (L, 2)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros((len(t), 2))
    for start in np.arange(0, seconds - 0.25, 0.25):
        f0 = 110 * 2 ** (rng.integers(0, 30) / 12)
        pan = rng.uniform(0.2, 0.8)
        tau = t - start
        on = tau >= 0
        note = sum(
            np.sin(2 * np.pi * k * f0 * tau) * np.exp(-tau * (3 + 2 * k)) / k
            for k in range(1, 8)
        )
        note = np.where(on, note * np.minimum(tau * 200, 1), 0)
        out += note[:, None] * [pan, 1 - pan]
    out += rng.normal(0, 0.005, out.shape)
    return np.round(out / np.abs(out).max() * 0.8 * 32767).astype(np.int16)


fit_clips = [phrase(seed) for seed in range(4)]
clip = phrase(100)  # not used for fitting

codec = WallocCodec(signal_ndim=1, levels=4, latent_dim=6, max_iter=0, random_state=0)
codec.fit(fit_clips)
(blob,) = codec.compress([clip])
(rec,) = codec.decompress([blob])  # int16, original length
print(f"latent_bits_={codec.latent_bits_}, {2 * 16 / 6:.2f}x fewer values")
print(
    f"{len(blob)} bytes for {len(clip) / RATE:.1f} s of 16-bit stereo: "
    f"{metrics.bits_per_sample([blob], clip):.2f} bits per sample, "
    f"compression ratio {metrics.compression_ratio([blob], clip, source_bits=16):.1f}, "
    f"{8 * len(blob) / (len(clip) / RATE) / 1000:.0f} kbit/s"
)
print(f"SNR {metrics.snr(clip, rec):.1f} dB")

# %%
# Waveforms: the whole phrase and a 20 ms window of the left channel.
t = np.arange(len(clip)) / RATE
win = slice(int(0.50 * RATE), int(0.52 * RATE))
fig, axes = plt.subplots(2, 1, figsize=(8, 4.5))
axes[0].plot(t, clip[:, 0], lw=0.5, label="original")
axes[0].plot(t, rec[:, 0] - clip[:, 0], lw=0.5, label="error", color="C3")
axes[0].set_title("left channel")
axes[1].plot(t[win] * 1000, clip[win, 0], label="original")
axes[1].plot(t[win] * 1000, rec[win, 0], "--", label="WaLLoC")
axes[1].set_xlabel("time (ms)")
for ax in axes:
    ax.legend(loc="upper right", fontsize=8)
fig.tight_layout()

# %%
# Spectrograms of the original, the reconstruction and the error. The codec
# keeps the strong low harmonics and drops the noise floor, as a PCA of the
# wavelet packet bands does; dropping most high bands also leaves faint aliased
# copies of the harmonics at high frequencies (the lines above 4 kHz in the
# middle panel), part of the error on the right. A trained decoder is meant to
# reduce such artefacts; this closed-form model does not.
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
signals = [
    ("original", clip[:, 0]),
    ("WaLLoC", rec[:, 0]),
    ("error", rec[:, 0].astype(float) - clip[:, 0]),
]
for ax, (title, x) in zip(axes, signals):
    ax.specgram(
        x.astype(float),
        NFFT=512,
        Fs=RATE,
        noverlap=384,
        vmin=-40,
        vmax=60,
        cmap="magma",
    )
    ax.set_title(title)
    ax.set_xlabel("time (s)")
axes[0].set_ylabel("frequency (Hz)")
fig.tight_layout()
