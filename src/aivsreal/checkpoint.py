"""Checkpoints: safetensors weights + the JSON card beside them, written atomically. Never pickle."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .card import ModelCard, card_path_for
from .fsutil import atomic_write_many
from .models import DetectorNet, create


def half_precision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with float tensors rounded to float16 (how a half-stored checkpoint keeps them)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def save_checkpoint(
    model: torch.nn.Module, card: ModelCard, path: str | os.PathLike, half: bool = False
) -> Path:
    """Write weights then card (both atomic); the card records the weights' sha256. ``half`` stores float
    tensors as float16 (half the file; they load back into the float32 model)."""
    p = Path(path)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        sd = half_precision(sd)
    blob = save(sd, metadata={"format": "pt", "backbone": card.backbone})
    card.weights_file = p.name
    card.weights_sha256 = hashlib.sha256(blob).hexdigest()
    # weights and card are renamed into place together: a full disk never pairs new weights with an old card
    atomic_write_many({p: blob, card_path_for(p): (card.to_json() + "\n").encode("utf-8")})
    return p


def load_model(weights: str | os.PathLike, card: ModelCard) -> DetectorNet:
    """Rebuild the architecture named by the card and load the weights (eval mode)."""
    model = create(card.backbone, pretrained="none", head=card.head, stem=card.stem)
    try:
        sd = load_file(str(weights))
    except Exception as e:
        raise ValueError(f"{weights}: not a readable safetensors file: {e}") from None
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> tuple[DetectorNet, ModelCard, Path]:
    """A checkpoint file or run dir → (model, card, weights path); sha256 checked against the card."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    card = ModelCard.read(card_path_for(p))
    if verify:
        card.verify(p)
    return load_model(p, card), card, p
