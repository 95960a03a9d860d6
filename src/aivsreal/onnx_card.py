"""The model card inside an ONNX file: one metadata key, read and written here only.

Every ONNX file we write carries its card as the metadata entry ``aivsreal_card`` (JSON), so the file
alone is enough to score images; a sidecar ``NAME.onnx.card.json`` adds the file's sha256. The page,
the server, export, bench and the tests all go through these functions. ``onnx`` is optional: without
it the card is read through ONNX Runtime's model metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .card import CardError, ModelCard, card_path_for

CARD_KEY = "aivsreal_card"


class ModelLoadError(RuntimeError):
    """A model file is missing, unreadable, or fails its card's checks."""


def card_json_of(model: Any) -> str | None:
    """The card JSON stored in an ``onnx.ModelProto``'s metadata, or None."""
    for p in model.metadata_props:
        if p.key == CARD_KEY:
            return p.value
    return None


def set_card(model: Any, card: ModelCard | str) -> None:
    """Store ``card`` (a card or its JSON) in an ``onnx.ModelProto``, replacing any older one."""
    for p in list(model.metadata_props):
        if p.key == CARD_KEY:
            model.metadata_props.remove(p)
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card if isinstance(card, str) else card.to_json()


def read_onnx_card(path: Path) -> ModelCard:
    """The card stored in an ONNX file's metadata, else its sidecar JSON; ModelLoadError if neither."""
    side = card_path_for(path)
    try:
        import onnx

        text = card_json_of(onnx.load(str(path), load_external_data=False))
        if text is not None:
            return ModelCard.from_json(text)
    except ImportError:
        pass
    except CardError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{path}: cannot read ONNX file: {e}") from None
    if side.is_file():
        return ModelCard.read(side)
    import onnxruntime as ort

    try:
        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as e:
        raise ModelLoadError(f"{path}: not a loadable ONNX model: {e}") from None
    if CARD_KEY in meta.custom_metadata_map:
        return ModelCard.from_json(meta.custom_metadata_map[CARD_KEY])
    raise ModelLoadError(f"{path}: no aivsreal card in its metadata and no {side.name} beside it")
