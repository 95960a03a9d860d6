"""Atomic-write helpers for the corpus builder (temp file in the same folder + rename).

Unlike :mod:`aivsreal.fsutil` they do not fsync: a build writes tens of thousands of patches, and a
rename is already all-or-nothing for a killed process (kill -9). A power cut is not covered: build
into a fresh folder after one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader (or a kill -9) never sees half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON (sorted keys, indented, newline-terminated) so equal objects give equal bytes."""
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any | None:
    """A JSON file's object, or None when it is missing or unreadable (a checkpoint to redo)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> None:
    """Atomic CSV with a header row and Unix line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_bytes(path, buf.getvalue().encode("utf-8"))
