"""Atomic output files: complete or absent, never half-written or hidden.

An output is written to a temporary file in its destination folder and moved into
place only when complete. A failure (bad input, full disk, ``KeyboardInterrupt``,
or ``SIGTERM`` through :func:`sigterm_raises`) removes the temporary file. The
final file gets the permissions of any new file (``0o666`` less the umask), not
the private ``0o600`` of a temporary file.
"""

import contextlib
import os
import signal
import tempfile
from pathlib import Path

__all__ = [
    "OutputExists",
    "Terminated",
    "atomic_write",
    "check_writable",
    "dump",
    "sigterm_raises",
]


class OutputExists(FileExistsError):
    """The output exists and may not be replaced."""


class Terminated(BaseException):
    """Raised by the ``SIGTERM`` handler of :func:`sigterm_raises`.

    A ``BaseException`` (like ``KeyboardInterrupt``), so the per-file
    ``except Exception`` of the commands does not swallow it.
    """


def _on_sigterm(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, ``SIGTERM`` raises :class:`Terminated`.

    ``finally`` blocks then run, so temporary files are removed. Outside the main
    thread (where handlers cannot be set) or without ``SIGTERM`` this does nothing.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, AttributeError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred():
    """Hold ``SIGTERM``/``SIGINT`` back while a temporary file is created.

    Otherwise a signal between ``mkstemp`` and the assignment of its name would
    leave a file nobody knows to remove. Python runs the deferred handler right
    after the block.
    """
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    held = {signal.SIGTERM, signal.SIGINT}
    old = mask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


def _umask():
    # os.umask is the only portable way to read it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write, *, force=False):
    """Run ``write(tmp_path)``, then move the temporary file to ``path``.

    Parameters
    ----------
    path : path-like
        Final file; its folder must exist.
    write : callable
        Called with the temporary file's path (a ``str``); writes the content.
    force : bool, default=False
        Replace an existing ``path``. Without it an existing ``path`` is never
        replaced, even one that appeared while ``write`` ran.

    Raises
    ------
    OutputExists
        If ``path`` exists and ``force`` is False.
    OSError
        If the file cannot be written (the temporary file is removed).
    """
    path = Path(path)
    tmp = None
    try:
        with _signals_deferred():
            fd, tmp = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
            )
            os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if force:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if path exists
        except FileExistsError:
            raise OutputExists(f"{path} exists (use --force to overwrite)") from None
        except OSError:  # no hard links on this file system
            if path.exists():
                raise OutputExists(
                    f"{path} exists (use --force to overwrite)"
                ) from None
            os.replace(tmp, path)
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def dump(data, tmp):
    """Write the bytes ``data`` to the file ``tmp`` (a ``write`` for
    :func:`atomic_write`)."""
    with open(tmp, "wb") as f:
        f.write(data)


def check_writable(folder):
    """Create and remove a temporary file in ``folder``; ``OSError`` if refused.

    Tells a read-only folder before long work rather than after it (the
    permission bits alone do not: root writes anyway, ACLs and read-only
    mounts differ).
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".walloc-check.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
