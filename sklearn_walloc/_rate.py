"""Rate control: each signal's quantiser gain chosen to meet a target.

The gain of a blob (format 4: signed, in quarter octaves) scales the latents
before companding: each step of +1 makes the quantiser's steps 2**(1/4) finer
(about 1.5 dB of rounding error less, more bits), -1 coarser. Bytes grow and
the error falls with the gain, so a target is a search over one integer per
signal: from the model's own rate (gain 0), then where the line through the
two nearest candidates meets the target, inside the bracket, with a bisection
where that does not halve it (:func:`_largest`). ``target_bpp`` codes each
candidate (the coded size is the only size that counts); ``target_psnr`` also
decodes it. Each candidate is a real blob, so the result is exactly what
``compress`` returns for that gain: the same bytes alone or in any batch.
"""

import math
import numbers
import warnings
from functools import partial

import numpy as np
import torch

from ._container import MAX_GAIN_STEPS, MIN_GAIN_STEPS
from ._encode_tiles import image_latents, uses_tiles
from ._enhancement import encode_enhancement, trim
from ._signal import crop, iter_chunks, pad_to_multiple
from ._ties import latents_and_first
from .metrics import _round_trip_db

__all__ = [
    "HIGHEST_GAIN",
    "IMAGE_DEADZONE",
    "LOWEST_GAIN",
    "best_of",
    "check_targets",
    "compress_to_target",
    "quality_psnr",
]

#: Gains a target may choose, in quarter octaves: 10 octaves coarser than the
#: model's own quantiser (every latent of a photo 0) to 6 octaves finer (16-bit
#: latents, beyond what any projection keeps).
LOWEST_GAIN = MIN_GAIN_STEPS
HIGHEST_GAIN = min(24, MAX_GAIN_STEPS)
#: Images' blobs with a gain (every blob of a shipped image model, at its
#: default gain or a target's) round with a zero bin widened by this much
#: (companded units; ``_ties.deadzone_round``): latents within 0.6 of zero
#: code as 0. Gainless blobs keep rounding to nearest, so that they decode
#: exactly to ``inverse_transform(transform(X))``. Chosen on the bundled fit
#: photos' centre crops with rgb-16x over gains -20..-1 as the smallest
#: deadzone within 0.01 dB of the best BD-PSNR against plain rounding (0.1:
#: +0.18 dB, -5.0% BD-rate; 0.2 and 0.3 no better); ``benchmarks/deadzone.py``
#: also reports the held-out photos.
IMAGE_DEADZONE = 0.1
#: ``target_psnr`` out of reach: the smallest blob within this many dB of the
#: best PSNR the gains reach.
_CAP_SLACK_DB = 0.1


def quality_psnr(quality, signal_ndim):
    """The ``target_psnr`` of the CLI's ``--quality`` 1..100 (increasing):
    ``20 + quality / 5`` dB for images, ``40 + 2 quality / 5`` for 1D signals
    (PSNR against 16-bit audio's full range runs about 20 dB above its SNR)."""
    if signal_ndim == 2:
        return 20.0 + quality / 5
    return 40.0 + 2 * quality / 5


def check_targets(target_bpp, target_psnr):
    """The rate targets as a dict of those given (empty: the model's rate)."""
    targets = {}
    for name, value in (("target_bpp", target_bpp), ("target_psnr", target_psnr)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number or None, got {value!r}")
        if not math.isfinite(value) or (name == "target_bpp" and value <= 0):
            raise ValueError(
                f"{name} must be a finite {'positive ' if name == 'target_bpp' else ''}"
                f"number, got {value!r}"
            )
        targets[name] = float(value)
    if len(targets) > 1:
        raise ValueError("give target_bpp or target_psnr, not both")
    return targets


def compress_to_target(codec, arr, idx, described, pack, targets):
    """Blobs of the signals ``arr`` (one padded merged group of ``compress``),
    each at the gain that meets the target; yields ``(i, blob)`` pairs.

    Parameters
    ----------
    codec : WallocCodec
    arr : ndarray (n, C, *S)
        The signals in model units, of one padded shape (large images: read
        lazily, maybe still integers, see ``_encode_tiles``).
    idx : ndarray (n,)
        Each row's index among ``compress``'s signals.
    described : list of (shape, dtype)
        Each signal's original shape and dtype (``describe_input``).
    pack : callable
        ``pack(grid, bits, gain, i)``: the blob of integer latents ``grid``.
    targets : dict
        ``target_bpp`` or ``target_psnr`` (:func:`check_targets`), or
        ``gain``: that gain for every signal.
    """
    target_psnr = targets.get("target_psnr")
    module, fused, device = codec._runtime_model()
    ndim = codec.signal_ndim
    # Enhancement channels serve rate targets; a fixed gain keeps the
    # model's own channels (the default blobs of a shipped model).
    ext = None
    if codec.spec_.enhancement_dim and "gain" not in targets:
        ext = codec._enhancement_encoder(device)
    latents = _latents(codec, arr, module, fused, device, ext)
    for row, (x, z, z_ext, first, first_ext) in enumerate(latents):
        i = int(idx[row])
        shape = described[i][0]
        spatial = tuple(shape[:ndim])
        coded = _Candidates(codec, module, fused, x, z, partial(pack, i=i), first)
        if "gain" in targets:  # the codec's fixed gain
            yield i, coded.blob(targets["gain"])
            continue
        variants = [coded]
        if ext is not None:
            variants.append(coded.enhanced(ext, z_ext, first_ext))
        chosen, gain = [], 0
        for v in variants:  # each search's warnings, kept for the one chosen
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # The enhanced blob of a gain is larger than the plain one,
                # so its gain is at most the plain search's: start there when
                # that is below the model's own rate (low targets, a few
                # steps apart), else at gain 0 (on 7 held-out photos at 0.3,
                # 0.9 and 1.5 bpp: 26.9 blobs in all, 30.1 always from the
                # plain gain, 27.9 always from 0).
                gain = _search(v, x, codec, shape, spatial, i, targets, min(gain, 0))
            chosen.append((v, gain, caught))
        if len(chosen) > 1:
            chosen = [_better(chosen, x, codec, spatial, target_psnr)]
        v, gain, caught = chosen[0]
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        yield i, v.blob(gain)


def _search(coded, x, codec, shape, spatial, i, targets, start=0):
    """The gain of signal ``i``'s blob that meets ``targets``, searched from
    gain ``start``."""
    ndim = codec.signal_ndim
    target_bpp = targets.get("target_bpp")
    if target_bpp is not None:
        # PCM's convention: bits per sample and channel for 1D.
        values = math.prod(shape) if ndim == 1 else math.prod(spatial)
        limit = math.floor(target_bpp * values / 8)
        gain = _largest(lambda g: len(coded.blob(g)), limit, log=True, start=start)
        if gain is None:
            gain = LOWEST_GAIN
            warnings.warn(
                f"signal {i}: target_bpp={target_bpp} is below this "
                f"model's smallest blob, "
                f"{8 * len(coded.blob(gain)) / values:.4g} bits; "
                "returning that blob",
                UserWarning,
                stacklevel=4,  # the caller of compress
            )
        return gain
    return coded.for_psnr(
        targets["target_psnr"], _original(x, codec, spatial), spatial, i, start
    )


def _original(x, codec, spatial):
    """The signal, cropped to its own size, to measure a PSNR against."""
    whole = x if isinstance(x, torch.Tensor) else x.whole()
    return crop(whole.cpu().numpy(), spatial, codec.spec_.centred)


def _better(chosen, x, codec, spatial, target_psnr):
    """Of ``(candidates, gain, warnings)`` with and without enhancement
    channels: for ``target_psnr`` the smallest blob that reaches it, else (and
    for ``target_bpp``) the highest PSNR, then the smallest blob. At the
    lowest rates the model's own channels alone can do better: the bits the
    enhancement channels take then buy less than the decoder's own estimate
    of what they code (0.2-0.6 dB at 0.1 bpp on held-out photos)."""
    orig = _original(x, codec, spatial)
    scored = [(c, g, w, c.psnr(g, orig, spatial), len(c.blob(g))) for c, g, w in chosen]
    if target_psnr is not None:
        reach = [s for s in scored if s[3] >= target_psnr]
        if reach:
            return min(reach, key=lambda s: s[4])[:3]
    return max(scored, key=lambda s: (s[3], -s[4]))[:3]


def _latents(codec, arr, module, fused, device, ext=None):
    """Per signal of ``arr``, in order: the padded signal (model units, a
    tensor on ``device``), its float latents ``(1, D, *g)``, with enhancement
    encoder ``ext`` its enhancement latents (else None), and the first stage
    outputs of both encoders that exact rounding reads (``_ties``; None for a
    large image). Large images (read lazily, maybe still integers) are encoded
    in strips and come as a ``_encode_tiles.StripImage``, loaded whole only if
    asked: it recomputes first-stage rows itself, and both encoders share their
    first stage (the packet analysis along the rows; the scales and the 1x1
    weights live in the last), so it serves the enhancement latents too. The
    others run in the transformer's fixed chunks, so each gets the latents it
    gets alone."""
    spec = codec.spec_
    if uses_tiles(arr, codec.signal_ndim):
        for j in range(len(arr)):
            x = arr[j : j + 1]
            z, image = image_latents(fused, x, spec.sample_dtype, device, spec.centred)
            z_ext = None
            if ext is not None:
                z_ext, _ = image_latents(
                    ext, x, spec.sample_dtype, device, spec.centred
                )
            yield image, z, z_ext, None, None
        return
    x = pad_to_multiple(arr, 2**spec.levels, spec.centred)
    for t, n in iter_chunks(x, device):
        with torch.no_grad():
            z, first = latents_and_first(fused, t)
            z_ext = first_ext = None
            if ext is not None:
                z_ext, first_ext = latents_and_first(ext, t)
        parts = (z_ext, first, first_ext)
        for j in range(n):
            rest = (None if a is None else a[j : j + 1] for a in parts)
            yield (t[j : j + 1], z[j : j + 1], *rest)


class _Candidates:
    """The blob (and PSNR) of one signal at each gain tried, computed once."""

    def __init__(self, codec, module, fused, x, z, pack, first=None):
        self.codec, self.module, self.fused = codec, module, fused
        self.x, self.z = x, z  # x: a tensor or a StripImage (_latents)
        self.first = first  # the encoder's first stage output (exact rounding)
        self.pack = pack  # pack(grid, bits, gain): the blob
        self._coded = {}
        self._psnr = {}
        self._base = {}  # gain -> the model's own integer latents and bits
        self._ext = None

    def enhanced(self, fused, z, first=None):
        """The same signal's candidates with enhancement channels too:
        ``fused`` their encoder, ``z`` its float latents of this signal
        (``first``: its first stage output); the model's own latents of
        each gain are computed once for both."""
        other = _Candidates(
            self.codec, self.module, self.fused, self.x, self.z, self.pack, self.first
        )
        other._base, other._ext = self._base, (fused, z, first)
        return other

    def _latents(self, gain):
        if gain not in self._coded:
            steps = torch.tensor([gain], dtype=torch.int64)
            x = self.x if self.module.rounds_exactly() else None
            # Gainless blobs decode exactly to inverse_transform(transform(X)),
            # which rounds to nearest: no deadzone for them.
            image = self.codec.signal_ndim == 2 and gain != 0
            deadzone = IMAGE_DEADZONE if image else 0.0
            if gain not in self._base:
                q, bits = self.module.encode_at_gains(
                    x, self.z, self.fused, steps, deadzone, self.first
                )
                self._base[gain] = (q[0].cpu().numpy().astype(np.int32), bits)
            grid, bits = self._base[gain]
            if self._ext is not None:
                fused, z, first = self._ext
                extra = encode_enhancement(
                    self.module, fused, x, z, gain, int(bits[0]), deadzone, first
                )
                extra = trim(extra[0].cpu().numpy().astype(np.int32))
                grid = np.concatenate([grid, extra])
            self._coded[gain] = (grid, int(bits[0]), None)
        return self._coded[gain]

    def blob(self, gain):
        grid, bits, blob = self._latents(gain)
        if blob is None:
            blob = self.pack(grid, bits, gain)
            self._coded[gain] = (grid, bits, blob)
        return blob

    def psnr(self, gain, orig, spatial):
        if gain not in self._psnr:
            grid, bits, _ = self._latents(gain)
            z = grid[None].astype(np.float32)
            decoded = self.codec._decode_gained(z, spatial, gain, bits)
            rng, domain = self.codec.data_range_, self.codec.spec_.sample_dtype
            db = _round_trip_db(orig, decoded, "psnr", rng, domain)
            self._psnr[gain] = float(db[0])
        return self._psnr[gain]

    def for_psnr(self, target, orig, spatial, i, start=0):
        """The smallest gain whose PSNR reaches ``target``, searched from
        ``start``."""
        below = _largest(
            lambda g: self.psnr(g, orig, spatial), target, strict=True, start=start
        )
        if below is None:
            return LOWEST_GAIN
        if below < HIGHEST_GAIN:
            return below + 1
        best = max(self._psnr.values())
        gain = min(g for g, db in self._psnr.items() if db >= best - _CAP_SLACK_DB)
        warnings.warn(
            f"signal {i}: target_psnr={target} dB is above what this model "
            f"reaches ({best:.2f} dB at best); returning the smallest blob within "
            f"{_CAP_SLACK_DB} dB of that",
            UserWarning,
            stacklevel=5,  # the caller of compress
        )
        return gain


def _largest(value, threshold, *, strict=False, log=False, start=0,
             low=LOWEST_GAIN, high=HIGHEST_GAIN):  # fmt: skip
    """The largest gain in ``[low, high]`` whose ``value`` is at most
    ``threshold`` (below it, with ``strict``), for a value that grows with the
    gain; None where no gain's does.

    Each ``value(g)`` is a real blob (or its decoding), so the search asks few:
    first ``start`` (the model's own rate, gain 0, or where a search of the
    same signal ended), then a gain 4 steps towards the
    threshold, then where the line through the two nearest values (of their
    logarithm, with ``log``: bytes grow about geometrically with the gain)
    meets the threshold, inside the bracket found so far; a guess that does
    not halve the bracket is followed by a bisection. The same gain as
    bisecting on ``value(g) <= threshold`` alone wherever the value grows
    with the gain (about 4-5 values asked instead of 7-9 on photos).
    """
    seen = {}  # gain -> signed distance to the threshold (<= 0: holds)
    log = log and threshold > 0

    def ask(g):
        v = float(value(g))
        if log:
            v = math.log(max(v, 1e-300)) if math.isfinite(v) else v
            seen[g] = v - math.log(threshold)
        else:
            seen[g] = v - threshold
        d = seen[g]
        return d < 0 if strict else d <= 0

    good = bad = None  # the largest gain that holds, the smallest that does not
    g, last_width = min(max(start, low), high), None
    while True:
        if ask(g):
            good = g if good is None else max(good, g)
        else:
            bad = g if bad is None else min(bad, g)
        if good is not None and (good >= high or (bad is not None and bad - good <= 1)):
            return good
        if bad is not None and bad <= low:
            return None
        g = _next_gain(seen, good, bad, low, high, last_width)
        last_width = None if good is None or bad is None else bad - good


def _next_gain(seen, good, bad, low, high, last_width):
    """The next gain :func:`_largest` asks about."""
    if good is not None and bad is not None:
        width = bad - good
        if last_width is not None and 2 * width > last_width:
            return (good + bad) // 2  # the last guess did not halve it
        guess = _crossing(seen, good, bad)
        lo, hi = good + 1, bad - 1
    else:
        near = sorted(seen, key=lambda k: abs(seen[k]))[:2]
        guess = _crossing(seen, *near) if len(near) == 2 else None
        known = good if bad is None else bad
        if guess is None:  # one value so far, or flat ones: 4, 8, 16 steps
            step = 4 * 2 ** (len(seen) - 1)
            guess = known + (step if bad is None else -step)
        elif bad is None:
            # Going up, one past the crossing: bytes grow ever slower at
            # fine gains, so the line falls short, and a gain that fails
            # brackets the answer at once.
            guess += 1
        lo, hi = (known + 1, high) if bad is None else (low, known - 1)
    g = min(max(math.floor(guess), lo), hi)
    while g in seen and lo <= g < hi:
        g += 1
    return (good + bad) // 2 if g in seen else g


def _crossing(seen, a, b):
    """Where the line through gains ``a`` and ``b``'s values meets 0, or None."""
    if a is None or b is None or a == b:
        return None
    ya, yb = seen[a], seen[b]
    if not (math.isfinite(ya) and math.isfinite(yb)) or ya == yb:
        return None
    x = a - ya * (b - a) / (yb - ya)
    return x if math.isfinite(x) else None


def best_of(codecs, signal, targets):
    """The codec among ``codecs`` (of one sample domain) that serves a rate
    target best for ``signal``, and its blob: the highest PSNR within
    ``target_bpp``; for ``target_psnr``, the smallest blob that reaches it,
    else the highest PSNR. Each codec's search runs in full, so this costs
    one rate control (and one decoding) per codec; the warnings of the codec
    chosen are re-issued, those of the others dropped.

    Returns
    -------
    codec, blob, psnr_db
    """
    tried = []
    for codec in codecs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            (blob,) = codec.compress([signal], **targets)
        arrays, _ = codec._read([signal])  # (1, C, *S), model units
        (decoded,) = codec.decompress([blob], restore=False)
        if decoded.ndim == codec.signal_ndim:  # given without a channel axis
            decoded = decoded[..., None]
        y = np.moveaxis(decoded, -1, 0)[None]
        rng, domain = codec.data_range_, codec.spec_.sample_dtype
        db = float(_round_trip_db(arrays[0], y, "psnr", rng, domain)[0])
        tried.append((codec, blob, db, caught))
    psnr_target = targets.get("target_psnr")
    reach = [t for t in tried if psnr_target is not None and t[2] >= psnr_target]
    if reach:
        codec, blob, db, caught = min(reach, key=lambda t: len(t[1]))
    else:
        codec, blob, db, caught = max(tried, key=lambda t: (t[2], -len(t[1])))
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return codec, blob, db
