"""What every ``walloc`` command shares: one-line messages, progress, inputs
and outputs, and the parser's argument types.

Imports only the standard library (and tqdm when a bar is drawn): the command
line builds its parser and answers ``--help`` without torch.
"""

import argparse
import math
import os
import sys
from collections import Counter
from pathlib import Path

from . import _atomic
from ._atomic import OutputExists

PROG = "walloc"


class CliError(Exception):
    """A problem to report to the user (one line), not a bug."""


def one_line(text):
    return " ".join(str(text).split())


def reason(exc):
    """Why a file failed, in one line (no traceback, whatever the exception)."""
    if isinstance(exc, (CliError, ValueError, OutputExists)):
        text = str(exc)
        if text.startswith("blobs[0]: "):  # the codec names list items
            text = text[len("blobs[0]: ") :]
    elif isinstance(exc, OSError):
        text = exc.strerror or str(exc)
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (please report this)"
    return one_line(text) or type(exc).__name__


def error(text):
    print(f"{PROG}: error: {one_line(text)}", file=sys.stderr)


def warn(text):
    print(f"{PROG}: warning: {one_line(text)}", file=sys.stderr)


def bar(iterable, quiet, **kw):
    """A progress bar on stderr: never with ``quiet``, else only on a terminal."""
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=None, file=sys.stderr, **kw)


def say(quiet, text):
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stdout)


def each(items, name_of, job, quiet, desc):
    """Run ``job(item)`` for every item; a failure prints one line and counts.

    Returns the number of failed items. ``KeyboardInterrupt`` and
    :class:`Terminated` are not caught: they stop the command.
    """
    failed = 0
    for item in bar(items, quiet, desc=desc, unit="file"):
        try:
            job(item)
        except Exception as e:
            error(f"{name_of(item)}: {reason(e)}")
            failed += 1
    return failed


def write(out, writer, force):
    """:func:`atomic_write`, with a write failure told as one line."""
    try:
        _atomic.atomic_write(out, writer, force=force)
    except OutputExists:
        raise
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror or e}") from None


def expand(inputs, accept, what):
    """Files named on the command line, folders expanded (sorted, not recursive).

    Returns ``(files, failed)``: a missing input or a folder without
    ``what`` is reported and counted, and the others are still used.
    """
    files, failed = [], 0
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and accept(q))
            if not found:
                error(f"{p}: no {what} in this folder")
                failed += 1
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            error(f"{p}: no such file or folder")
            failed += 1
    return files, failed


def is_source(path):
    """Whether a folder contributes ``path`` to ``compress`` and ``fit``: an
    image or audio file that is not a decoded copy (``x.png.walloc.png``)."""
    from ._media import media_of

    return media_of(path) is not None and ".walloc." not in Path(path).name


def make_folder(folder):
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(
            f"{folder}: cannot create the folder: {e.strerror or e}"
        ) from None


def check_writable(folder):
    """Create ``folder`` if needed and make sure a file can be written in it.

    Raises :class:`CliError` now rather than after minutes of work.
    """
    make_folder(folder)
    try:
        _atomic.check_writable(folder)
    except OSError as e:
        raise CliError(f"{folder}: cannot write here: {e.strerror or e}") from None


def check_output_dir(outdir):
    """Refuse an ``-o`` that names a file, before any model is loaded (an
    argument error answers at once, not after torch's import)."""
    if outdir is not None and not Path(outdir).is_dir():
        from ._media import media_of

        if Path(outdir).suffix.lower() == ".wlc" or media_of(outdir) is not None:
            # cwebp's -o is a file: a user who writes -o out.wlc means one.
            raise CliError(
                f"-o {outdir}: -o names a folder for the outputs, which are named "
                "after their inputs (x.png -> x.png.wlc -> x.png.walloc.png); "
                "this looks like a file name"
            )


def outputs_for(files, outdir, name_of):
    """Each input's output: beside it, or in folder ``outdir`` (``-o``, already
    passed through :func:`check_output_dir` by the command)."""
    outs = {}
    for f in files:
        folder = Path(outdir) if outdir is not None else f.parent
        outs[f] = folder / name_of(f)
    seen = Counter(outs.values())
    dup = sorted(o for o, n in seen.items() if n > 1)
    if dup:
        raise CliError(f"two inputs would write the same output {dup[0]}")
    return outs


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def check_free(outs, force, inputs=()):
    """Refuse outputs that are inputs (always), or exist (without ``force``).

    No command writes over one of its own inputs, not even with ``force``: a
    lossy copy must never replace what it was made from.
    """
    for out in outs:
        for src in inputs:
            if _same_file(out, src):
                raise CliError(
                    f"{out}: is one of this command's inputs; refusing to write "
                    "over it, even with --force (choose another output with -o)"
                )
    taken = [o for o in outs if o.exists()]
    if taken and not force:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise CliError(f"{taken[0]}{more}: exists; refusing to overwrite (use --force)")


# ------------------------------------------------------------ argument types
def bounded(cast, noun, minimum, strict, maximum=None):
    """An argparse type: ``cast(text)``, at least (or above) ``minimum``."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
        if value < minimum or (strict and value == minimum):
            sign = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"must be {sign} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    return parse


positive_int = bounded(int, "an integer", 1, strict=False)
nonneg_int = bounded(int, "an integer", 0, strict=False)
positive_float = bounded(float, "a number", 0, strict=True)
quality = bounded(int, "an integer", 1, strict=False, maximum=100)
psnr_db = bounded(float, "a number", 0, strict=True, maximum=200)
