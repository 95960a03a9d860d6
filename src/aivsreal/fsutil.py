"""File-system helpers every room shares: atomic writes (temp file + fsync + rename) and sha256.

Stdlib only. Readers of a file written here see either the old file or the whole new one; a full
disk or a permission error leaves the old files as they were and raises an ``OSError`` naming the path.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    A temp file in the same directory is written, fsynced and renamed over the target; on any error
    (disk full, permission) the temp file is removed and an OSError naming the path is raised.
    """
    return atomic_write_many({path: data})[0]


def atomic_write_many(files: dict[str | os.PathLike, bytes]) -> list[Path]:
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
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
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
