"""Models for the ``walloc`` commands: model files, shipped models by name,
the shipped model for a signal or a blob, and what a model or blob holds.

torch, scikit-learn and the codec are imported inside the functions that
build a model, so describing a blob (``walloc info x.wlc``) never pays for
them.
"""

from pathlib import Path

from . import _pretrained
from ._cli_common import CliError, one_line

_NPY_MAGIC = b"\x93NUMPY"


def blob_info(blob):
    """:func:`sklearn_walloc.codec.blob_info`, imported on first use (the
    container module imports NumPy, which the CLI's --help need not pay for)."""
    from ._container import blob_info

    return blob_info(blob)


def channels_of(shape, ndim):
    """Channels of a signal of this shape (1 without a channel axis)."""
    return shape[ndim] if len(shape) > ndim else 1


def media_of_codec(codec):
    return "image" if codec.signal_ndim == 2 else "audio"


def is_shipped(name):
    """Whether ``name`` means a shipped model: no such file, a shipped name."""
    return not Path(name).exists() and name in _pretrained.list_pretrained()


def _shipped(name, device=None):
    from .codec import WallocCodec

    codec = WallocCodec.from_pretrained(name)
    if device is not None:
        codec.device = device
    return codec


def _read_model(path):
    from .codec import WallocCodec
    from .transformer import WallocTransformer

    try:
        return WallocCodec.load(path)
    except ValueError as e:
        if "holds a WallocTransformer" not in str(e):
            raise
    # A transformer's weights make the same codec (same fingerprint).
    t = WallocTransformer.load(path)
    codec = WallocCodec(**t.get_params())
    codec.__dict__.update(t.__dict__)
    return codec


def check_device(device):
    from ._signal import resolve_device

    if device is not None:
        try:
            resolve_device(device)
        except ValueError as e:
            raise CliError(f"--device: {e}") from None


def load_codec(name, device=None):
    """The model file, or shipped model, ``name`` as a quiet codec.

    A shipped model's name (``rgb-4x``) works wherever a model file does; a
    file of that name, if one exists, wins. Anything else that is not a
    readable model file is a one-line :class:`CliError` saying why.
    """
    if is_shipped(str(name)):
        check_device(device)
        return _shipped(str(name), device)
    path = Path(name)
    if not path.is_file():
        shipped = ", ".join(_pretrained.list_pretrained())
        raise CliError(f"{path}: no such model file (or shipped model: {shipped})")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CliError(f"{path}: cannot read model file: {e.strerror or e}") from None
    if not head:
        raise CliError(f"{path}: empty file, not a model file")
    if head.startswith(_NPY_MAGIC):
        raise CliError(
            f"{path}: a NumPy .npy array, not a model file (models are the .npz "
            "files that 'walloc fit' writes)"
        )
    if path.suffix == ".pth":  # the reference's checkpoint, its .json beside
        from ._cli_convert import from_checkpoint

        codec = from_checkpoint(path)
    else:
        codec = _read_file(path)
    check_device(device)
    if device is not None:
        codec.device = device
    codec.verbose = 0  # the command draws its own progress
    return codec


def _read_file(path):
    try:
        return _read_model(path)
    except ValueError as e:
        text = one_line(e)
        raise CliError(text if text.startswith(str(path)) else f"{path}: {text}")
    except Exception as e:  # np.load and zipfile fail in many ways on bad files
        raise CliError(
            f"{path}: not a sklearn-walloc model file ({type(e).__name__}: {e})"
        ) from None


def _kinds():
    """The shipped models and what they code, for messages."""
    out = []
    for name in _pretrained.list_pretrained():
        spec = _pretrained.spec_of(name)
        media = "image" if spec["signal_ndim"] == 2 else "audio"
        out.append(f"{name} ({media}, {spec['in_channels']} channel(s))")
    return ", ".join(out)


class Pretrained:
    """The shipped models, each loaded once, on first use.

    ``for_signal`` picks the model for a kind of signal
    (:func:`_pretrained.default_for`); ``for_blob`` finds the model that made
    a blob among every shipped model, comparing fingerprints only with the
    models whose structure (dimensionality, channels, levels, latent
    channels) the blob's header matches, so one file costs one model load.
    """

    def __init__(self, device):
        self.device = device
        self.codecs = {}
        self.fingerprints = {}

    def named(self, name):
        if name not in self.codecs:
            self.codecs[name] = _shipped(name, self.device)
        return self.codecs[name]

    def for_signal(self, media, signal):
        ndim = 2 if media == "image" else 1
        channels = channels_of(signal.shape, ndim)
        name = _pretrained.default_for(ndim, channels)
        if name is None:
            raise CliError(
                f"no pretrained model for {media} with {channels} channel(s) "
                f"(shipped: {_kinds()}); fit one with 'walloc fit' and pass -m"
            )
        return self.named(name)

    def ladder(self, media, signal):
        """The shipped models a rate target chooses among for this signal."""
        ndim = 2 if media == "image" else 1
        channels = channels_of(signal.shape, ndim)
        names = _pretrained.ladder_for(ndim, channels)
        return [self.named(n) for n in names] or [self.for_signal(media, signal)]

    def name_of(self, codec):
        """The name a loaded shipped model was asked for by."""
        return next(n for n, c in self.codecs.items() if c is codec)

    def for_blob(self, blob):
        info = blob_info(blob)
        ndim = info["signal_ndim"]
        structure = (ndim, channels_of(info["signal_shape"], ndim), info["levels"])
        # Format 5: the model's latents and some of its enhancement channels.
        from ._container import ENHANCED_VERSION

        enhanced = info["format_version"] == ENHANCED_VERSION
        latents = info["latent_shape"][0]
        shipped = _pretrained.list_pretrained()
        for name in shipped:
            spec = _pretrained.spec_of(name)
            keys = ("signal_ndim", "in_channels", "levels")
            d, k = spec["latent_dim"], spec.get("enhancement_dim", 0)
            fits = d < latents <= d + k if enhanced else latents == d
            if tuple(spec[key] for key in keys) != structure or not fits:
                continue
            key = (name, enhanced)
            if key not in self.fingerprints:
                fp = self.named(name).fingerprint(enhanced)
                self.fingerprints[key] = fp.hex()
            if self.fingerprints[key] == info["fingerprint"]:
                return self.named(name)
        raise CliError(
            "not made by a pretrained model (its fingerprint matches none of "
            f"{', '.join(shipped)}); pass the model with -m"
        )


def reduction(codec):
    return (
        codec.n_channels_ * 2 ** (codec.levels * codec.signal_ndim) / codec.latent_dim
    )


def training_line(codec):
    """What training did, in one line: steps run, kept, dB gained."""
    if codec.n_iter_ == 0:
        return "closed form (no training steps)"
    line = f"{codec.n_iter_} training step(s)"
    gain = getattr(codec, "validation_gain_", None)
    if gain is None:
        return line + " (no validation)"
    kept = codec.n_iter_kept_
    if kept == 0:
        return line + ", none kept: the closed form validated best"
    return line + f", kept step {kept}: {gain:+.3f} dB on validation"


def model_summary(name):
    """What the model file (or shipped model) ``name`` holds, as a dict."""
    codec = load_codec(name)
    n_params = sum(p.numel() for p in codec.module_.parameters())
    enc = sum(p.numel() for p in codec.module_.encoder.parameters())
    if is_shipped(str(name)):
        source = {"shipped": True, "file_bytes": _pretrained._path(name).stat().st_size}
    else:
        source = {"file_bytes": Path(name).stat().st_size}
    return {
        "file": str(name),
        "type": "model",
        "class": "WallocCodec",
        "signal_ndim": codec.signal_ndim,
        "channels": codec.n_channels_,
        "latent_dim": codec.latent_dim,
        "levels": codec.levels,
        "wavelet": codec.wavelet,
        "latent_bits": codec.latent_bits_,
        "decoder_width": codec.decoder_width,
        "decoder_depth": codec.decoder_depth,
        "decoder": codec.spec_.decoder_kind,  # "walloc", or the reference's
        "boundary": codec.spec_.boundary,
        "padding": codec.spec_.padding,  # "end", or the reference's "centred"
        "signal_shape": codec.signal_shape_,
        "dimensionality_reduction": reduction(codec),
        "parameters": int(n_params),
        "encoder_parameters": int(enc),
        "training_steps": codec.n_iter_,
        "training_steps_kept": getattr(codec, "n_iter_kept_", None),
        "validation_gain_db": getattr(codec, "validation_gain_", None),
        "fingerprint": codec.fingerprint().hex(),
        **source,
    }
