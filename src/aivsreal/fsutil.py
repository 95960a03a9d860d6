"""File-system helpers every room shares: atomic writes (temp file + fsync + rename) and sha256.

Stdlib only. Readers of a file written here see either the old file or the whole new one; a full
disk or a permission error leaves the old files as they were and raises an ``OSError`` naming the path.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    A temp file in the same directory is written, fsynced and renamed over the target; on any error
    (disk full, permission) the temp file is removed and an OSError naming the path is raised.
    ``mode`` sets the new file's permission bits (default: 0666 less the umask).
    """
    return atomic_write_many({path: data}, mode=mode)[0]


def atomic_write_many(files: dict[str | os.PathLike, bytes], mode: int | None = None) -> list[Path]:
    """Write several files as one step: every temp file is written and fsynced before any rename.

    So a full disk or a permission error leaves all the old files as they were (a checkpoint never
    ends up with new weights next to an old card). Temp files are ``.NAME.*.tmp``; on error they are
    removed and an OSError naming the failing path (errno kept) is raised.
    """
    staged: list[tuple[str, Path]] = []
    current = Path(".")
    try:
        for path, data in files.items():
            current = p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=TEMP_SUFFIX, dir=p.parent)
            staged.append((tmp, p))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp makes 0600; give the file normal permissions (or those of the file it replaces)
            os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        for tmp, p in staged:
            current = p
            os.replace(tmp, p)
    except BaseException as e:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise OSError(e.errno, f"cannot write {current}: {e.strerror or e}") from None
        raise
    return [p for _, p in staged]


TEMP_SUFFIX = ".tmp"


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files an interrupted atomic write left behind (kill -9 between write and rename)."""
    removed = []
    for t in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        try:
            t.unlink()
            removed.append(t)
        except OSError:
            pass
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text written atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


class OutputPathError(OSError):
    """A user-named output path that cannot be written (a directory, under a file, no permission)."""


def check_output_path(path: str | os.PathLike) -> Path:
    """Where an output file named by the user will really be written, checked before any work is done.

    Symlinks are followed to their target (a link stays a link); an existing device, FIFO or socket is
    returned as is (written directly, never replaced); a directory, a path under a regular file, a symlink
    loop or a folder without write permission raise :class:`OutputPathError` naming ``path``.
    """
    p = Path(path)
    target = Path(os.path.realpath(p))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:  # ENOTDIR (under a file), ELOOP, EACCES on a parent
        raise OutputPathError(e.errno, f"cannot write {p}: {_why(e)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputPathError(errno.EISDIR, f"cannot write {p}: is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return target  # /dev/stdout, /dev/full, a FIFO: written in place
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(errno.ENOTDIR, f"cannot write {p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(errno.EACCES, f"cannot write {p}: no write permission in {parent}")
    return target


def write_output(path: str | os.PathLike, data: bytes) -> Path:
    """Write a user-named output file: atomically for a regular file (its permissions kept, a symlink's
    target replaced, not the link), directly for a device or FIFO. Raises OSError naming ``path``."""
    target = check_output_path(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(target, "wb") as f:
                f.write(data)
                f.flush()
        except OSError as e:
            raise OSError(e.errno, f"cannot write {path}: {_why(e)}") from None
        return target
    return atomic_write_bytes(target, data, mode=None if st is None else stat.S_IMODE(st.st_mode))


def _why(e: OSError) -> str:
    return e.strerror or str(e)
