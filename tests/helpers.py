"""Synthetic images and datasets for tests: no network, no ../shared.

"Real" images are smooth random fields with sensor-like noise; "AI" images add a faint periodic
grid (the upsampling trace of many generators), so a tiny model can learn them in seconds.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AIVSREAL_SHARED", ROOT.parent / "shared"))
DEV = SHARED / "data" / "dev"
WEIGHTS = SHARED / "weights"


def make_image(kind: str, size: int = 96, seed: int = 0, w: int | None = None) -> Image.Image:
    rng = np.random.default_rng(seed)
    h, w = size, (w or size)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.zeros((h, w, 3))
    for c in range(3):
        a, b, ph = rng.uniform(1, 4, 3)
        base[..., c] = 0.5 + 0.3 * np.sin(a * 6 * xx + ph) * np.cos(b * 6 * yy + ph)
    base += rng.normal(0, 0.03, base.shape)
    if kind == "ai":
        grid = ((np.arange(w)[None, :] % 4 < 2) ^ (np.arange(h)[:, None] % 4 < 2)).astype(float)
        base += 0.25 * (grid[..., None] - 0.5)
        base += np.array([-0.12, 0.0, 0.15])  # and a colour cast, so even a tiny model learns it fast
    return Image.fromarray(np.clip(base * 255, 0, 255).astype(np.uint8), "RGB")


def save(img: Image.Image, path: Path, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    img.save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def make_dataset(
    root: Path,
    layout: str = "class_folders",
    n: int = 12,
    size: int = 96,
    same_format: bool = True,
    sources: tuple[str, ...] = ("src_a", "src_b"),
) -> Path:
    """Write a small labelled collection in one of the supported layouts; returns the path to load."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    k = 0
    for kind in ("real", "ai"):
        for i in range(n):
            src = sources[i % len(sources)]
            ext = ".png" if (same_format or kind == "ai") else ".jpg"
            img = make_image(kind, size, seed=1000 * (kind == "ai") + i)
            if layout == "class_folders":
                p = root / kind / src / f"{kind}_{i}{ext}"
            elif layout == "aliases":
                folder = {"real": "Human", "ai": "Synthetic"}[kind]
                p = root / folder / f"{i}{ext}"
            elif layout == "split_folders":
                split = ("train", "train", "train", "val", "test")[i % 5]
                p = root / split / ("0_real" if kind == "real" else "1_fake") / src / f"{i}{ext}"
            elif layout == "cifake":
                split = "test" if i % 4 == 0 else "train"
                p = root / split / kind.upper().replace("AI", "FAKE") / f"{i}{ext}"
            elif layout in ("kaggle_csv", "manifest"):
                p = root / "imgs" / f"img_{k}{ext}"
            else:
                raise ValueError(layout)
            save(img, p)
            rows.append((p, kind, src))
            k += 1
    if layout == "kaggle_csv":
        with open(root / "train.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", "file_name", "label"])
            for j, (p, kind, _) in enumerate(rows):
                w.writerow([j, p.relative_to(root).as_posix(), 1 if kind == "ai" else 0])
        return root / "train.csv"
    if layout == "manifest":
        with open(root / "manifest.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "source", "group"])
            for j, (p, kind, src) in enumerate(rows):
                w.writerow([p.relative_to(root).as_posix(), kind, src, f"g{j // 2}"])
        return root / "manifest.csv"
    return root


def shared_available() -> bool:
    return DEV.is_dir() and (DEV / "manifest.csv").is_file()


def load_script(name: str):
    """A module of ``scripts/`` loaded by path (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
