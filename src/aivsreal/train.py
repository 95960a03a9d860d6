"""Two-phase transfer learning (head only, then the last N blocks), checkpoints, resume, DDP.

Phase 1 trains the head on a frozen backbone; phase 2 unfreezes the last ``unfreeze`` backbone
units at a lower learning rate. Each epoch's state is saved atomically, so ``--resume RUN_DIR``
continues after any interruption (kill -9 included) from the last completed epoch. Under
``torchrun`` (WORLD_SIZE > 1) it runs DistributedDataParallel with sharded sampling; rank 0 writes.
It trains on a GPU when one is visible (``device: auto``; one GPU per process, ``LOCAL_RANK``, NCCL),
otherwise on the CPU (gloo).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from . import __version__
from .augment import AugmentConfig, rng_for, train_view
from .card import ModelCard, Preprocess
from .checkpoint import save_checkpoint
from .data import REAL, Sample, load_dataset, summarize
from .fsutil import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from .imageio import DecodeError
from .metrics import binary_metrics, fit_temperature, sigmoid, threshold_for_fpr
from .models import STEMS, create, default_preprocess, has_folded_batchnorm, set_batchnorm_eval, set_trainable
from .preprocess import load, normalize, to_input

LR_SCHEDULES = ("constant", "cosine")
BALANCE_MODES = ("none", "source")
LR_FLOOR = 0.05  # cosine ends at 5 % of lr rather than 0, so its last epoch still trains


@dataclass
class TrainConfig:
    """Every training option; also what ``--config file.yaml`` may set."""

    data: str = ""
    out: str = "runs/exp"
    model: str = "tf_mobilenetv3_small_100"
    pretrained: str | None = None  # PATH, "none", or None → $AIVSREAL_WEIGHTS_DIR
    head: str = "linear"
    stem: str = "none"  # none | npr | rgb_npr: a residual stem inside the model (card.STEMS)
    pairs: bool = False  # a real patch and its twins (same group and box) share one batch and one view
    policy: str = "native_crop"
    size: int | None = None
    epochs_head: int = 1  # phase 1: backbone frozen
    epochs: int = 5  # phase 2: last `unfreeze` units trainable
    unfreeze: int = -1  # -1 = whole backbone
    lr_head: float = 1e-3
    lr: float = 3e-4
    lr_schedule: str = "constant"  # constant | cosine: phase 2's lr decays per epoch to LR_FLOOR × lr
    weight_decay: float = 1e-4
    batch_size: int = 32
    workers: int = 2
    seed: int = 0
    patience: int = 3
    select_on: str = "roc_auc"  # or "loss"
    bf16: bool = False
    device: str = "auto"  # auto (a GPU when one is visible) | cpu | cuda | cuda:N
    freeze_bn: str = "auto"  # auto | yes | no
    augment: dict[str, Any] = field(default_factory=dict)
    max_fpr: float | None = None  # choose the threshold for this FPR on validation reals
    uncertain_band: float = 0.1
    exclude_sources: list[str] = field(default_factory=list)  # leave-one-source-out
    limit: int = 0  # use at most this many training images (smoke tests)
    balance: str = "none"  # none | source: each class half the draws, its sources by sqrt of their size
    # (draws are without repeats, so the balance acts in proportion to how far epoch_size is below the set)
    epoch_size: int = 0  # training samples drawn per epoch (0 = every one once): bounds an epoch's cost
    val_frac: float = 0.15
    test_frac: float = 0.15

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        with open(path, encoding="utf-8") as f:
            try:
                d = yaml.safe_load(f) or {}  # safe loader: no Python object tags
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not a valid YAML config: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**d).validate()
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Refuse numbers no run can use (batch size 0 loops or crashes later); returns self."""
        ints = {
            "epochs_head": (0, None),
            "epochs": (0, None),
            "unfreeze": (-1, None),
            "batch_size": (1, None),
            "workers": (0, 256),
            "seed": (0, 2**32 - 1),
            "patience": (1, None),
            "limit": (0, None),
            "epoch_size": (0, None),
        }
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{name} must be an integer {bound}, got {v!r}")
        if self.size is not None and (
            isinstance(self.size, bool) or not isinstance(self.size, int) or not 16 <= self.size <= 4096
        ):
            raise ValueError(f"size must be an integer in [16, 4096], got {self.size!r}")
        floats = {
            "lr_head": (0.0, None),
            "lr": (0.0, None),
            "max_fpr": (0.0, 1.0),
            "val_frac": (0.0, 1.0),
            "test_frac": (0.0, 1.0),
        }
        for name, (lo, hi) in floats.items():
            v = getattr(self, name)
            if v is None and name == "max_fpr":
                continue
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v <= lo or (hi is not None and v >= hi):
                bound = f"> {lo:g}" if hi is None else f"in ({lo:g}, {hi:g})"
                raise ValueError(f"{name} must be a number {bound}, got {v!r}")
        for name, hi in (("weight_decay", 1.0), ("uncertain_band", 0.5)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < hi:
                raise ValueError(f"{name} must be a number in [0, {hi:g}), got {v!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {', '.join(BALANCE_MODES)}, got {self.balance!r}")
        if self.balance != "none" and not self.epoch_size:
            raise ValueError("balance acts through epoch_size (draws without repeats): set epoch_size > 0")
        if not isinstance(self.pairs, bool):
            raise ValueError(f"pairs must be true or false, got {self.pairs!r}")
        if self.val_frac + self.test_frac >= 1:
            raise ValueError(f"val_frac + test_frac must be < 1, got {self.val_frac + self.test_frac:g}")
        return self


class ImageDataset(Dataset):
    """Samples → (input, label, ok). Undecodable files yield ok=0 and are dropped by the collate.

    ``view_key[i]`` seeds sample i's random view: samples sharing a key (a real patch and its aligned
    twins) get the same crop box, flip, rescale, blur and JPEG quality, so only the generator's trace
    tells them apart."""

    def __init__(
        self,
        samples: list[Sample],
        pp: Preprocess,
        train: bool,
        aug: AugmentConfig,
        seed: int,
        view_key: list[int] | None = None,
    ):
        self.samples, self.pp, self.train, self.aug, self.seed = samples, pp, train, aug, seed
        self.view_key = view_key if view_key is not None else list(range(len(samples)))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            img = load(s.path, self.pp).image
            if self.train:
                rng = rng_for(self.seed, self.epoch, self.view_key[i])
                x = normalize(train_view(img, self.pp, self.aug, rng), self.pp)
            else:
                x = to_input(img, self.pp)
            return torch.from_numpy(x), float(s.label), 1
        except DecodeError:
            return torch.zeros(3, self.pp.size, self.pp.size), float(s.label), 0


def pair_units(samples: list[Sample]) -> list[list[int]]:
    """Indices grouped into units: a real patch with every AI patch of the same group and box (its aligned
    and synthetic twins, made from the same pixels), and every other sample alone. In corpus order."""
    by_key: dict[tuple[str, str], list[int]] = {}
    units: list[list[int]] = []
    for i, s in enumerate(samples):
        if not s.box:
            units.append([i])
            continue
        key = (s.group, s.box)
        if key not in by_key:
            by_key[key] = []
            units.append(by_key[key])
        by_key[key].append(i)
    out: list[list[int]] = []
    for u in units:  # a key with one class only (no real, or no twin) is not a pair: its members stand alone
        if len(u) > 1 and len({samples[i].label for i in u}) == 2:
            out.append(sorted(u, key=lambda i: samples[i].label))  # the real first: it seeds the shared view
        else:
            out.extend([i] for i in u)
    return out


def unit_weights(samples: list[Sample], units: list[list[int]], balance: str) -> np.ndarray | None:
    """Each unit's chance to be drawn (sums to 1), or None for a uniform pass over all units.

    ``source``: each class gets half of the mass and splits it across its sources in proportion to the
    square root of their sizes, so a source of 3,000 patches no longer drowns one of 30 (a compromise
    between its size and none: a tiny source is not repeated without end). Twins (the AI members of pair
    units) keep their natural share of the AI side: how many pairs a batch holds is the ``pairs`` option's
    business, not the balance's. A unit weighs what its members do.
    """
    if balance == "none":
        return None
    twins = {i for u in units if len(u) > 1 for i in u if samples[i].label != REAL}
    key = [("twin",) if i in twins else (s.label, s.source) for i, s in enumerate(samples)]
    n_key = Counter(key)
    n_label = Counter(s.label for s in samples)
    roots: Counter = Counter()
    for k, n in n_key.items():
        if k != ("twin",):
            roots[k[0]] += math.sqrt(n)
    twin_share = {lab: (len(twins) / n if lab != REAL else 0.0) for lab, n in n_label.items()}

    def share(k: tuple, label: int) -> float:
        if k == ("twin",):
            return twin_share[label]
        return (1 - twin_share[label]) * math.sqrt(n_key[k]) / roots[label]

    w_sample = [0.5 * share(k, s.label) / n_key[k] for k, s in zip(key, samples)]
    w = np.array([sum(w_sample[i] for i in u) for u in units], dtype=np.float64)
    return w / w.sum()


class UnitBatchSampler:
    """Batches of about ``batch_size`` samples built from whole units (pairs never split across batches),
    units shuffled per epoch by a seeded generator; under DDP each rank takes every world-th unit.

    With ``weights`` and/or ``epoch_size`` each epoch draws about ``epoch_size`` samples' worth of units
    (without repeats, by weight), again seeded by the epoch, so a resumed run draws the same ones."""

    def __init__(
        self,
        units: list[list[int]],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        weights: np.ndarray | None = None,
        epoch_size: int = 0,
    ):
        self.units, self.batch_size, self.seed, self.rank, self.world = units, batch_size, seed, rank, world
        self.weights = weights
        mean_unit = sum(len(u) for u in units) / max(len(units), 1)
        n = round(epoch_size / mean_unit) if epoch_size else len(units)
        self.draws = max(1, min(n, len(units), int(np.count_nonzero(weights)) if weights is not None else n))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_units(self) -> np.ndarray:
        """Indices of the units this epoch visits, in the order it visits them."""
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.weights is None and self.draws == len(self.units):
            return rng.permutation(len(self.units))
        return rng.choice(len(self.units), size=self.draws, replace=False, p=self.weights)

    def _batches(self) -> list[list[int]]:
        batches, cur = [], []
        for k in self.epoch_units()[self.rank :: self.world]:
            cur.extend(self.units[int(k)])
            if len(cur) >= self.batch_size:
                batches.append(cur)
                cur = []
        if cur:
            batches.append(cur)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def collate(batch):
    xs, ys, ok = zip(*batch)
    keep = [i for i, k in enumerate(ok) if k]
    if not keep:
        return None
    return torch.stack([xs[i] for i in keep]), torch.tensor([ys[i] for i in keep], dtype=torch.float32)


# ---- device and distributed helpers ----------------------------------------------------------------
def resolve_device(spec: str, cuda_devices: int, local_rank: int = 0) -> str:
    """The torch device for ``spec`` (auto | cpu | cuda | cuda:N) given how many GPUs are visible.

    Under torchrun each process takes GPU ``LOCAL_RANK``; asking for a GPU that is not there is an error,
    never a silent fall-back to a CPU run that would take days."""
    spec = (spec or "auto").strip().lower()
    if spec == "cpu":
        return "cpu"
    if spec == "auto" and not cuda_devices:
        return "cpu"
    if spec == "auto" and local_rank >= cuda_devices:  # NCCL cannot put two ranks on one GPU
        raise ValueError(
            f"process LOCAL_RANK {local_rank} has no GPU of its own ({cuda_devices} visible): start one "
            "process per GPU (torchrun --nproc_per_node N) or use --device cpu"
        )
    if spec == "auto":
        return f"cuda:{local_rank}"
    if spec == "cuda" or spec.startswith("cuda:"):
        idx = local_rank if spec == "cuda" else spec.partition(":")[2]
        if not str(idx).isdigit():
            raise ValueError(f"device {spec!r}: expected cuda:N with N a GPU index")
        if int(idx) >= cuda_devices:
            seen = f"{cuda_devices} GPU(s) visible" if cuda_devices else "no GPU visible to torch"
            raise ValueError(f"device {spec!r} requested, but {seen} (use --device cpu or auto)")
        return f"cuda:{idx}"
    raise ValueError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")


def _dist_init(device: str) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))  # collectives and object broadcasts use this GPU
        # gloo for CPU tensors (object broadcasts, CPU runs); NCCL for gradients on GPUs
        backend = "cpu:gloo,cuda:nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def _versions() -> dict[str, str]:
    import timm

    return {
        "aivsreal": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda or "",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
    }


# ---- the loop --------------------------------------------------------------------------------------
def evaluate_logits(
    model: nn.Module, loader: DataLoader, bf16: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    device = next(model.parameters()).device
    ys, zs = [], []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for b in loader:
            if b is None:
                continue
            x, y = b
            zs.append(model(x.to(device, non_blocking=True)).float().cpu().numpy())
            ys.append(y.numpy())
    if not zs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(ys), np.concatenate(zs).astype(np.float64)


STATE_KEY = "aivsreal_resume_state"


def _state_save(
    run: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
) -> None:
    """Save what resume needs as ONE atomic unit: ``last.safetensors`` holds the weights, the optimizer
    tensors and, in its metadata, the JSON state and history. One rename commits all of it, so a kill at
    any moment leaves either the previous epoch's unit or this one, never weights of one epoch with the
    state of another. ``state.json`` is then written as a readable copy (never read back by resume)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().contiguous().cpu().reshape(v.shape)
    state = dict(
        state, opt_param_groups=[{k: v for k, v in g.items() if k != "params"} for g in osd["param_groups"]]
    )
    unit = dict(state, history=list(history or []))
    atomic_write_bytes(run / "last.safetensors", save(tensors, metadata={STATE_KEY: json.dumps(unit)}))
    atomic_write_text(run / "state.json", json.dumps(state, indent=2))


def _resume_point(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The (state, history) committed with ``last.safetensors``; runs written before the unit existed
    fall back to ``state.json`` and ``history.csv``. None when the run has no checkpoint yet."""
    last = run / "last.safetensors"
    if last.is_file():
        from safetensors import safe_open

        with safe_open(str(last), framework="pt") as f:
            meta = f.metadata() or {}
        if STATE_KEY in meta:
            unit = json.loads(meta[STATE_KEY])
            return unit, unit.pop("history")
    if (run / "state.json").is_file():
        return json.loads((run / "state.json").read_text()), _read_history(run)
    return None


def _state_load(run: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    t = load_file(str(run / "last.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    if state.get("phase") != _phase_of(state["epoch"], state["epochs_head"]):
        return  # the next epoch starts the other phase: its optimizer (other params) starts fresh
    osd = opt.state_dict()
    new_state: dict[int, dict[str, Any]] = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            new_state.setdefault(int(pid), {})[name] = v
    osd["state"] = new_state
    for g, saved in zip(osd["param_groups"], state.get("opt_param_groups", [])):
        g.update({k: v for k, v in saved.items() if k in g})
    opt.load_state_dict(osd)


def phase_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based, over both phases): phase 1 ``lr_head``; phase 2 ``lr``, or
    with ``cosine`` a half cosine from ``lr`` at its first epoch to ``LR_FLOOR × lr`` at its last. A pure
    function of the epoch, so a resumed run sets the same rate as an uninterrupted one."""
    if epoch < cfg.epochs_head:
        return cfg.lr_head
    if cfg.lr_schedule == "constant" or cfg.epochs <= 1:
        return cfg.lr
    t = (epoch - cfg.epochs_head) / (cfg.epochs - 1)
    return cfg.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))


def _phase_of(epoch: int, epochs_head: int) -> int:
    return 1 if epoch < epochs_head else 2


def _make_optimizer(model: nn.Module, cfg: TrainConfig, phase: int) -> torch.optim.Optimizer:
    set_trainable(model, 0 if phase == 1 else cfg.unfreeze)
    params = [p for p in model.parameters() if p.requires_grad]
    lr = cfg.lr_head if phase == 1 else cfg.lr
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns the path of the best checkpoint."""
    cfg.validate()
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = torch.device(resolve_device(cfg.device, cuda_devices, int(os.environ.get("LOCAL_RANK", "0"))))
    rank, world = _dist_init(str(device))
    run = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    total_epochs = cfg.epochs_head + cfg.epochs
    state: dict[str, Any] = {"epoch": 0, "epochs_head": cfg.epochs_head, "best": None, "bad_epochs": 0}
    committed: list[dict[str, Any]] = []
    point = _resume_point(run) if resume else None
    if point is not None:
        state, committed = point
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        _check_writable(run)
        remove_stale_temp_files(run)  # left by a kill -9 between an atomic write and its rename

    ds = load_dataset(cfg.data, seed=cfg.seed, val_frac=cfg.val_frac, test_frac=cfg.test_frac)
    if cfg.exclude_sources:
        ex = set(cfg.exclude_sources)
        ds.samples = [s for s in ds.samples if not (s.source in ex and s.split in ("train", "val"))]
    train_s, val_s = ds.split("train"), ds.split("val")
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        train_s = [train_s[i] for i in sorted(rng.permutation(len(train_s))[: cfg.limit])]
        val_s = [val_s[i] for i in sorted(rng.permutation(len(val_s))[: max(cfg.limit // 4, 8)])]
    if not train_s or not val_s:
        raise ValueError(
            f"{cfg.data}: need training and validation images (got {len(train_s)}, {len(val_s)})"
        )

    pp = default_preprocess(cfg.model, policy=cfg.policy, size=cfg.size)
    model = create(cfg.model, pretrained=cfg.pretrained, head=cfg.head, stem=cfg.stem).to(device)
    freeze_bn = cfg.freeze_bn == "yes" or (cfg.freeze_bn == "auto" and has_folded_batchnorm(model.backbone))
    if rank == 0 and (not resume or point is None):  # also when a kill came before the first unit
        atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        atomic_write_text(run / "versions.json", json.dumps(_versions(), indent=2))
        atomic_write_text(run / "data_summary.json", summarize(ds).to_json())

    aug = AugmentConfig(**cfg.augment)
    units = pair_units(train_s) if cfg.pairs else None
    if units is None and (cfg.balance != "none" or cfg.epoch_size):
        units = [[i] for i in range(len(train_s))]
    view_key = None
    if units is not None:
        view_key = list(range(len(train_s)))
        for u in units:
            for i in u:
                view_key[i] = u[0]
    train_set = ImageDataset(train_s, pp, True, aug, cfg.seed, view_key)
    val_set = ImageDataset(val_s, pp, False, aug, cfg.seed)
    batches = None
    if units is not None:
        weights = unit_weights(train_s, units, cfg.balance)
        batches = UnitBatchSampler(units, cfg.batch_size, cfg.seed, rank, world, weights, cfg.epoch_size)
    sampler = None
    if world > 1 and batches is None:
        sampler = DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed)
    loader_kw: dict[str, Any] = dict(batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.workers)
    if cfg.workers > 0:
        loader_kw["persistent_workers"] = False
    if device.type == "cuda":
        loader_kw["pin_memory"] = True
    val_loader = DataLoader(val_set, shuffle=False, **loader_kw)

    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    start = int(state["epoch"])
    phase = _phase_of(start, cfg.epochs_head)
    opt = _make_optimizer(model, cfg, phase)
    if start > 0:
        _state_load(run, model, opt, state)
    history = committed[:start]
    loss_fn = nn.BCEWithLogitsLoss()

    for epoch in range(start, total_epochs):
        if state.get("stopped"):
            break
        if _phase_of(epoch, cfg.epochs_head) != phase:
            phase = 2
            opt = _make_optimizer(model, cfg, phase)
        for g in opt.param_groups:  # after a resume too: the rate is the epoch's, not the saved one
            g["lr"] = phase_lr(cfg, epoch)
        train_set.epoch = epoch
        torch.manual_seed(cfg.seed * 1000 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        if batches is not None:
            batches.set_epoch(epoch)
            kw = {k: v for k, v in loader_kw.items() if k != "batch_size"}
            loader = DataLoader(train_set, batch_sampler=batches, **kw)
        else:
            loader = DataLoader(
                train_set,
                shuffle=sampler is None,
                sampler=sampler,
                generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
                **loader_kw,
            )
        ddp_model.train()
        if freeze_bn or phase == 1:
            set_batchnorm_eval(model.backbone)
        t0 = time.time()
        losses, ys, zs = [], [], []
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{total_epochs} (phase {phase})", disable=not progress or rank
        )
        for b in bar:
            if b is None:
                continue
            x, y = b
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                z = ddp_model(x)
            loss = loss_fn(z.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss))
            ys.append(y.cpu().numpy())
            zs.append(z.detach().float().cpu().numpy())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        epoch_time = time.time() - t0
        ytr, ztr = np.concatenate(ys), np.concatenate(zs)
        yv, zv = evaluate_logits(model, val_loader, cfg.bf16)
        mt, mv = binary_metrics(ytr, sigmoid(ztr)), binary_metrics(yv, sigmoid(zv))
        val_loss = float(np.mean(np.logaddexp(0, zv) - yv * zv)) if len(zv) else float("nan")
        row = {
            "epoch": epoch + 1,
            "phase": phase,
            "train_loss": float(np.mean(losses)),
            "train_accuracy": mt["accuracy"],
            "train_roc_auc": mt["roc_auc"],
            "val_loss": val_loss,
            "val_accuracy": mv["accuracy"],
            "val_roc_auc": mv["roc_auc"],
            "val_balanced_accuracy": mv["balanced_accuracy"],
            "seconds": round(epoch_time, 2),
            "lr": phase_lr(cfg, epoch),
            "train_samples": len(ytr),  # what this epoch drew (epoch_size), per process under DDP
        }
        history.append(row)
        if rank == 0:
            key = -val_loss if cfg.select_on == "loss" else mv["roc_auc"]
            key = -math.inf if key is None or (isinstance(key, float) and math.isnan(key)) else key
            improved = state["best"] is None or key > state["best"]
            if improved:
                state["best"], state["bad_epochs"] = key, 0
                card = _make_card(cfg, pp, yv, zv, row)
                save_checkpoint(model, card, run / "model.safetensors")
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            state["phase"] = phase
            if phase == 2 and state["bad_epochs"] >= cfg.patience:
                state["stopped"] = f"early stop after epoch {epoch + 1}"
            _write_history(run, history)
            _state_save(run, model, opt, state, history)
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} · val loss {val_loss:.4f} · "
                    f"val AUC {mv['roc_auc']:.4f} · val bal.acc {mv['balanced_accuracy']:.4f} · {epoch_time:.1f}s"
                )
        if world > 1:
            obj = [state]
            torch.distributed.broadcast_object_list(obj, src=0)
            state = obj[0]
    if world > 1:
        torch.distributed.barrier()
        if owns_group:  # started here: end it cleanly (torchrun warns about groups left open)
            torch.distributed.destroy_process_group()
    return run / "model.safetensors"


def _make_card(cfg: TrainConfig, pp: Preprocess, yv: np.ndarray, zv: np.ndarray, row: dict) -> ModelCard:
    """Card for the current best weights: temperature and threshold fitted on validation."""
    t = fit_temperature(yv, zv)
    p = sigmoid(zv / t)
    thr = threshold_for_fpr(yv, p, cfg.max_fpr) if cfg.max_fpr is not None else 0.5
    thr = float(min(max(thr, 0.01), 0.99))
    return ModelCard(
        backbone=cfg.model,
        preprocess=pp,
        head=cfg.head,
        stem=cfg.stem,
        threshold=thr,
        uncertain_band=cfg.uncertain_band,
        temperature=t,
        model_id=f"aivsreal-{cfg.model}-{Path(cfg.out).name}",
        training={
            "data": str(cfg.data),
            "config": cfg.to_dict(),
            "epoch": row["epoch"],
            "pretrained": str(cfg.pretrained or f"${os.environ.get('AIVSREAL_WEIGHTS_DIR', '')}"),
        },
        metrics={
            "val": binary_metrics(yv, p, thr),
            "val_uncalibrated_ece": binary_metrics(yv, sigmoid(zv))["ece"],
        },
    )


HISTORY_FIELDS = [
    "epoch",
    "phase",
    "train_loss",
    "train_accuracy",
    "train_roc_auc",
    "val_loss",
    "val_accuracy",
    "val_roc_auc",
    "val_balanced_accuracy",
    "seconds",
    "lr",
    "train_samples",
]


def _write_history(run: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / "history.csv", buf.getvalue())
    _plot_history(run, history)
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: only when tensorboard is installed
    except Exception:
        return
    with SummaryWriter(str(run / "tb")) as tb:
        r = history[-1]
        for k, v in r.items():
            if k not in ("epoch", "phase"):
                tb.add_scalar(k, v, r["epoch"])


def _read_history(run: Path) -> list[dict[str, Any]]:
    p = run / "history.csv"
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return [
            {k: (float(v) if k not in ("epoch", "phase") else int(v)) for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def _plot_history(run: Path, history: list[dict[str, Any]]) -> None:
    """training_history.png: loss, accuracy and ROC-AUC for train and validation, as the notebook did."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("loss", "accuracy", "roc_auc"), ("loss", "accuracy", "ROC-AUC")):
        ax.plot(ep, [r[f"train_{key}"] for r in history], "o-", label="train")
        ax.plot(ep, [r[f"val_{key}"] for r in history], "o-", label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(run / "training_history.png", buf.getvalue())


def _check_writable(run: Path) -> None:
    """Fail early with a clear message when the run dir cannot be written (permissions, disk full)."""
    probe = run / ".write-test"
    try:
        atomic_write_bytes(probe, b"ok")
        probe.unlink()
    except OSError as e:
        raise OSError(e.errno, f"cannot write to run directory {run}: {e.strerror or e}") from None
