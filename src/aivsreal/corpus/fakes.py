"""Aligned and synthetic fakes of real patches (the only part of the corpus engine that needs torch).

- ``aligned``: the real patch encoded and decoded by TAEF2 (tiny autoencoder of the FLUX.2 latent
  space; network built here from ``shared/weights/autoencoders/README.md``, weights from a local
  safetensors file, never downloaded). Same content, the decoder's traces. Only the patch region is
  reconstructed (not the whole original): the patch is what the detector sees, and it costs ~0.36 s per
  256² patch on 2 CPU cores instead of seconds per 12 MP photo. Near the patch edge the reconstruction
  sees zero padding instead of the neighbouring pixels; the traces are the decoder's either way.
- ``tconv`` / ``nnconv`` / ``pixelshuffle``: in the spirit of FingerprintNet (ECCV 2022): a decoder
  with *random* weights and one kind of generator up-sampling (transposed convolution, nearest + conv,
  pixel shuffle) turns a down-sampled copy of the patch into a fingerprint residual, added to a partly
  smoothed patch: ``y = (1-b)·x + b·up(down(x)) + s·r/std(r)``; depth, width, b and s are drawn per
  patch. No weights are downloaded.

Everything is seeded per (family, original sha256, patch index), computed in float32 on the CPU with a
fixed thread count, and written as PNG, so re-runs give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..imageio import to_rgb
from .patches import png_bytes

TAEF2_FILES = ("taef2_encoder.safetensors", "taef2_decoder.safetensors")


def _conv(i: int, o: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=bias)


class Block(nn.Module):
    """TAESD block: three 3×3 convs with ReLUs plus a skip; ``gn`` blocks first add a pooled branch."""

    def __init__(self, i: int, o: int, gn: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(i, o), nn.ReLU(), _conv(o, o), nn.ReLU(), _conv(o, o))
        self.skip = nn.Conv2d(i, o, 1, bias=False) if i != o else nn.Identity()
        self.pool = (
            nn.Sequential(
                nn.Conv2d(64, 256, 1, bias=False),
                nn.GroupNorm(4, 256),
                nn.ReLU(),
                nn.Conv2d(256, 64, 1, bias=False),
            )
            if gn
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return F.relu(self.conv(x) + self.skip(x))


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def taef2_encoder() -> nn.Sequential:
    """RGB in [0, 1] (N×3×H×W, H and W multiples of 8) → 32 latent channels at H/8."""
    return nn.Sequential(
        _conv(3, 64), Block(64, 64),
        _conv(64, 64, bias=False, stride=2), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, bias=False, stride=2), Block(64, 64), Block(64, 64), Block(64, 64),
        _conv(64, 64, bias=False, stride=2), Block(64, 64, True), Block(64, 64, True), Block(64, 64, True),
        _conv(64, 32),
    )  # fmt: skip


def taef2_decoder() -> nn.Sequential:
    """32 latent channels → RGB in about [0, 1] at 8× the size."""
    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    return nn.Sequential(
        Clamp(), _conv(32, 64), nn.ReLU(),
        Block(64, 64, True), Block(64, 64, True), Block(64, 64, True), up(), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), up(), _conv(64, 64, bias=False),
        Block(64, 64), Block(64, 64), Block(64, 64), up(), _conv(64, 64, bias=False),
        Block(64, 64), _conv(64, 3),
    )  # fmt: skip


def find_weights(weights_dir: str | None) -> Path:
    """The folder holding the TAEF2 safetensors files (argument, $AIVSREAL_AUTOENCODERS, shared/)."""
    cands = [weights_dir, os.environ.get("AIVSREAL_AUTOENCODERS")]
    if os.environ.get("AIVSREAL_WEIGHTS_DIR"):
        cands.append(os.path.join(os.environ["AIVSREAL_WEIGHTS_DIR"], "autoencoders"))
    cands += ["../shared/weights/autoencoders", "/work/shared/weights/autoencoders"]
    for c in cands:
        if c and all((Path(c) / f).is_file() for f in TAEF2_FILES):
            return Path(c)
    raise FileNotFoundError(f"TAEF2 weights ({', '.join(TAEF2_FILES)}) not found; pass --weights-dir")


class TAEF2(nn.Module):
    """The TAEF2 encoder/decoder pair loaded strictly from local safetensors files (float32, CPU)."""

    def __init__(self, folder: Path):
        super().__init__()
        from safetensors.torch import load_file

        self.encoder, self.decoder = taef2_encoder(), taef2_decoder()
        for net, f in zip((self.encoder, self.decoder), TAEF2_FILES):
            sd = {k: v.float() for k, v in load_file(str(folder / f), device="cpu").items()}
            net.load_state_dict(sd, strict=True)
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).clamp(0, 1)


class RandomDecoder(nn.Module):
    """A random-weight decoder with one generator up-sampling kind (FingerprintNet-style residual)."""

    def __init__(self, kind: str, depth: int, width: int, g: torch.Generator):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        for _ in range(depth):
            if kind == "tconv":
                layers.append(nn.ConvTranspose2d(width, width, 4, stride=2, padding=1))
            elif kind == "nnconv":
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1)]
            elif kind == "pixelshuffle":
                layers += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2)]
            else:
                raise ValueError(f"unknown synthetic family {kind!r}")
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            for m in self.net.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[0] * 16 // 4
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    if m.bias is not None:
                        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _seed(*parts: str) -> int:
    return int(hashlib.sha256(":".join(parts).encode()).hexdigest()[:15], 16)


class FakeMaker:
    """Makes one fake patch at a time; TAEF2 is loaded on first use."""

    def __init__(self, weights_dir: str | None = None, seed: int = 0, threads: int = 2):
        torch.set_num_threads(max(1, threads))
        self.weights_dir, self.seed = weights_dir, seed
        self._taef2: TAEF2 | None = None

    def taef2(self) -> TAEF2:
        if self._taef2 is None:
            self._taef2 = TAEF2(find_weights(self.weights_dir))
        return self._taef2

    @staticmethod
    def load(path: Path) -> torch.Tensor:
        """A patch file as a 1×3×H×W float tensor in [0, 1], cropped to multiples of 8 (top-left)."""
        with Image.open(path) as im:
            im.load()
            a = np.asarray(to_rgb(im), dtype=np.float32) / 255.0
        h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
        if h == 0 or w == 0:
            raise ValueError(f"{path}: patch smaller than 8 px")
        return torch.from_numpy(np.ascontiguousarray(a[:h, :w])).permute(2, 0, 1)[None]

    def make(self, family: str, patch: Path, ident: str) -> bytes:
        """PNG bytes of the ``family`` fake of one real patch (``ident`` seeds the random choices)."""
        x = self.load(patch)
        if family == "aligned":
            y = self.taef2()(x)
        else:
            g = torch.Generator().manual_seed(_seed(str(self.seed), family, ident))
            u = torch.rand(4, generator=g)
            depth = 1 + int(u[0] * 3)  # 1..3 up-sampling stages
            width = 16 + 16 * int(u[1] * 3)  # 16, 32, 48
            depth = min(depth, int(np.log2(min(x.shape[2], x.shape[3]) // 1)) - 1)
            f = 2**depth
            h, w = (x.shape[2] // f) * f, (x.shape[3] // f) * f
            x = x[:, :, :h, :w]
            low = F.avg_pool2d(x, f)
            r = RandomDecoder(family, depth, width, g)(low * 2 - 1)
            r = (r - r.mean(dim=(2, 3), keepdim=True)) / (r.std(dim=(2, 3), keepdim=True) + 1e-6)
            b = 0.5 * float(u[2])
            s = (1.5 + 3.0 * float(u[3])) / 255.0
            smooth = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
            y = ((1 - b) * x + b * smooth + s * r).clamp(0, 1)
        a = (y[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        return png_bytes(Image.fromarray(a, "RGB"))
