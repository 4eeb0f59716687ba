"""The inference encoder of a large image, in strips of rows, to the same latents.

The factorised encoder (:class:`~sklearn_walloc._wavelets.SeparableEncoder`)
runs its first stage along the rows (the last axis) and its second, dense one
down the columns, each over the whole image: for a 9000 x 9000 RGB photo its
float32 input, the first stage's padded input and its output are about 1 GB
each, on top of the caller's 243 MB of uint8. Here the image is encoded in
strips of latent rows instead, each from the few input rows it reads (the
filter's reach above and below); integer images stay in their dtype until a
strip is read, and are converted to the model's float32 units strip by strip.

The latents are the same floats as the whole-image encoder's, bit for bit:

- the first stage works on each row alone, so a strip's rows are the rows of
  the whole first-stage output;
- a latent row away from the ends reads only real rows, with the same kernel,
  stride and channels-last layout as the whole image (for the symmetric
  boundary rule the latent rows that read past an end are computed apart, with
  the packet analysis' exact edge rows, from the same first-stage rows as the
  whole image; for the periodic rule a strip wraps around as the whole image's
  circular padding does);
- the least-squares last row and column (:class:`~sklearn_walloc._edges.EdgeEncoder`)
  take the same first-stage rows and the same full-height column strip.

``tests/test_encode_tiles.py`` checks the latents against the whole-image
encoder bit for bit, on photos and on noise, with the tile size lowered. The
quantiser then runs on the assembled latents, as :meth:`WallocAutoencoder.encode_fused`
does.
"""

import itertools

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from . import _ties
from ._domain import to_domain
from ._edges import _PROBE, EdgeEncoder
from ._signal import _canonical_layout, pad_widths, run_merged
from ._ties import exact_rounding
from ._wavelets import SeparableEncoder, _edge_rows

__all__ = [
    "LARGE_SAMPLES",
    "TILE_SAMPLES",
    "encode_arrays",
    "encode_image",
    "image_latents",
    "uses_tiles",
]

#: Images of more samples (pixels x channels) than this are encoded in strips;
#: integer images this large are also read without a float32 copy.
LARGE_SAMPLES = 2**23
#: Input samples per strip (about 16 MB of float32 input; the first stage's
#: output is the same size).
TILE_SAMPLES = 2**23
# oneDNN picks other kernels, with other last bits, for a convolution with a
# single output row (the dense stage) or a few input rows (the first stage):
# no strip is ever that thin (the last one starts higher and overlaps).
_MIN_LATENT_ROWS = 8
_MIN_FIRST_ROWS = 16


def uses_tiles(arr, signal_ndim):
    """Whether ``arr`` ``(n, C, H, W)`` is encoded in strips (any dtype)."""
    return signal_ndim == 2 and arr.ndim == 4 and arr[0].size > LARGE_SAMPLES


def encode_arrays(est, arrays, module, fused, device):
    """The transformer's ``_encode``: large images in strips, the others
    through ``run_merged`` as before; one ``(n, D, *g)`` array per input."""
    domain, centred = est.spec_.sample_dtype, est.spec_.centred
    out = [None] * len(arrays)
    rest = [k for k, a in enumerate(arrays) if not uses_tiles(a, est.signal_ndim)]
    for k, a in enumerate(arrays):
        if k not in rest:
            parts = [
                encode_image(module, fused, a[i : i + 1], domain, device, centred)
                for i in range(len(a))
            ]
            parts = [z.cpu().numpy() for z in parts]
            out[k] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if rest:
        stride = 2**est.spec_.levels
        encode = lambda t: module.encode_fused(t, fused)  # noqa: E731
        done = run_merged(encode, [arrays[k] for k in rest], stride, device, centred)
        for k, z in zip(rest, done):
            out[k] = z
    return out


def encode_image(module, fused, x, domain, device, centred=False):
    """Integer latents (float32 ``(1, D, h, w)``, channels-last) of one image.

    Parameters
    ----------
    module : WallocAutoencoder
    fused : SeparableEncoder or EdgeEncoder
        The inference encoder (:meth:`WallocAutoencoder.inference_encoder`).
    x : ndarray ``(1, C, H, W)``
        The image, unpadded: float32 model units, or an integer dtype still to
        be converted into ``domain`` (``_domain.to_domain``).
    domain : str or None
        The model's sample dtype.
    device : torch.device
    centred : bool, default=False
        The model's padding (``ModelSpec.padding``): "centred" or "end".
    """
    z, image = image_latents(fused, x, domain, device, centred)
    with torch.no_grad():
        if _ties.EXACT_IMAGES:
            # The exact rounding reads its near ties' first-stage rows and
            # windows from the source (StripImage): no float copy of the image.
            return exact_rounding(fused, module).round(module.bottleneck, z, image)
        return module.bottleneck.quantize(z, "symbols")


def image_latents(fused, x, domain, device, centred=False):
    """The float latents ``(1, D, h, w)`` of one image ``x`` (as
    :func:`encode_image`), computed in strips, and the padded image as a
    :class:`StripImage` (for exact rounding, or loaded whole for a PSNR)."""
    strips = _Strips(fused, x, domain, device, centred)
    with torch.no_grad():
        z = strips.latents()
    return z, StripImage(strips)


class StripImage:
    """A large padded image as :class:`~sklearn_walloc._ties.ExactRounding`
    reads it: the windows of its near ties gathered from the (maybe integer)
    source and converted, so that exact rounding never makes a float copy of
    the image.

    ``windows``, ``peak`` and ``reference`` give what the tensor path reads
    from a whole float32 image, bit for bit (the conversion is elementwise);
    ``whole()`` loads it all (a PSNR needs it).
    """

    def __init__(self, strips, device=None):
        self.strips = strips
        self.device = torch.device(device or strips.device)
        self.shape = (1, strips.x.shape[1], strips.height, strips.width)
        # Source rows per band of the peak: about one strip's samples.
        self.band = max(1, TILE_SAMPLES // (self.shape[1] * self.shape[3]))

    def __len__(self):
        return 1

    def cpu(self):
        return StripImage(self.strips, "cpu")

    def whole(self):
        return self.strips.load(0, self.strips.height).to(self.device)

    def peak(self):
        """``max |x|`` ``(1,)``: the padded image repeats the source's samples,
        so this is the source's, converted band by band as the strips are."""
        x, peak = self.strips.x, None
        for r in range(0, x.shape[2], self.band):
            t = torch.from_numpy(self.strips.units(x[:, :, r : r + self.band]))
            p = torch.maximum(t.amax(), t.amin().neg())
            peak = p if peak is None else torch.maximum(peak, p)
        return peak.reshape(1).to(self.device)

    def windows(self, n, starts, widths):
        """``_ties._windows`` of the padded image: ``(F, C, *widths)`` float64
        on the CPU, gathered from the source and then converted: windows
        inside it as views, the others through the padding's (or the periodic
        wrap's) row and column maps."""
        s = self.strips
        src = np.moveaxis(s.x[0], 0, -1)  # (h, w, C): usually its memory order
        (a, b), (w0, w1) = starts, widths
        out = np.empty((len(a), src.shape[2], w0, w1), dtype=src.dtype)
        inside = (
            (a >= 0) & (a + w0 <= src.shape[0]) & (b >= 0) & (b + w1 <= src.shape[1])
        )
        if inside.any():
            view = sliding_window_view(src, (w0, w1), axis=(0, 1))
            out[inside] = view[a[inside], b[inside]]
        if not inside.all():
            rest = ~inside
            cols = np.arange(s.width) if s.cols is None else s.cols
            r = s.rows[(a[rest][:, None] + np.arange(w0)) % s.height]
            c = cols[(b[rest][:, None] + np.arange(w1)) % s.width]
            out[rest] = np.moveaxis(s.x[0][:, r[:, :, None], c[:, None, :]], 0, 1)
        return torch.from_numpy(s.units(out).astype(np.float64))

    @property
    def n_bands(self):
        """Outputs per channel of the encoder's first stage."""
        stage = self.strips.enc.stages[0]
        return stage.kernel.shape[0] // stage.groups

    def first_rows(self, start, stop):
        """The float32 encoder's first stage output ``(1, G, stop - start,
        w)`` on the CPU for padded rows ``start .. stop - 1`` (wrapping): per
        row the values the whole image gets (``_Strips.first``)."""
        with torch.no_grad():
            return self.strips.first(start, stop).cpu()

    def reference(self, fused):
        """Latents ``(1, D, h, w)`` of reference encoder ``fused`` (float64)
        over the whole image, computed in strips."""
        s = self.strips
        with torch.no_grad():
            return _Strips(fused, s.x, s.domain, "cpu", s.centred).latents()


class _Strips:
    """One image, read and encoded a strip of rows at a time."""

    def __init__(self, fused, x, domain, device, centred=False):
        self.edge = fused if isinstance(fused, EdgeEncoder) else None
        enc = fused.encoder if self.edge is not None else fused
        if not isinstance(enc, SeparableEncoder) or len(enc.stages) != 2:
            raise TypeError("strips need the 2D factorised encoder")
        self.enc, self.x, self.domain, self.device = enc, x, domain, device
        self.centred = centred
        h, w = x.shape[2:]
        # The padded image's rows and columns in the source (np.pad's
        # "symmetric" or, centred, "reflect", as pad_to_multiple).
        mode = "reflect" if centred else "symmetric"
        rows, cols = pad_widths((h, w), enc.stride, centred)
        self.rows = np.pad(np.arange(h), rows, mode=mode)
        cols = np.pad(np.arange(w), cols, mode=mode)
        self.cols = None if len(cols) == w else cols
        self.height, self.width = len(self.rows), len(cols)
        self.symmetric = enc.line[2] == "symmetric"
        self.dtype = enc.bias.dtype

    # ----------------------------------------------------------------- input
    def load(self, start, stop, cols=None):
        """Padded rows ``start .. stop - 1`` (wrapped modulo the height) as a
        float32 tensor in model units, channels-last like the readers'."""
        idx = self.rows[np.arange(start, stop) % self.height]
        lo = int(idx[0])
        if np.array_equal(idx, np.arange(lo, lo + len(idx))):
            part = self.x[:, :, lo : lo + len(idx)]  # a view
        else:
            part = self.x[:, :, idx]
        # Channels last, as the readers' views (the float32 copy keeps it).
        part = np.moveaxis(part, 1, -1)
        cols = self.cols if cols is None else cols
        if cols is not None:
            part = np.take(part, cols, axis=2)
        part = self.units(np.moveaxis(part, -1, 1))
        t = _canonical_layout(torch.from_numpy(part))
        return t.to(self.device, self.dtype)  # float64 for a reference encoder

    def units(self, part):
        """Source samples ``part`` in the model's float32 units (elementwise:
        any subset converts to the same floats as the whole)."""
        part = part.astype(np.float32)
        if self.x.dtype.kind != "f" and self.domain is not None:
            part = to_domain(part, self.x.dtype, self.domain)
        return part

    def first(self, start, stop):
        """The first stage's output (along the rows) for padded rows
        ``start .. stop - 1``: per row, the same as over the whole image."""
        n = stop - start
        if n >= _MIN_FIRST_ROWS or n >= self.height:
            return self._stage(self.load(start, stop), 0, None)
        # Too few rows: run it on more around them, and keep theirs.
        lo = start if not self.symmetric else max(0, stop - _MIN_FIRST_ROWS)
        hi = min(lo + _MIN_FIRST_ROWS, self.height) if self.symmetric else None
        if hi is None:
            hi = lo + _MIN_FIRST_ROWS
        y = self._stage(self.load(lo, hi), 0, None)
        return y.narrow(2, start - lo, n)

    def _stage(self, t, n, bias):
        stage = self.enc.stages[n]
        if self.symmetric:
            return self.enc._symmetric_stage(t, stage, bias)
        return self.enc._periodic_stage(t, stage, bias)

    # ---------------------------------------------------------------- output
    def latents(self):
        enc, s = self.enc, self.enc.stride
        stage = enc.stages[1]
        size, off = stage.kernel.shape[2], enc.offset
        m = self.height // s
        z = None
        if self.symmetric:
            edge = _edge_rows(*enc.line[:2], self.height)
            if edge.right is None:  # a short axis: no interior rows
                return self._whole()
            n_left, n_right = edge.left.shape[1], edge.right.shape[1]
            lo, hi = n_left, m - n_right
            if lo * s - off < 0 or (hi - 1) * s - off + size > self.height:
                return self._whole()
        else:
            lo, hi = 0, m
        per_row = self.x.shape[1] * self.width * s
        step = max(_MIN_LATENT_ROWS, TILE_SAMPLES // per_row)
        cuts = [*range(lo, hi, step), hi]
        if len(cuts) > 2 and cuts[-1] - cuts[-2] < _MIN_LATENT_ROWS:
            del cuts[-2]  # no thin last strip: the one before takes it
        # Consecutive strips share ``size - s`` first-stage rows: carried over,
        # not recomputed (about a fifth of the first stage's work).
        carry, end = None, cuts[0] * s - off
        for r0, r1 in itertools.pairwise(cuts):
            b = (r1 - 1) * s - off + size
            new = self.first(end, b)
            slab = new if carry is None else torch.cat([carry, new], 2)
            del new
            slab = slab.contiguous(memory_format=torch.channels_last)
            y = torch.nn.functional.conv2d(
                slab, stage.kernel, enc.bias, (s, 1), groups=stage.groups
            )
            if z is None:
                z = _empty_like_rows(y, m)
            z[:, :, r0:r1] = y
            keep = size - s  # rows the next strip reads too
            carry = None
            if keep > 0:
                carry = slab.narrow(2, slab.shape[2] - keep, keep).clone()
            del y, slab
            end = b if keep > 0 else r1 * s - off
        if self.symmetric:
            # The rows that read past an end: the exact edge rows of the packet
            # analysis on the first rows / last rows of the first stage.
            if n_left:
                p = edge.left.shape[2]
                head = enc._edge(self.first(0, p), stage, edge.left, enc.bias)
                z[:, :, :n_left] = head
            if n_right:
                p = edge.right.shape[2]
                tail = self.first(self.height - p, self.height)
                z[:, :, m - n_right :] = enc._edge(tail, stage, edge.right, enc.bias)
        if self.edge is not None:
            z = self._least_squares(z)
        return z

    def _whole(self):
        """The whole image at once (an image too short for strips)."""
        fused = self.edge if self.edge is not None else self.enc
        return fused(self.load(0, self.height))

    def _least_squares(self, z):
        """:class:`EdgeEncoder`'s last row and column, from the same inputs."""
        edge = self.edge
        if z.shape[2] >= _PROBE:
            solve = edge._solver(0, z.device, z.dtype)
            n = solve.n_samples
            rows = self.load(self.height - n, self.height)
            first = self._stage(rows, 0, None)
            z = solve(rows, z, first)
        if z.shape[3] >= _PROBE:
            solve = edge._solver(1, z.device, z.dtype)
            n = solve.n_samples
            cols = np.arange(self.width - n, self.width)
            if self.cols is not None:
                cols = self.cols[cols]
            strip = self.load(0, self.height, cols=cols)
            # The solver convolves the strip's columns as lines along the
            # height; the whole image's strip is a strided view that torch
            # copies to contiguous lines first, and the kernel (and so the
            # last bits) follows the layout: give it those contiguous lines.
            strip = strip.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
            z = solve(strip, z, None)
        return z


def _empty_like_rows(y, rows):
    """An empty tensor shaped like ``y`` with ``rows`` rows, in ``y``'s layout."""
    n, c, _, w = y.shape
    if y.is_contiguous(memory_format=torch.channels_last):
        out = torch.empty((n, rows, w, c), dtype=y.dtype, device=y.device)
        return out.permute(0, 3, 1, 2)
    return torch.empty((n, c, rows, w), dtype=y.dtype, device=y.device)
