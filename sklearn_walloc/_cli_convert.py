"""``walloc convert``: a walloc 1.2.1 checkpoint to a safe model file.

The paper's checkpoints are PyTorch ``.pth`` files beside a ``.json`` config
(``sklearn_walloc._reference``). Converted once, they are a model file like
those ``walloc fit`` writes (no pickle), which every command takes with
``-m``; ``-m`` also takes the ``.pth`` itself when its ``.json`` lies beside
it, converting it at each run.
"""

from pathlib import Path

from . import _cli_common as common
from ._cli_common import CliError


def config_beside(path):
    """The ``.json`` config next to a ``.pth`` checkpoint, or a CliError."""
    config = Path(path).with_suffix(".json")
    if not config.is_file():
        raise CliError(
            f"{path}: a PyTorch checkpoint; its walloc config {config} is "
            "missing (convert it with 'walloc convert CHECKPOINT --config JSON')"
        )
    return config


def from_checkpoint(path, config=None):
    """The codec of a walloc 1.2.1 checkpoint, errors as one line."""
    from .codec import WallocCodec

    config = config_beside(path) if config is None else config
    try:
        return WallocCodec.from_reference(path, config)
    except (ValueError, OSError) as e:
        raise CliError(f"{path}: {common.one_line(e)}") from None


def cmd_convert(args):
    out = Path(args.output or Path(args.checkpoint).with_suffix(".npz"))
    common.check_free([out], args.force, [args.checkpoint])
    codec = from_checkpoint(args.checkpoint, args.config)
    codec.verbose = 0
    try:
        common.write(out, codec.save, args.force)
    except common.OutputExists as e:
        raise CliError(str(e)) from None
    spec = codec.spec_
    common.say(
        args.quiet,
        f"converted {args.checkpoint}: {spec.in_channels} channel(s), "
        f"levels={spec.levels}, latent_dim={spec.latent_dim}, decoder "
        f"{spec.decoder_kind} (width {spec.decoder_width})\nwrote {out}",
    )
    return 0


def add_convert(sub):
    p = sub.add_parser(
        "convert",
        help="convert a walloc 1.2.1 checkpoint (.pth + .json) to a model file",
        description="Convert a checkpoint of the paper's reference implementation "
        "(walloc 1.2.1 Codec2D or Codec1D: a .pth holding model_state_dict and "
        "its .json config) into a model file for -m. Tensors only are read "
        "(no pickled code).",
    )
    p.add_argument("checkpoint", help="the .pth file")
    p.add_argument(
        "--config", help="the .json config (default: the .pth's name with .json)"
    )
    p.add_argument(
        "-o", "--output", help="model file to write (default: the .pth's name, .npz)"
    )
    p.add_argument("-f", "--force", action="store_true", help="replace -o")
    p.add_argument("-q", "--quiet", action="store_true", help="no report")
    p.set_defaults(func=cmd_convert)
