"""Turn command-line inputs into a list of image paths, shared by the local and Ray engines."""

from __future__ import annotations

import glob
import os
import sys

from .imageio import is_image_path


def expand_inputs(paths: list[str], recursive: bool, skipped: list[str] | None = None) -> list[str]:
    """Files, folders (images inside; all levels with --recursive), globs, and '-' for stdin lists.

    Without ``recursive``, the sub-folders of a folder are not entered; they are appended to ``skipped``
    (when given) so the caller can say so.
    """
    out: list[str] = []
    for p in paths:
        if p == "-":
            # one name a line, kept exactly (leading and trailing spaces are part of a name); only the line
            # ending goes, and blank lines are skipped
            out.extend(name for line in sys.stdin if (name := line.rstrip("\r\n")))
            continue
        if os.path.isdir(p):
            if recursive:
                for dirpath, dirnames, files in os.walk(p, followlinks=False):
                    dirnames.sort()
                    out.extend(os.path.join(dirpath, f) for f in sorted(files) if is_image_path(f))
            else:
                for f in sorted(os.listdir(p)):
                    full = os.path.join(p, f)
                    if os.path.isdir(full):
                        if skipped is not None:
                            skipped.append(full)
                    elif is_image_path(f):
                        out.append(full)
            continue
        if any(c in p for c in "*?[") and not os.path.exists(p):
            out.extend(sorted(glob.glob(p, recursive=recursive)))
            continue
        out.append(p)
    return out
