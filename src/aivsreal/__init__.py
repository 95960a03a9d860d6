"""aivsreal: tell AI-generated images from real photographs.

``Detector.load(path).predict(x)`` scores images with ONNX Runtime (no torch needed);
``aivsreal <verb>`` is the command line (data, train, evaluate, export, predict, bench, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Detector", "Prediction", "PredictionError", "ModelCard", "__version__"]

if TYPE_CHECKING:
    from .card import ModelCard
    from .runtime import Detector, Prediction, PredictionError


def __getattr__(name: str) -> Any:  # lazy: `import aivsreal` stays light
    if name in ("Detector", "Prediction", "PredictionError"):
        from . import runtime

        return getattr(runtime, name)
    if name == "ModelCard":
        from .card import ModelCard

        return ModelCard
    raise AttributeError(name)
