"""Atomic output files (``_atomic``): complete or absent, with normal permissions."""

import errno
import os
import signal
import stat
import sys

import pytest

from sklearn_walloc._atomic import (
    OutputExists,
    Terminated,
    atomic_write,
    dump,
    sigterm_raises,
)

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")


@pytest.fixture
def umask():
    """Set the umask for one test, restore it afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@posix
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_final_file_respects_the_umask(tmp_path, umask, mask):
    umask(mask)
    out = tmp_path / "out.bin"
    atomic_write(out, lambda tmp: dump(b"data", tmp))
    assert out.read_bytes() == b"data"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    out2 = tmp_path / "out2.bin"
    atomic_write(out2, lambda tmp: dump(b"data", tmp), force=True)
    assert stat.S_IMODE(out2.stat().st_mode) == 0o666 & ~mask


def test_existing_file_is_kept_without_force(tmp_path):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(OutputExists, match="--force"):
        atomic_write(out, lambda tmp: dump(b"new", tmp))
    assert out.read_bytes() == b"old"
    atomic_write(out, lambda tmp: dump(b"new", tmp), force=True)
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        KeyboardInterrupt(),
        Terminated(),
    ],
)
def test_failed_write_leaves_nothing(tmp_path, exc):
    def write(tmp):
        dump(b"half", tmp)
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


@posix
def test_sigterm_raises_inside_the_block_only(tmp_path):
    before = signal.getsignal(signal.SIGTERM)

    def write(tmp):
        dump(b"half", tmp)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the handler runs before this line")

    with pytest.raises(Terminated), sigterm_raises():
        atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before
