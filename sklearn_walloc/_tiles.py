"""Bounded-memory, batch-invariant decoding of latent grids.

The decoder (a few 3x3 convolutions on the latent grid, then the wavelet packet
synthesis) reads only a small neighbourhood of latents for each output sample.
A large grid is therefore decoded tile by tile: each tile with a halo at least
that neighbourhood's radius, alone, and only its centre is written into an
output allocated once at the requested (cropped) size. Peak memory is the
output plus one tile, whatever the signal's size, and a blob declaring a huge
signal costs memory in proportion to the output it asks for, not more.

Every signal is cut into tiles by its own grid shape alone, and small grids run
in the fixed-size chunks of :func:`~sklearn_walloc._signal.run_in_chunks`, so a
signal decodes to the same bits whatever batch it came in; ``inverse_transform``
and ``WallocCodec.decompress`` share this path and so agree bit for bit.
"""

import itertools
import math

import numpy as np
import torch

from ._signal import _canonical_layout, crop, run_in_chunks

__all__ = [
    "LARGE_OUTPUT",
    "LARGE_TILE_DIVISOR",
    "TILE_VALUES",
    "decode_grids",
    "receptive_radius",
]

#: Output values (samples x channels) of one decoded tile: 2**23 float32 values
#: are 32 MiB, e.g. 1672 x 1672 RGB pixels or 8 M audio samples; a grid whose
#: output is smaller decodes in one piece.
TILE_VALUES = 2**23
#: Outputs of more values than this (a 21 MP RGB photo, or a small blob
#: declaring a huge signal) decode in tiles of an eighth as many values: the
#: tile's working set (the decoder's features and a few float copies of the
#: bands, about 13x the tile's float32 output) then weighs less against the
#: output. The 136-byte blob of a 6688 x 6688 RGB photo (rgb-16x, 128 MiB of
#: uint8 output) peaked at 330-350 MiB over the loaded model in tiles of half,
#: 277-289 MiB in eighths (2.2x the output), decoding in 3.6 s instead of 2.8.
LARGE_OUTPUT = 2**26
LARGE_TILE_DIVISOR = 8


def receptive_radius(module):
    """Latent positions on each side that an output sample's value depends on.

    The residual decoder path reads one position per 3x3 convolution (one, plus
    two per block); the synthesis of level ``j`` reads ``r`` band samples on
    either side, which are ``r / 2**(J-j)`` latent positions, less than ``2r``
    over all levels.
    """
    # A decoder of the reference implementation states its own radius.
    refine = getattr(module.decoder, "refine", None)
    convs = 0 if refine is None else 1 + 2 * (len(refine) - 3)
    convs = getattr(module.decoder, "receptive_radius", convs)
    wpt = module.wpt
    taps = len(wpt._synthesis[0][0])
    r = max(wpt.synthesis_pad, taps - 1 - wpt.synthesis_pad)
    return convs + 2 * r + 1


def _tile_sides(grid, channels, stride):
    """Latent positions per axis of a tile, or None if the grid fits whole.

    The budget goes to the short axes first, whole, and the rest is shared by
    the long ones: a 1-row image gets tiles one row high and as long as the
    budget allows, not thousands of square ones.
    """
    out_values = channels * math.prod(g * stride for g in grid)
    if out_values <= TILE_VALUES:
        return None
    tile = (
        TILE_VALUES // LARGE_TILE_DIVISOR if out_values > LARGE_OUTPUT else TILE_VALUES
    )
    budget = tile / (channels * stride ** len(grid))  # latent positions
    sides = [0] * len(grid)
    order = sorted(range(len(grid)), key=lambda a: grid[a])
    for k, axis in enumerate(order):
        share = (budget / math.prod(sides[a] for a in order[:k])) ** (
            1 / (len(grid) - k)
        )
        sides[axis] = max(1, min(grid[axis], int(share)))
    return sides


def _decode_tile(decode, t):
    try:
        return decode(t)[0]
    except RuntimeError as e:
        # torch reports a failed allocation as a RuntimeError; say what it is.
        if "alloc" in str(e).lower() or "out of memory" in str(e).lower():
            raise MemoryError(str(e)) from None
        raise


def decode_grids(
    module, z, device, out_spatial=None, decode=None, finish=None, centred=False
):
    """Decode latent grids ``z`` ``(n, D, *g)`` to signals ``(n, C, *S)``.

    Parameters
    ----------
    module : WallocAutoencoder
        On ``device``, in eval mode.
    z : ndarray of float32, shape (n, latent_dim, *grid)
    device : torch.device
    out_spatial : tuple of int, default=None
        Crop of the output, at most ``grid * stride`` per axis; None keeps the
        whole padded size.
    decode : callable, default=None
        Latents (torch, on ``device``) to signals; None: ``module.decode``.
    finish : tuple (dtype, callable), default=None
        An elementwise conversion of the float32 output (rounding to the
        caller's dtype, say) and the dtype it returns, applied tile by tile so
        that the float32 signal never exists whole: the output is allocated
        once, in that dtype. None: float32 as decoded.
    centred : bool, default=False
        Where the crop lies: at the start of each axis, or ``centred`` where
        the reference implementation's ``crop`` takes it (``(grid * stride -
        out_spatial) // 2`` from the start; ``ModelSpec.padding``).

    Returns
    -------
    ndarray of float32 (or ``finish``'s dtype), shape (n, C, *out_spatial)
    """
    decode = module.decode if decode is None else decode
    grid = z.shape[2:]
    stride = module.stride
    full = tuple(g * stride for g in grid)
    out_spatial = full if out_spatial is None else tuple(out_spatial)
    starts = [(f - o) // 2 if centred else 0 for f, o in zip(full, out_spatial)]
    channels = module.encoder.in_channels // module.wpt.n_bands
    sides = _tile_sides(grid, channels, stride)
    if sides is None:
        y = crop(run_in_chunks(decode, z, device), out_spatial, centred)
        return y if finish is None else finish[1](y)
    out_dtype, convert = (np.float32, None) if finish is None else finish
    halo = receptive_radius(module)
    # Channels-last memory, as the readers and writers use: laying the result
    # out for the caller then needs no copy of the (large) output.
    out = np.empty((len(z), *out_spatial, channels), dtype=out_dtype)
    out = np.moveaxis(out, -1, 1)
    # Tiles along each axis: (start, stop) of the centre in latent positions,
    # those that cover the crop.
    axes = [
        [(s, min(s + side, g)) for s in range(a // stride, -(-(a + o) // stride), side)]
        for g, a, o, side in zip(grid, starts, out_spatial, sides)
    ]
    with torch.no_grad():
        for i in range(len(z)):
            for tile in itertools.product(*axes):
                window = [
                    (max(0, a - halo), min(g, b + halo))
                    for (a, b), g in zip(tile, grid)
                ]
                part = z[(i, slice(None), *[slice(a, b) for a, b in window])][None]
                t = _canonical_layout(torch.from_numpy(np.ascontiguousarray(part)))
                y = _decode_tile(decode, t.to(device))
                src, dst = [slice(None)], [i, slice(None)]
                for (a, b), (wa, _), o, c in zip(tile, window, out_spatial, starts):
                    lo, hi = max(a * stride, c), min(b * stride, c + o)
                    src.append(slice(lo - wa * stride, hi - wa * stride))
                    dst.append(slice(lo - c, hi - c))
                y = y[tuple(src)].cpu().numpy()
                out[tuple(dst)] = y if convert is None else convert(y)
    return out
