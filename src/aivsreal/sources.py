"""Turn command-line inputs into a list of image paths, shared by the local and Ray engines."""

from __future__ import annotations

import glob
import os
import sys

from .imageio import is_image_path


def expand_inputs(paths: list[str], recursive: bool) -> list[str]:
    """Files, folders (images inside; all levels with --recursive), globs, and '-' for stdin lists."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.extend(line.strip() for line in sys.stdin if line.strip())
            continue
        if os.path.isdir(p):
            if recursive:
                for dirpath, dirnames, files in os.walk(p, followlinks=False):
                    dirnames.sort()
                    out.extend(os.path.join(dirpath, f) for f in sorted(files) if is_image_path(f))
            else:
                out.extend(
                    os.path.join(p, f)
                    for f in sorted(os.listdir(p))
                    if is_image_path(f) and not os.path.isdir(os.path.join(p, f))
                )
            continue
        if any(c in p for c in "*?[") and not os.path.exists(p):
            out.extend(sorted(glob.glob(p, recursive=recursive)))
            continue
        out.append(p)
    return out
