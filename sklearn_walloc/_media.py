"""Reading and writing images and audio for the command line.

Signals keep their true sample type, so the codec sees what the file holds:
8-bit images as ``uint8``, 16-bit greyscale as ``uint16``, 32-bit integer and
float images as ``int32`` and ``float32``; audio as ``int16`` (8- and 16-bit),
``int32`` (24-bit, left-justified at full scale as soundfile reads it, and
32-bit), ``float32`` or ``float64``. What the array does not say is returned as
metadata for the ``.wlc`` header (``_wlc``): image mode, EXIF orientation and
ICC profile; audio sample rate, container format and subtype (``PCM_24``, ...),
so a decompressed file is written back the way it was read. The alpha plane of
an RGBA or LA image is split off (:func:`split_alpha`) and kept exactly, as PNG
bytes in ``meta["alpha"]``, which ``_wlc`` stores in a section of its own.

What is not one image of a colour space the models code is converted
explicitly or refused, never dropped silently: animations and multi-page files
are refused with their frame count, 16-bit colour (which Pillow reads as 8-bit)
with its depth; CMYK, LAB, YCbCr and HSV become sRGB (with
the embedded ICC profile when there is one); a profile is kept only where it
describes the pixels (``_to_array_mode`` lists every mode's rule).

Images go through Pillow, audio through soundfile (libsndfile). Errors are
``ValueError`` with a one-line reason that does not repeat the path.
"""

import base64
import io
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "AUDIO_EXTENSIONS",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "check_size",
    "default_format",
    "media_of",
    "output_name",
    "read_signal",
    "split_alpha",
    "write_signal",
]

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".ppm",
    ".pgm",
    ".pnm",
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")

#: Output formats: name -> (media, file extension, lossy).
FORMATS = {
    "png": ("image", ".png", False),
    "tiff": ("image", ".tiff", False),
    "webp": ("image", ".webp", None),  # lossless unless a quality is given
    "jpg": ("image", ".jpg", True),
    "wav": ("audio", ".wav", False),
    "flac": ("audio", ".flac", False),
    "ogg": ("audio", ".ogg", True),
}

_PIL_FORMAT = {"png": "PNG", "tiff": "TIFF", "webp": "WEBP", "jpg": "JPEG"}
# Pillow modes each image format stores exactly.
_IMAGE_MODES = {
    "png": {"L", "LA", "RGB", "RGBA", "I;16"},
    "tiff": {"L", "LA", "RGB", "RGBA", "I;16", "I", "F"},
    "webp": {"L", "LA", "RGB", "RGBA"},  # greyscale comes back as RGB
    "jpg": {"L", "RGB"},
}
_SF_FORMAT = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
_DEFAULT_QUALITY = 90
_EXIF_ORIENTATION = 0x0112

# The array type soundfile reads each subtype into: the narrowest that holds
# every sample exactly; lossy codecs decode to float.
_READ_DTYPE = {
    "PCM_S8": "int16",
    "PCM_U8": "int16",
    "PCM_16": "int16",
    "ULAW": "int16",
    "ALAW": "int16",
    "PCM_24": "int32",
    "PCM_32": "int32",
    "FLOAT": "float32",
    "DOUBLE": "float64",
}


def media_of(path):
    """``"image"``, ``"audio"`` or None, from the file name's extension."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    return None


def read_signal(path):
    """Read an image or an audio file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    signal : ndarray
        ``(H, W)`` or ``(H, W, C)`` for images, ``(L,)`` or ``(L, C)`` for audio,
        in the file's sample type.
    meta : dict
        Metadata for the ``.wlc`` header (``media``, ``format`` and the keys
        above; ``name`` is the caller's to add).

    Raises
    ------
    ValueError
        If the file type is unsupported or the file cannot be read.
    """
    media = media_of(path)
    if media == "image":
        return _read_image(path)
    if media == "audio":
        return _read_audio(path)
    raise ValueError(
        f"unsupported file type (images: {' '.join(IMAGE_EXTENSIONS)}; "
        f"audio: {' '.join(AUDIO_EXTENSIONS)})"
    )


# Modes whose array the codec takes as it is (8-bit, 16-bit, 32-bit and float).
_KEPT_MODES = ("L", "LA", "RGB", "RGBA", "I", "F")
# Modes that hold premultiplied or palette colour: Pillow's conversion is exact.
_EXACT_CONVERSIONS = {
    "1": "L",
    "La": "LA",
    "RGBa": "RGBA",
    "PA": "RGBA",
    "RGBX": "RGB",
}
# Colour spaces converted to sRGB; the ICC colour space each needs to use an
# embedded profile, and Pillow's own conversion when there is none.
_COLOUR_SPACES = {"CMYK": "CMYK", "LAB": "Lab", "YCbCr": "YCbr", "HSV": "HSV"}
# The ICC colour space (header field, stripped) that describes each output mode.
_ICC_SPACE = {
    "L": "GRAY",
    "LA": "GRAY",
    "I;16": "GRAY",
    "I": "GRAY",
    "F": "GRAY",
    "RGB": "RGB",
    "RGBA": "RGB",
}


def _icc_space(icc):
    """The colour space an ICC profile declares (``"RGB"``, ``"CMYK"``...), or None."""
    from PIL import ImageCms

    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space.strip()
    except Exception:  # a profile lcms cannot parse describes nothing
        return None


def _to_sRGB(img, icc):
    """An image of another colour space, converted to sRGB ``RGB``.

    With an embedded profile of the image's colour space, LittleCMS converts
    (perceptual intent); otherwise Pillow's conversion (LAB through the built-in
    D50 Lab profile).
    """
    from PIL import ImageCms

    space = _COLOUR_SPACES[img.mode]
    srgb = ImageCms.createProfile("sRGB")
    if icc is not None:
        if _icc_space(icc) != space:
            raise ValueError(
                f"the embedded ICC profile does not describe {img.mode} pixels "
                f"(it declares {_icc_space(icc) or 'nothing readable'}); "
                "cannot convert to RGB"
            )
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    elif img.mode == "LAB":
        source = ImageCms.createProfile("LAB")
    else:
        return img.convert("RGB")
    try:
        return ImageCms.profileToProfile(img, source, srgb, outputMode="RGB")
    except Exception as e:  # lcms errors: ImageCms.PyCMSError and others
        raise ValueError(
            f"cannot convert {img.mode} to sRGB with the embedded ICC profile: {e}"
        ) from None


def _to_array_mode(img, icc):
    """The image in a mode whose array keeps what the file holds.

    Returns ``(image, mode, icc)``: ``icc`` is the profile to keep, None when
    it would not describe the pixels returned (other colour spaces are
    converted to sRGB, which an untagged output means).

    Decisions, mode by mode: 8-bit, 16-bit (``I;16*``), 32-bit (``I``) and float
    (``F``) greyscale, RGB and their alpha forms are kept; 1-bit becomes 8-bit
    ``L`` (0 and 255); palette images become RGB, or RGBA when the palette has
    transparency; premultiplied alpha is unpremultiplied; RGBX loses its
    padding byte; CMYK, LAB, YCbCr and
    HSV are converted to sRGB RGB. Other modes are refused.
    """
    mode = img.mode
    if mode.startswith("I;16"):
        mode = "I;16"
    elif mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode)
    elif mode in _EXACT_CONVERSIONS:
        mode = _EXACT_CONVERSIONS[mode]
        img = img.convert(mode)
    elif mode in _COLOUR_SPACES:
        img, mode, icc = _to_sRGB(img, icc), "RGB", None
    elif mode not in _KEPT_MODES:
        raise ValueError(f"unsupported image mode {mode}")
    if icc is not None and _icc_space(icc) != _ICC_SPACE[mode]:
        icc = None  # a profile of another colour space would mislead readers
    return img, mode, icc


def _as_array(img, strip_bytes=1 << 24):
    """``np.asarray(img)``, copied in strips of rows.

    ``np.asarray`` goes through ``tobytes``, which holds the whole image twice
    more while it joins its pieces (+0.5 GB for an 81 MP RGB photo); strips of
    about ``strip_bytes`` keep the extra memory to one strip.
    """
    width, height = img.size
    rows = max(1, strip_bytes // max(1, width * len(img.getbands()) * 4))
    first = np.asarray(img.crop((0, 0, width, min(rows, height))))
    if rows >= height:
        return first
    out = np.empty((height, *first.shape[1:]), first.dtype)
    out[:rows] = first
    for top in range(rows, height, rows):
        bottom = min(top + rows, height)
        out[top:bottom] = np.asarray(img.crop((0, top, width, bottom)))
    return out


def _depth(img):
    """Refuse 16-bit colour: Pillow would read only the top 8 bits of it."""
    if img.mode.startswith("I;16") or not img.tile:
        return
    args = img.tile[0].args
    rawmode = args if isinstance(args, str) else (args or ("",))[0]
    if isinstance(rawmode, str) and ";16" in rawmode:
        raise ValueError(
            f"{img.mode} with 16 bits per sample, of which Pillow reads only the "
            "top 8: save it with 8 bits per sample first (16-bit greyscale is "
            "read whole)"
        )


def _frames(img):
    """Refuse a file of several images: coding the first would drop the others."""
    n = getattr(img, "n_frames", 1)
    if type(n) is not int or n <= 1:
        return
    if img.format == "MPO":  # cameras' JPEGs: a second view, a preview, a gain map
        raise ValueError(
            f"a JPEG holding {n} images (MPO), and a .wlc file holds one: save "
            "the first image as a plain JPEG or PNG first"
        )
    raise ValueError(
        f"has {n} frames (an animation or a multi-page file), and a .wlc file "
        "holds one image: save each frame as its own file first"
    )


def _read_image(path):
    from PIL import Image

    try:
        img = Image.open(path)
    except Exception as e:  # Pillow reports bad files with many exception types
        raise ValueError(f"cannot read image: {e}") from None
    with img:
        _frames(img)
        _depth(img)
        try:
            img.load()
        except Exception as e:
            raise ValueError(f"cannot read image: {e}") from None
        source_format = img.format
        orientation = img.getexif().get(_EXIF_ORIENTATION)
        img, mode, icc = _to_array_mode(img, img.info.get("icc_profile") or None)
        arr = _as_array(img)
        img.close()  # the array holds its own copy: free Pillow's now
    if arr.size == 0:
        raise ValueError("empty image")
    if mode == "I;16":
        arr = arr.astype(np.uint16, copy=False)  # I;16B reads big-endian
    meta = {"media": "image", "mode": mode}
    if source_format:
        meta["format"] = source_format
    if type(orientation) is int and 1 <= orientation <= 8:
        meta["orientation"] = orientation
    if icc:
        meta["icc_profile"] = base64.b64encode(icc).decode("ascii")
    return np.ascontiguousarray(arr), meta


def split_alpha(signal, meta, model_channels=None):
    """The channels to code, the alpha plane moved to ``meta["alpha"]``.

    The pretrained image models code colour (RGB) or grey; alpha is kept
    exactly instead, as the bytes of an 8-bit greyscale PNG that the ``.wlc``
    file stores in its own section (``_wlc``) and :func:`write_signal` puts
    back. A soft-edged alpha plane costs a few bits per edge pixel and nearly
    nothing elsewhere (PNG's row filters suit it: 3x smaller than zlib alone on
    a 512 x 512 soft-edged disc).

    Parameters
    ----------
    signal : ndarray
        As :func:`read_signal` returns it.
    meta : dict
        Its metadata; ``"alpha"`` is added when alpha is split off.
    model_channels : int, default=None
        Channels of the model that will code the signal: when it takes every
        channel, alpha included, nothing is split. None: split.

    Returns
    -------
    signal : ndarray
        ``(H, W, 3)`` for RGBA, ``(H, W)`` for LA; ``signal`` unchanged when
        there is no alpha to split.
    """
    if meta.get("media") != "image" or meta.get("mode") not in ("LA", "RGBA"):
        return signal
    if model_channels == signal.shape[-1]:
        return signal
    meta["alpha"] = _png_plane(signal[..., -1])
    colour = signal[..., :-1]
    return np.ascontiguousarray(colour[..., 0] if colour.shape[-1] == 1 else colour)


def _png_plane(plane):
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(out, "PNG", compress_level=9)
    return out.getvalue()


_PNG_END = b"\0\0\0\0IEND\xaeB`\x82"  # the empty IEND chunk and its CRC


def _alpha_plane(png, shape):
    """The alpha plane a ``.wlc`` file holds, checked against the image's shape."""
    from PIL import Image

    try:
        if not png.endswith(_PNG_END):  # Pillow decodes a PNG cut after its pixels
            raise ValueError("the PNG is cut off")
        with Image.open(io.BytesIO(png), formats=["PNG"]) as img:
            if img.mode != "L" or img.size != (shape[1], shape[0]):
                raise ValueError(
                    f"an 8-bit {shape[1]}x{shape[0]} plane, got {img.mode} "
                    f"{img.size[0]}x{img.size[1]}"
                )
            img.load()
            return np.asarray(img)
    except Exception as e:  # Pillow's errors for a corrupt PNG
        raise ValueError(f"invalid alpha section: {e}") from None


def _with_alpha(arr, meta):
    """The decoded colour channels with the stored alpha plane put back."""
    if arr.ndim not in (2, 3) or arr.dtype != np.uint8:
        raise ValueError(
            f"cannot put 8-bit alpha back on a {arr.dtype} image of shape {arr.shape}"
        )
    alpha = _alpha_plane(meta["alpha"], arr.shape)
    colour = arr[..., None] if arr.ndim == 2 else arr
    return np.concatenate([colour, alpha[..., None]], axis=2)


def _read_audio(path):
    import soundfile as sf

    try:
        info = sf.info(str(path))
        dtype = _READ_DTYPE.get(info.subtype, "float32")
        data, rate = sf.read(str(path), dtype=dtype, always_2d=False)
    except Exception as e:  # libsndfile errors, and whatever a bad header causes
        raise ValueError(f"cannot read audio file: {e}") from None
    if data.size == 0:
        raise ValueError("empty audio file")
    if info.subtype not in _READ_DTYPE:
        # Lossy decoders (MP3, Vorbis, Opus) overshoot full scale on loud
        # material; such samples were never in the source, and the models
        # read floats in [-1, 1] only.
        over = np.abs(data) > 1
        if over.any():
            warnings.warn(
                f"{info.subtype} decoder output reaches {np.abs(data).max():.3f} "
                f"of full scale; {int(over.sum())} samples clipped to [-1, 1]",
                stacklevel=2,
            )
            np.clip(data, -1, 1, out=data)
    meta = {
        "media": "audio",
        "format": info.format,
        "subtype": info.subtype,
        "sample_rate": int(rate),
    }
    return np.ascontiguousarray(data), meta


def check_size(signal, max_values):
    """Refuse a signal larger than what ``walloc decompress`` decodes.

    Parameters
    ----------
    signal : ndarray
        The signal to code.
    max_values : int or None
        The decoder's limit (``--max-values``); the same limit on both sides
        means a file ``compress`` writes always decodes with the same option.
        None: the decoder's default, ``codec.MAX_DECODED_VALUES``.

    Raises
    ------
    ValueError
        If the signal has more than ``max_values`` values.
    """
    if max_values is None:
        from .codec import MAX_DECODED_VALUES as max_values
    if signal.size > max_values:
        shape = "x".join(map(str, signal.shape))
        raise ValueError(
            f"{signal.size} values ({shape}), more than --max-values "
            f"{max_values}, the largest signal decompress decodes with the same "
            f"option; pass --max-values {signal.size} to compress it (and the "
            "same to decompress it)"
        )


def _image_mode(dtype, channels):
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(channels)
    if channels == 1:
        return {np.uint16: "I;16", np.int32: "I", np.float32: "F"}.get(dtype.type)
    return None


def default_format(media, meta, dtype, channels):
    """The lossless output format for a decoded signal.

    Images: PNG, or TIFF when PNG cannot hold the samples (32-bit integer and
    float greyscale). Audio: FLAC for FLAC sources, WAV otherwise.
    """
    if media == "image":
        channels += "alpha" in meta  # stored beside the blob, written back with it
        mode = _image_mode(dtype, channels)
        return "tiff" if mode in _IMAGE_MODES["tiff"] - _IMAGE_MODES["png"] else "png"
    return "flac" if meta.get("format") == "FLAC" else "wav"


def output_name(name, fmt):
    """``x.jpg`` -> ``x.png``: the media extension replaced, any other kept."""
    stem = name[: -len(Path(name).suffix)] if media_of(name) else name
    return stem + FORMATS[fmt][1]


def write_signal(tmp, signal, meta, fmt, quality=None):
    """Write a decoded signal to ``tmp`` in the output format ``fmt``.

    Parameters
    ----------
    tmp : str
        File to write (its name's extension is not used).
    signal : ndarray
        As :func:`read_signal` returns it.
    meta : dict
        The ``.wlc`` metadata (orientation, ICC profile, sample rate, subtype).
    fmt : str
        A key of :data:`FORMATS`.
    quality : int, default=None
        1-100, for the lossy formats. None: ``jpg`` at 90, ``webp`` lossless,
        ``ogg`` at libsndfile's default.

    Raises
    ------
    ValueError
        If ``fmt`` cannot hold the signal.
    """
    if FORMATS[fmt][0] == "image":
        _write_image(tmp, signal, meta, fmt, quality)
    else:
        _write_audio(tmp, signal, meta, fmt, quality)


def _write_image(tmp, arr, meta, fmt, quality):
    from PIL import Image

    if "alpha" in meta:
        arr = _with_alpha(arr, meta)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    channels = arr.shape[2] if arr.ndim == 3 else 1
    mode = _image_mode(arr.dtype, channels) if arr.ndim in (2, 3) else None
    if mode is None:
        raise ValueError(
            f"cannot write a {arr.dtype} image with {channels} channel(s); "
            "decompress it from Python with WallocCodec.decompress"
        )
    if mode not in _IMAGE_MODES[fmt]:
        hint = default_format("image", meta, arr.dtype, channels)
        raise ValueError(
            f"{fmt} cannot hold a {arr.dtype} image with {channels} channel(s); "
            f"use --format {hint}"
        )
    img = Image.fromarray(arr)
    options = {}
    if "orientation" in meta:
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = meta["orientation"]
        options["exif"] = exif.tobytes()
    if "icc_profile" in meta:
        icc = base64.b64decode(meta["icc_profile"])
        # Only a profile of the output's colour space describes its pixels.
        if _icc_space(icc) == _ICC_SPACE.get(mode):
            options["icc_profile"] = icc
    if fmt == "jpg":
        options["quality"] = quality or _DEFAULT_QUALITY
    elif fmt == "webp":
        if quality is None:
            options["lossless"] = True
        else:
            options["quality"] = quality
    img.save(tmp, format=_PIL_FORMAT[fmt], **options)


def _audio_subtype(sf, fmt, meta, dtype):
    kept = meta.get("subtype")
    # libsndfile's check_format accepts MPEG in WAV, but writing it fails.
    lossy = kept and kept.startswith(("MPEG_", "VORBIS", "OPUS"))
    if kept and not lossy and sf.check_format(_SF_FORMAT[fmt], kept):
        return kept
    if fmt == "ogg":
        return "VORBIS"
    if fmt == "flac":  # integers only, up to 24 bits
        return "PCM_16" if dtype in (np.int16, np.uint8) else "PCM_24"
    return {
        np.uint8: "PCM_U8",
        np.int16: "PCM_16",
        np.int32: "PCM_32",
        np.float32: "FLOAT",
        np.float64: "DOUBLE",
    }[dtype.type]


def _write_audio(tmp, arr, meta, fmt, quality):
    import soundfile as sf

    if arr.dtype == np.uint8:  # 8-bit WAV as files of older versions hold it
        arr = (arr.astype(np.int16) - 128) * 256
        meta = {"subtype": "PCM_U8", **meta}
    if arr.dtype not in (np.int16, np.int32, np.float32, np.float64):
        raise ValueError(
            f"cannot write {arr.dtype} audio; decompress it from Python with "
            "WallocCodec.decompress"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(f"cannot write audio of shape {arr.shape}")
    rate = meta.get("sample_rate", 44100)
    subtype = _audio_subtype(sf, fmt, meta, np.dtype(arr.dtype))
    options = {}
    if fmt == "ogg" and quality is not None:
        options["compression_level"] = _vorbis_level(sf, quality)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf.write(tmp, arr, rate, subtype=subtype, format=_SF_FORMAT[fmt], **options)


def _vorbis_level(sf, quality):
    import inspect

    if "compression_level" not in inspect.signature(sf.write).parameters:
        raise ValueError("--quality for ogg needs soundfile 0.13 or later")
    # libsndfile's compression level runs the other way: 0 = best quality.
    return 1 - quality / 100
