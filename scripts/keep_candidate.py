"""Keep a finished candidate in the repository: its best checkpoint with weights stored as float16.

A float32 MobileNetV3-Small checkpoint is 6.1 MB, over the repository's 5 MB limit for one file; float16
halves it and loads back into the float32 model. The card records the original's sha256 (the protocol
figures were measured on it) and the largest logit change the rounding makes on some training images.

  python scripts/keep_candidate.py runs/protocol-x/runs/full/train models/candidates/NAME
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from aivsreal.checkpoint import half_precision, load_checkpoint, save_checkpoint
from aivsreal.export import _sample_inputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run dir (model.safetensors + card)")
    ap.add_argument("out", help="folder to write model.safetensors, its card, config.yaml, versions.json")
    ap.add_argument("--check", type=int, default=32, help="images the float16 copy is compared on")
    a = ap.parse_args()
    net, card, weights = load_checkpoint(a.run)
    rounded = copy.deepcopy(net)
    rounded.load_state_dict(half_precision(net.state_dict()))  # what the float16 file will load back as
    x, _ = _sample_inputs(card, None, a.check)
    with torch.inference_mode():
        t = torch.from_numpy(x)
        delta = float(np.max(np.abs(rounded(t).numpy() - net(t).numpy())))
    card.extra["weights_storage"] = (
        "float16 (loaded into float32; the protocol figures were measured on the float32 original, "
        f"sha256 {card.weights_sha256}; max |Δlogit| {delta:.4f} on {len(x)} training images)"
    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, card, out / "model.safetensors", half=True)
    load_checkpoint(out)  # the copy loads and its sha256 matches its card
    for name in ("config.yaml", "versions.json"):
        if (weights.parent / name).is_file():
            shutil.copyfile(weights.parent / name, out / name)
    size = (out / "model.safetensors").stat().st_size
    print(f"{out}/model.safetensors: {size / 1e6:.1f} MB; max |Δlogit| {delta:.4f} on {len(x)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
