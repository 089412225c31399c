"""Atomic writes, whole-line appends and content hashes: light on purpose (no imaging imports),
since the task graph uses them when it loads."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_umask() -> int:
    """The process's umask, read without changing it (os.umask sets it: a race under threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # at import, before any worker thread exists
    os.umask(mask)
    return mask


# mkstemp creates files 0600; a finished file gets what the umask gives any new file (a shared
# report, a web server reading output/ must be able to read it).
FILE_MODE = 0o666 & ~_read_umask()


def _with_path(exc: OSError, path: Path) -> OSError:
    """`exc` naming `path` (a write() on a full disk names no file: the message would say « ? »)."""
    if exc.filename:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _with_path(exc, path.parent) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _with_path(exc, path) from None
        raise


def append_line(path: Path | str, line: bytes) -> None:
    """Append one whole line to `path`, under an exclusive flock (threads and processes alike).

    A partial last line (a crash in the middle of a write) is closed with a newline first, so it
    never swallows the line written after it. One `write()` per line, on an `O_APPEND` descriptor.
    """
    path = Path(path)
    if not line.endswith(b"\n"):
        line += b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise _with_path(exc, path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):  # a regular file writes whole lines, unless the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    except OSError as exc:
        raise _with_path(exc, path) from None
    finally:
        os.close(fd)  # releases the flock


PROBE_BYTES = 256 * 1024


def probe_writable(folder: Path) -> None:
    """Raise the OSError (naming the folder) that writing a file of PROBE_BYTES in `folder` meets:
    read-only file system, permission denied, disk full, quota."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _with_path(exc, folder) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise _with_path(exc, folder) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
