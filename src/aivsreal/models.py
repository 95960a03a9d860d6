"""timm backbones with a one-logit head; ImageNet weights only from local files.

``create(name, pretrained=...)`` builds any timm model as a detector. Weights come from
``--pretrained PATH``, from ``$AIVSREAL_WEIGHTS_DIR/<name>.safetensors``, or not at all with
``pretrained="none"``: a missing file is an error, never a silent random init.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from .card import STEMS, Preprocess

HEADS = ("linear", "notebook")
WEIGHTS_ENV = "AIVSREAL_WEIGHTS_DIR"


class WeightsError(FileNotFoundError):
    """Pretrained weights were asked for but cannot be found or do not fit the model."""


class NPRStem(nn.Module):
    """Neighbouring-pixel residual (NPR, Tan et al., CVPR 2024): ``x − nearest_up(x[::2, ::2])``.

    Up-sampling layers of generators leave correlations between neighbouring pixels; this removes the
    content a 2× nearest up-sampling can explain and keeps the rest. Parameter-free, so it travels inside
    the ONNX graph and every door (Python, browser) applies it with no preprocessing change. ``gain``
    brings the residual (std ≈ 0.1 of normalised photos) to the scale the ImageNet stem expects."""

    def __init__(self, gain: float = 4.0, keep_rgb: bool = False):
        super().__init__()
        self.gain, self.keep_rgb = gain, keep_rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        up = nn.functional.interpolate(x[..., ::2, ::2], scale_factor=2.0, mode="nearest")
        r = (x - up[..., :h, :w]) * self.gain
        return torch.cat([x, r], dim=1) if self.keep_rgb else r


def stem_channels(stem: str) -> int:
    """Channels the backbone's first conv reads after ``stem`` (``rgb_npr``: RGB and its residual)."""
    return 6 if stem == "rgb_npr" else 3


class DetectorNet(nn.Module):
    """The torch module: backbone → pooled features → head → one logit (positive = AI-generated).

    Not to be confused with :class:`aivsreal.runtime.Detector`, which scores images with any backend.
    """

    def __init__(self, backbone: nn.Module, head: str = "linear", dropout: float = 0.2, stem: str = "none"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose from {STEMS}")
        self.stem = NPRStem(keep_rgb=stem == "rgb_npr") if stem in ("npr", "rgb_npr") else nn.Identity()
        self.backbone = backbone
        nf = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        if head == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(nf, 1))
        elif head == "notebook":  # the original Keras notebook: GAP → BN → Dense 512 ReLU → Dropout 0.5 → 1
            self.head = nn.Sequential(
                nn.BatchNorm1d(nf),
                nn.Linear(nf, 512),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(512, 1),
            )
        else:
            raise ValueError(f"unknown head {head!r}; choose from {HEADS}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.stem(x))).squeeze(-1)


def resolve_weights(name: str, pretrained: str | os.PathLike | None) -> Path | None:
    """Where the ImageNet weights for ``name`` are, or None for ``pretrained='none'``."""
    if pretrained is not None and str(pretrained).lower() == "none":
        return None
    if pretrained:
        p = Path(pretrained)
        if p.is_dir():
            p = p / f"{name}.safetensors"
        if not p.is_file():
            raise WeightsError(f"pretrained weights file {p} not found")
        return p
    d = os.environ.get(WEIGHTS_ENV)
    if d:
        p = Path(d) / f"{name}.safetensors"
        if p.is_file():
            return p
        hint = ""
        if not name.startswith("tf_") and (Path(d) / f"tf_{name}.safetensors").is_file():
            hint = f" (tf_{name}.safetensors is there: use --model tf_{name})"
        raise WeightsError(f"no {name}.safetensors in ${WEIGHTS_ENV}={d}{hint}")
    raise WeightsError(
        f"no ImageNet weights for {name}: pass --pretrained PATH, set ${WEIGHTS_ENV}, "
        "or train from scratch with --pretrained none"
    )


def local_architecture(name: str) -> bool:
    """Whether ``name`` is a plain timm architecture name (``mobilenetv3_small_100``, ``vit_b.tag``), never
    one that makes timm go to the network (``hf-hub:…``, ``timm/…``, URLs)."""
    return isinstance(name, str) and bool(name) and ":" not in name and "/" not in name and "\\" not in name


def create(
    name: str,
    *,
    pretrained: str | os.PathLike | None = None,
    head: str = "linear",
    dropout: float = 0.2,
    stem: str = "none",
) -> DetectorNet:
    """A timm backbone (``num_classes=0``, average pool) with a one-logit head and local weights."""
    if not local_architecture(name):  # timm fetches "hf-hub:org/name" configs from the network
        raise ValueError(f"backbone {name!r} is not a local timm architecture name (no hub or URL names)")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose from {STEMS}")
    chans = stem_channels(stem)
    try:
        backbone = timm.create_model(name, pretrained=False, num_classes=0, in_chans=chans)
    except RuntimeError as e:
        raise ValueError(f"unknown timm model {name!r}: {e}") from None
    path = resolve_weights(name, pretrained)
    if path is not None:
        sd = {
            k: v for k, v in load_file(str(path)).items() if not k.startswith(("classifier.", "fc.", "head."))
        }
        first = f"{backbone.pretrained_cfg.get('first_conv', 'conv_stem')}.weight"
        if chans != 3 and first in sd:  # RGB weights read the RGB half and, repeated, the residual half
            sd[first] = torch.cat([sd[first]] * (chans // 3), dim=1)
        missing, unexpected = backbone.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise WeightsError(
                f"{path} does not fit {name}: {len(missing)} missing, {len(unexpected)} unexpected keys "
                f"(e.g. {(missing or unexpected)[:3]})"
            )
    return DetectorNet(backbone, head=head, dropout=dropout, stem=stem)


def default_preprocess(name: str, policy: str = "native_crop", size: int | None = None) -> Preprocess:
    """The preprocessing numbers timm ships for this backbone, with our crop policy on top."""
    m = timm.create_model(name, pretrained=False, num_classes=0)
    cfg = timm.data.resolve_data_config({}, model=m)
    interp = cfg.get("interpolation", "bilinear")
    return Preprocess(
        size=int(size or cfg["input_size"][-1]),
        policy=policy,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear",
        crop_pct=float(cfg.get("crop_pct", 0.875)),
    )


def has_folded_batchnorm(model: nn.Module) -> bool:
    """True when BatchNorm layers carry folded statistics (mean 0, var ≈ 1 − eps), as the TF-ported
    MobileNetV3 weights do: training such BN in train mode wrecks the features (see weights README)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return False
    folded = sum(
        1
        for m in bns
        if m.running_mean is not None
        and float(m.running_mean.abs().max()) == 0.0
        and float((m.running_var - (1 - m.eps)).abs().max()) < 1e-6
    )
    return folded >= 0.9 * len(bns)


def backbone_units(model: DetectorNet) -> list[nn.Module]:
    """The backbone cut into ordered units (stem, each block, head conv) for gradual unfreezing."""
    bb = model.backbone
    units: list[nn.Module] = []
    blocks = getattr(bb, "blocks", None)
    if isinstance(blocks, nn.Sequential):
        stem = [m for n, m in bb.named_children() if n in ("conv_stem", "bn1")]
        units.append(nn.ModuleList(stem))
        for stage in blocks:
            units.extend(stage.children() if isinstance(stage, nn.Sequential) else [stage])
        tail = [m for n, m in bb.named_children() if n in ("conv_head", "bn2", "norm_head")]
        if tail:
            units[-1] = nn.ModuleList([units[-1], *tail])
    else:
        units = [m for m in bb.children() if any(p.numel() for p in m.parameters())]
    return units


def set_trainable(model: DetectorNet, unfreeze_last: int) -> int:
    """Freeze the backbone except its last ``unfreeze_last`` units (-1: all); the head always trains.

    Returns the number of trainable parameters.
    """
    for p in model.backbone.parameters():
        p.requires_grad = unfreeze_last < 0
    if unfreeze_last > 0:
        for unit in backbone_units(model)[-unfreeze_last:]:
            for p in unit.parameters():
                p.requires_grad = True
    for p in model.head.parameters():
        p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_batchnorm_eval(model: nn.Module) -> None:
    """Keep every backbone BatchNorm in eval mode (running stats fixed) during training."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            m.eval()
