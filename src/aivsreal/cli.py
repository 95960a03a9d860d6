"""``aivsreal <verb>``: parse, call, print. Heavy modules are imported inside each verb.

Exit status (documented in the README): 0 all inputs processed; 1 some inputs could not be
processed (each reported with a reason); 2 usage error, or the model/data could not be loaded.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from .geometry import POLICIES

# Plain Click help: no rich markup (it ate "[scale]"), no <bool>/<list[str]> type labels (see _tidy_help).
app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Tell AI-generated images from real photographs.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Inspect labelled image collections."
)
app.add_typer(data_app, name="data")
from .protocol.cli import app as protocol_app  # noqa: E402  (typer only; the work is imported lazily)

app.add_typer(protocol_app, name="protocol")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"aivsreal {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Tell AI-generated images from real photographs."""


def _shipped_threshold() -> str:
    """The shipped model's threshold, rounded as tables show it (read from its small sidecar card)."""
    try:
        card = Path(__file__).parent / "models_dist" / "default.onnx.card.json"
        return f"{float(json.loads(card.read_text())['threshold']):.2f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "see its card"


SHIPPED_THRESHOLD = _shipped_threshold()

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
SEED_MAX = 2**32 - 1  # numpy's seed range


def _float_check(
    lo: float | None, hi: float | None, what: str
) -> Callable[[Optional[float]], Optional[float]]:
    """A Typer callback refusing NaN/inf and values outside the open interval (lo, hi): exit 2."""

    def check(value: Optional[float]) -> Optional[float]:
        if value is None:
            return value
        if not math.isfinite(value) or (lo is not None and value <= lo) or (hi is not None and value >= hi):
            raise typer.BadParameter(f"{value:g} is not {what}")
        return value

    return check


_unit_open = _float_check(0.0, 1.0, "in (0, 1)")
_positive = _float_check(0.0, None, "a finite number > 0")


def fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"aivsreal: error: {message}", err=True)
    raise typer.Exit(code)


Policy = Enum("Policy", {k: k for k in POLICIES}, type=str)  # CLI choices from the one POLICIES table


class Tier(str, Enum):
    clean = "clean"
    web = "web"
    hard = "hard"


# ---- data ---------------------------------------------------------------------------------------
@data_app.command("summary")
def data_summary(
    path: Path = typer.Argument(..., metavar="DATA", help="Folder tree, Kaggle CSV or manifest CSV."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the split drawn when the data has none."),
) -> None:
    """Counts per class/split/source, formats, sizes, undecodable files, duplicates, shortcut warnings."""
    from .data import DataError, format_summary, load_dataset, summarize

    try:
        sm = summarize(load_dataset(path, seed=seed))
    except DataError as e:
        fail(str(e))
    typer.echo(sm.to_json() if json_out else format_summary(sm))


@data_app.command("build")
def data_build(
    catalog: Path = typer.Argument(..., help="Catalog YAML (e.g. catalog/sources.yaml)."),
    mirrors: str = typer.Option(
        "/work/.mirror", help="Folder of GitHub snapshots (bare git dirs, owner+name/)."
    ),
    out: str = typer.Option("~/.cache/aivsreal/corpus", help="Corpus folder (patches, manifest, report)."),
    downloads: str = typer.Option("~/.cache/aivsreal/downloads", help="Cache of Debian/PyPI downloads."),
    reserved: Optional[str] = typer.Option(
        None, help="Folder with the reserved lists (default: $AIVSREAL_RESERVED_DIR or ../shared/data)."
    ),
    no_reserved: bool = typer.Option(
        False, "--no-reserved", help="Build without reserved lists (not for training)."
    ),
    fakes: bool = typer.Option(True, "--fakes/--no-fakes", help="Make aligned (TAEF2) and synthetic fakes."),
    aligned_per_original: Optional[int] = typer.Option(None, help="TAEF2 fakes per real original (cap)."),
    synthetic_per_original: Optional[int] = typer.Option(
        None, help="Synthetic fakes per family per real original."
    ),
    fake_seconds: Optional[float] = typer.Option(
        None, help="Stop making fakes after this long (report: partial)."
    ),
    fakes_until: Optional[str] = typer.Option(
        None, help="Stop making fakes at this UTC time (HH:MM, today)."
    ),
    weights_dir: Optional[str] = typer.Option(None, help="Folder with taef2_{encoder,decoder}.safetensors."),
    source: Optional[list[str]] = typer.Option(None, help="Build only this source (repeatable)."),
    no_shortcut: bool = typer.Option(False, "--no-shortcut-check", help="Skip the data-summary pass."),
    fakes_only: bool = typer.Option(
        False, "--fakes-only", help="Only make fakes of patches already cut (beside a running build)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Build a patch corpus from a catalog (resumable, idempotent); writes manifest.csv and report.json."""
    from .corpus.builder import Builder, BuildOptions
    from .corpus.catalog import CatalogError, load_catalog

    try:
        cat = load_catalog(catalog)
    except CatalogError as e:
        fail(str(e))
    if reserved is None and not no_reserved:
        cands = [
            os.environ.get("AIVSREAL_RESERVED_DIR"),
            str(cat.base_dir() / ".." / ".." / "shared" / "data"),
        ]
        cands.append(os.path.join("..", "shared", "data"))
        reserved = next(
            (c for c in cands if c and os.path.isfile(os.path.join(c, "reserved_sha256.txt"))), None
        )
        if reserved is None:
            fail("no reserved lists found: pass --reserved DIR (or --no-reserved for a throw-away build)")
    deadline = None
    if fakes_until:
        import datetime as dt

        try:
            hh, mm = (int(x) for x in fakes_until.split(":"))
            now = dt.datetime.now(dt.timezone.utc)
            deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        except ValueError:
            fail(f"--fakes-until {fakes_until!r}: expected HH:MM (UTC)")
    opts = BuildOptions(
        mirrors=mirrors,
        out=out,
        downloads=downloads,
        reserved_dir=None if no_reserved else reserved,
        fakes=fakes,
        aligned_per_original=aligned_per_original,
        synthetic_per_original=synthetic_per_original,
        fake_seconds=fake_seconds,
        fake_deadline=deadline,
        weights_dir=weights_dir,
        progress=not quiet,
        sources=source or None,
    )
    if fakes_only:
        pending = Builder(cat, opts).run_fakes_only()
        typer.echo(json.dumps({"fakes_not_made": pending}))
        return
    try:
        report = Builder(cat, opts).run(shortcut_check=not no_shortcut)
    except (OSError, ValueError) as e:
        fail(str(e))
    keys = ("ai_originals", "real_originals", "ai_sources", "real_sources", "ai_generators", "gan_generators")
    keys += ("camera_originals", "camera_models", "patches")
    typer.echo(
        json.dumps(
            {k: report[k] for k in keys} | {"partial": report["partial"], "out": os.path.expanduser(out)}
        )
    )


# ---- train ---------------------------------------------------------------------------------------
@app.command()
def train(
    data: Optional[str] = typer.Option(None, help="Labelled collection (folder or CSV)."),
    out: Optional[str] = typer.Option(None, help="Run directory for checkpoints, logs and plots."),
    config: Optional[Path] = typer.Option(None, help="YAML file of options; flags given here override it."),
    model: Optional[str] = typer.Option(None, help="timm model name, e.g. tf_mobilenetv3_small_100."),
    pretrained: Optional[str] = typer.Option(
        None, help="ImageNet weights file or dir; 'none' for random init. Default: $AIVSREAL_WEIGHTS_DIR."
    ),
    head: Optional[str] = typer.Option(None, help="'linear' or 'notebook' (GAP→BN→Dense512→Dropout→1)."),
    policy: Optional[Policy] = typer.Option(
        None, help="Preprocessing policy: " + "; ".join(f"{k}: {v}" for k, v in POLICIES.items())
    ),
    size: Optional[int] = typer.Option(None, min=16, max=4096, help="Input size (default: the backbone's)."),
    epochs_head: Optional[int] = typer.Option(None, min=0, help="Phase 1 epochs (backbone frozen)."),
    epochs: Optional[int] = typer.Option(None, min=0, help="Phase 2 epochs (last blocks unfrozen)."),
    unfreeze: Optional[int] = typer.Option(
        None, min=-1, help="Backbone units unfrozen in phase 2 (-1: all)."
    ),
    lr_head: Optional[float] = typer.Option(None, callback=_positive, help="Phase 1 learning rate."),
    lr: Optional[float] = typer.Option(None, callback=_positive, help="Phase 2 learning rate."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Batch size."),
    workers: Optional[int] = typer.Option(None, min=0, max=256, help="Data-loading worker processes."),
    seed: Optional[int] = typer.Option(
        None, min=0, max=SEED_MAX, help="Seed for splits, augmentation and init."
    ),
    patience: Optional[int] = typer.Option(None, min=1, help="Early-stopping patience (epochs)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (CPU or GPU)."),
    device: Optional[str] = typer.Option(
        None, help="auto (a GPU when one is visible) | cpu | cuda | cuda:N. Under torchrun: GPU LOCAL_RANK."
    ),
    max_fpr: Optional[float] = typer.Option(
        None, callback=_unit_open, help="Pick the threshold for this FPR on val reals."
    ),
    exclude_source: Optional[list[str]] = typer.Option(None, help="Leave a source out of train/val."),
    limit: Optional[int] = typer.Option(None, min=0, help="Use at most N training images (smoke runs)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this dir from its last epoch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Two-phase transfer learning; writes model.safetensors + model.card.json into the run dir."""
    from .train import TrainConfig
    from .train import train as run_train

    try:
        if resume is not None:
            cfg = TrainConfig.from_yaml(resume / "config.yaml")
        elif config is not None:
            cfg = TrainConfig.from_yaml(config)
        else:
            cfg = TrainConfig()
    except (OSError, ValueError) as e:
        fail(str(e))
    given = dict(
        data=data,
        out=out,
        model=model,
        pretrained=pretrained,
        head=head,
        policy=policy.value if policy is not None else None,
        size=size,
        epochs_head=epochs_head,
        epochs=epochs,
        unfreeze=unfreeze,
        lr_head=lr_head,
        lr=lr,
        batch_size=batch_size,
        workers=workers,
        seed=seed,
        patience=patience,
        bf16=bf16,
        device=device,
        max_fpr=max_fpr,
        exclude_sources=exclude_source or None,
        limit=limit,
    )
    for k, v in given.items():
        if v is not None:
            setattr(cfg, k, v)
    if resume is not None:
        cfg.out = str(resume)
    if not cfg.data:
        fail("--data is required (or set 'data' in --config)")
    try:
        best = run_train(cfg, resume=resume is not None, progress=not quiet)
    except (OSError, ValueError) as e:
        fail(str(e))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        typer.echo(f"best checkpoint: {best}")


# ---- evaluate ------------------------------------------------------------------------------------
@app.command()
def evaluate(
    model: Optional[str] = typer.Option(
        None, help="Shipped model name, run dir, checkpoint (.safetensors) or ONNX; default model if omitted."
    ),
    data: Path = typer.Option(..., help="Labelled collection to evaluate on."),
    split: str = typer.Option("test", help="train | val | test | all."),
    tier: Optional[list[Tier]] = typer.Option(
        None, help="Robustness tiers to score (default: clean, web, hard)."
    ),
    threshold: Optional[float] = typer.Option(
        None, callback=_unit_open, help="Decision threshold (default: the card's)."
    ),
    max_fpr: Optional[float] = typer.Option(
        None, callback=_unit_open, help="Choose the threshold on val for this FPR on reals."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    report: Optional[Path] = typer.Option(None, help="Write PNG plots, report.md and metrics.json here."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the split drawn when the data has none."),
) -> None:
    """Accuracy, precision, recall, F1, ROC-AUC, AP, balanced accuracy, ECE, per source and per tier."""
    from .data import DataError
    from .evaluate import evaluate as run_eval
    from .evaluate import format_table, public, write_report
    from .runtime import ModelLoadError

    tiers = [t.value for t in tier] if tier else ["clean", "web", "hard"]
    try:
        res = run_eval(
            model,
            data,
            split=split,
            tiers=tiers,
            threshold=threshold,
            max_fpr=max_fpr,
            seed=seed,
            progress=not json_out,
        )
    except (ModelLoadError, DataError, ValueError, OSError) as e:
        fail(str(e))
    if report:
        write_report(res, report)
    typer.echo(json.dumps(public(res), default=float) if json_out else format_table(res))
    raise typer.Exit(EXIT_PARTIAL if res["errors"] else EXIT_OK)


# ---- predict -------------------------------------------------------------------------------------
def _expand_inputs(paths: list[str], recursive: bool, skipped: list[str] | None = None) -> list[str]:
    """Files, folders, globs and '-' (stdin); one helper shared with the Ray engine (sources.py)."""
    from .sources import expand_inputs

    return expand_inputs(paths, recursive, skipped)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def predict(
    paths: list[str] = typer.Argument(
        ..., metavar="PATH", help="Image files, folders, globs, or '-' to read paths from stdin."
    ),
    model: Optional[str] = typer.Option(
        None,
        metavar="MODEL",
        help="Shipped model name (aivsreal-default-v1 ...), ONNX file, checkpoint or run dir (default: the shipped default).",
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line on stdout."),
    csv_out: Optional[Path] = typer.Option(
        None, "--csv", metavar="FILE", help="Also write results to this CSV file (atomically); '-': stdout."
    ),
    threshold: Optional[float] = typer.Option(
        None,
        callback=_unit_open,
        metavar="T",
        help=f"Decision line on the score: label ai at or above it. [default: the model card's; "
        f"{SHIPPED_THRESHOLD} for the shipped model]",
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    tta: bool = typer.Option(
        False,
        "--tta",
        help="Also score the mirror image and, for images bigger than the model input, its four corners; "
        "the score is the mean logit. 2-6x slower, and it can move a score a lot (up to 0.14 on the "
        "dev test split; the threshold was chosen without it, see MODEL_CARD.md).",
    ),
    tier: Tier = typer.Option(
        Tier.clean, help="Re-encode each image as this robustness tier before scoring (clean: as it is)."
    ),
    batch_size: int = typer.Option(16, min=1, max=4096, metavar="N", help="Images per model call."),
    workers: Optional[int] = typer.Option(
        None, min=1, max=256, metavar="N", help="Decoding threads (default: cores, at most 4)."
    ),
    provenance: bool = typer.Option(
        False, "--provenance", help="Also look for provenance evidence and report a verdict."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar (shown when stderr is a terminal)."
    ),
    engine: Engine = typer.Option(
        Engine.local, help="local, or ray: distributed, writes --output (needs the [scale] extra)."
    ),
    address: Optional[str] = typer.Option(None, metavar="ADDR", help="Ray cluster address (engine ray)."),
    output: Optional[Path] = typer.Option(
        None, "--output", metavar="FILE", help="Parquet output (engine ray)."
    ),
    ray_workers: Optional[int] = typer.Option(
        None, min=1, metavar="N", help="Ray actor-pool size (engine ray; default: cluster CPUs)."
    ),
) -> None:
    """Score images: a table by default, JSON lines with --json, a CSV file with --csv.

    The score is the model's calibrated probability that an image is AI-generated, P(AI). The label is
    "ai" when the score reaches the model card's threshold and "real" below it; scores within the card's
    band of the threshold are also marked uncertain. The shipped model's threshold is high (see
    MODEL_CARD.md): it was chosen so that at most 3 % of real photos are flagged, so a score of 0.6
    still reads "real".
    """
    from .runtime import Detector, ModelLoadError

    if engine is Engine.ray:
        ignored = [f for f, on in (("--json", json_out), ("--csv", csv_out), ("--tta", tta)) if on]
        ignored += [f for f, on in (("--provenance", provenance), ("--workers", workers is not None)) if on]
        if ignored:
            fail(f"{', '.join(ignored)}: not available with --engine ray (it writes --output OUT.parquet)")
        from .scale import predict_ray

        if output is None:
            fail("--engine ray needs --output OUT.parquet")
        try:
            summary = predict_ray(
                paths,
                model=model,
                output=output,
                address=address,
                threshold=threshold,
                workers=ray_workers,
                batch_size=batch_size,
                recursive=recursive,
            )
        except (ModelLoadError, ValueError, OSError) as e:
            fail(str(e))
        typer.echo(json.dumps(summary))
        raise typer.Exit(EXIT_PARTIAL if summary.get("errors") else EXIT_OK)
    ray_only = [
        f for f, v in (("--output", output), ("--address", address), ("--ray-workers", ray_workers)) if v
    ]
    if ray_only:
        fail(f"{', '.join(ray_only)}: only with --engine ray (results go to stdout and --csv)")
    csv_stdout = csv_out is not None and str(csv_out) == "-"
    if csv_stdout and json_out:
        fail("--json and --csv - both write to stdout: give --csv a file name")
    if csv_out is not None and not csv_stdout:
        from .fsutil import check_output_path

        try:  # before any scoring: a bad output path must not cost a whole run
            check_output_path(csv_out)
        except OSError as e:
            fail(f"--csv {e.strerror or e}")
    try:
        det = Detector.load(model)
    except ModelLoadError as e:
        fail(str(e))
    skipped: list[str] = []
    files = _expand_inputs(paths, recursive, skipped)
    if skipped and not files:
        fail(f"no input images found: {_skipped_note(skipped)}")
    if not files:
        fail("no input images found")
    if skipped:
        typer.echo(f"aivsreal: note: {_skipped_note(skipped)}", err=True)
    from tqdm import tqdm

    show_bar = len(files) > 1 and not quiet and sys.stderr.isatty()
    bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=not show_bar, leave=False)
    table = not json_out and not csv_stdout
    # on a terminal long names are shortened and control characters shown escaped (a name may hold escape
    # codes); piped, every name is printed exactly as the file's, so the output can be fed back
    tty = sys.stdout.isatty()
    width = (
        min(max((len(f) for f in files), default=4), 70) if tty else max((len(f) for f in files), default=4)
    )

    def out(line: str) -> None:
        if show_bar:  # keep the bar below the streamed rows
            bar.clear()
        typer.echo(line, color=True)  # color=True: click would strip escape codes from piped names
        if show_bar:
            bar.refresh()

    if table:
        out(_legend(det, threshold))
        out(_row_header(width, provenance))
    results = []
    n_err = 0
    scored = det.iter_predict(
        files, batch_size=batch_size, tta=tta, workers=workers, tier=tier.value, threshold=threshold
    )
    for pred in scored:
        if provenance:
            from .provenance import attach

            attach(pred)
        n_err += 0 if pred.ok else 1
        if json_out:
            out(json.dumps(pred.to_dict(), ensure_ascii=False))
        elif table:
            out(_row(pred, width, provenance, tty))
        if csv_out is not None:
            results.append(pred)
        bar.update(1)
    bar.close()
    if csv_stdout:
        sys.stdout.write(_csv_text(results, provenance))
    elif csv_out is not None:
        from .fsutil import write_output

        try:  # through a symlink to its target; a device or FIFO is written directly, never replaced
            write_output(csv_out, _csv_text(results, provenance).encode("utf-8"))
        except OSError as e:
            fail(f"--csv {e.strerror or e}")
    if n_err:
        typer.echo(f"{n_err} of {len(files)} file(s) could not be scored (see 'error' rows).", err=True)
    raise typer.Exit(EXIT_PARTIAL if n_err else EXIT_OK)


def _skipped_note(skipped: list[str]) -> str:
    n = len(skipped)
    where = ", ".join(sorted({os.path.dirname(d.rstrip(os.sep)) or "." for d in skipped}))
    return f"skipped {n} sub-folder{'s' if n != 1 else ''} of {where} (use -r/--recursive to include them)"


def _legend(det, threshold: float | None = None) -> str:
    """What the score column is and where the decision line sits, above every table."""
    c = det.card
    where = f"threshold of {det.model_id}" if threshold is None else "--threshold"
    return (
        f"score = calibrated P(AI); label ai if score >= {c.threshold if threshold is None else threshold:.2f} ({where}), "
        f"else real; uncertain within ±{c.uncertain_band:.2f}"
    )


def _row_header(width: int, provenance: bool) -> str:
    return f"{'path':<{width}}  {'score':>6}  label" + ("  verdict" if provenance else "")


def _row(p, width: int, provenance: bool, tty: bool = True) -> str:
    name = p.source
    if tty:
        name = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
        name = name if len(name) <= width else "…" + name[-(width - 1) :]
    if not p.ok:
        return f"{name:<{width}}  {'error':>6}  {p.error['kind']}: {p.error['message']}"
    tag = p.label + (f" (uncertain: {p.reason})" if p.reason else " (uncertain)" if p.uncertain else "")
    extra = f"  {p.verdict}" if provenance and p.verdict else ""
    return f"{name:<{width}}  {p.score:6.3f}  {tag}{extra}"


def _csv_cell(key: str, value: object) -> str:
    """One CSV cell of a result row: empty when missing, booleans true/false as in JSON, 6-decimal scores."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "score":
        return f"{value:.6f}"
    return str(value)


def _csv_text(preds, provenance: bool = False) -> str:
    """CSV of the result rows (``runtime.ROW_COLUMNS``, the columns Parquet has too); --provenance adds
    verdict and provenance (the evidence items as JSON)."""
    from .runtime import ROW_COLUMNS

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*ROW_COLUMNS, *(["verdict", "provenance"] if provenance else [])])
    for p in preds:
        r = p.row()
        row = [_csv_cell(k, r[k]) for k in ROW_COLUMNS]
        if provenance:
            row += [p.verdict or "", json.dumps(p.provenance or [], ensure_ascii=False, default=str)]
        w.writerow(row)
    return buf.getvalue()


# ---- export ----------------------------------------------------------------------------------------
class ExportFormat(str, Enum):
    onnx = "onnx"
    tflite = "tflite"


@app.command()
def export(
    model: str = typer.Option(..., help="Checkpoint (.safetensors) or run dir."),
    out: Path = typer.Option(..., help="Output directory."),
    int8: bool = typer.Option(False, "--int8", help="Also write a static int8 (QDQ) model."),
    calib: Optional[Path] = typer.Option(
        None, help="Images for int8 calibration (default: the training data)."
    ),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx | tflite."),
    name: str = typer.Option("model", help="File stem of the exported files."),
    int8_rule: str = typer.Option(
        "none",
        metavar="RULE",
        help="Layers the int8 file keeps in fp32: none, or +-joined stem, head, se, dw, first<N> "
        "(scripts/int8_search.py compares them).",
    ),
    fp16_weights: bool = typer.Option(
        False,
        "--fp16-weights",
        help="Store the ONNX file's weights as float16 (half the size, float32 compute).",
    ),
    input_size: Optional[int] = typer.Option(
        None,
        "--input-size",
        help="Input size of the exported model (default: the training size; the network is fully "
        "convolutional, so a larger native crop sees more of each image).",
    ),
) -> None:
    """Export to ONNX (opset 17, dynamic batch, card in metadata) and verify against torch."""
    from .export import export_model

    try:
        report = export_model(
            model,
            out,
            int8=int8,
            calib=calib,
            fmt=fmt.value,
            name=name,
            int8_rule=int8_rule,
            fp16_weights=fp16_weights,
            input_size=input_size,
        )
    except (OSError, ValueError, RuntimeError) as e:
        fail(str(e))
    typer.echo(json.dumps(report, indent=2, default=float))


# ---- bench -----------------------------------------------------------------------------------------
@app.command()
def bench(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    models: Optional[list[str]] = typer.Option(
        None, "--model", help="timm names (default: Small and Large)."
    ),
    images: int = typer.Option(48, min=1, help="Generated JPEGs for the folder throughput test."),
    repeats: Optional[int] = typer.Option(
        None,
        min=1,
        help="Batch-1 latency samples per engine (default 30); engine ray: runs per configuration (1).",
    ),
    quick: bool = typer.Option(False, "--quick", help="Fewer repeats (smoke run)."),
    engine: str = typer.Option(
        "local", help="local | ray: local vs Ray Data throughput (the [scale] extra)."
    ),
    ray_workers: Optional[list[int]] = typer.Option(
        None, min=1, help="Ray actor-pool sizes to try (engine ray; default 1 2)."
    ),
) -> None:
    """Latency, throughput and GFLOP/s of ONNX fp32/int8 and torch, side by side in one run.

    With ``--engine ray``: images/s of the local engine and of Ray per actor-pool size (one ONNX --model,
    default the shipped one; --repeats runs per configuration, the median reported).
    """
    from .bench import BenchError, format_bench, format_ray_bench, run_bench, run_ray_bench

    try:
        if engine == "ray":
            if models and len(models) > 1:
                fail("--engine ray benches one --model (an ONNX file)")
            res = run_ray_bench(
                model=models[0] if models else None,
                n_images=images,
                workers=ray_workers,
                repeats=max(1, repeats or 1),
            )
            typer.echo(json.dumps(res, indent=2, default=float) if json_out else format_ray_bench(res))
            return
        if engine != "local":
            fail(f"unknown engine {engine!r} (local | ray)")
        res = run_bench(
            models=models, n_images=images, repeats=30 if repeats is None else repeats, quick=quick
        )
    except BenchError as e:
        fail(str(e))
    typer.echo(json.dumps(res, indent=2, default=float) if json_out else format_bench(res))


# ---- serve, inspect, explain -----------------------------------------------------------------------
@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port."),
    model: Optional[str] = typer.Option(None, help="ONNX model (default: shipped model)."),
    workers: int = typer.Option(2, min=1, max=256, help="Inference threads."),
    max_upload_mb: float = typer.Option(20.0, callback=_positive, help="Largest accepted upload."),
    web_dir: Optional[Path] = typer.Option(
        None,
        help="Serve the page from this build (e.g. src/aivsreal/web_static after npm run build) "
        "instead of the installed copy; also $AIVSREAL_WEB_DIR.",
    ),
    max_inflight_mb: Optional[float] = typer.Option(
        None,
        callback=_positive,
        help="Upload bytes held in memory across all requests (503 past it). [default: 8 uploads, >= 64]",
    ),
    body_deadline: float = typer.Option(
        120.0, callback=_positive, help="Seconds a client has to send a whole request body (408 past it)."
    ),
) -> None:
    """HTTP API (POST /v1/predict, GET /v1/model, /healthz), the web page at / and OpenAPI docs."""
    from .serve import run

    run(
        host=host,
        port=port,
        model=model,
        workers=workers,
        max_upload_mb=max_upload_mb,
        web_dir=web_dir,
        max_inflight_mb=max_inflight_mb,
        body_deadline=body_deadline,
    )


@app.command()
def inspect(
    paths: list[str] = typer.Argument(..., metavar="PATH", help="Image files or folders."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
) -> None:
    """Provenance evidence: C2PA, IPTC/XMP, EXIF, generator PNG chunks, invisible watermarks."""
    from .provenance import format_report, inspect_path

    n_err = 0
    for f in _expand_inputs(paths, recursive):
        rep = inspect_path(f)
        n_err += 1 if rep.get("error") else 0
        typer.echo(json.dumps(rep, ensure_ascii=False, default=str) if json_out else format_report(rep))
    raise typer.Exit(EXIT_PARTIAL if n_err else EXIT_OK)


@app.command()
def explain(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Image to explain."),
    out: Path = typer.Option(..., help="Heatmap PNG to write (same size as the input)."),
    model: Optional[str] = typer.Option(None, help="Checkpoint or run dir (torch model)."),
) -> None:
    """Grad-CAM heatmap of where the model looked, overlaid on the image."""
    from .explain import explain_file

    try:
        info = explain_file(image, out, model=model)
    except (OSError, ValueError, RuntimeError) as e:
        fail(str(e))
    typer.echo(json.dumps(info))


def _plain_type(label: str | None) -> str | None:
    """Typer's ``<float>`` / ``<local|ray>`` as a plain CLI writes them: ``FLOAT`` / ``[local|ray]``."""
    if not label or not (label.startswith("<") and label.endswith(">")):
        return label
    inner = label[1:-1]
    if inner.startswith("list[") and inner.endswith("]"):  # a repeatable option: one value per use
        inner = inner[5:-1]
    if "|" in inner:
        return f"[{inner}]"
    return {"str": "TEXT", "list[str]": "TEXT"}.get(inner, inner.upper())


def _tidy_help(cmd: Any) -> Any:
    """Help that reads like a plain CLI: arguments without Typer's <list[str]> labels, options with
    FLOAT, PATH or [local|ray] instead of <float>. Per instance: only our own parameters change."""
    from typer.core import TyperArgument, TyperOption

    for p in cmd.params:
        if isinstance(p, TyperArgument):
            p.display_type_rich = lambda ctx: None
        elif isinstance(p, TyperOption) and not getattr(p, "is_flag", False) and p.metavar is None:
            p.display_type_rich = lambda ctx, _f=p.display_type_rich: _plain_type(_f(ctx))
    for sub in getattr(cmd, "commands", {}).values():
        _tidy_help(sub)
    return cmd


def main() -> None:
    # A non-UTF-8 file name (surrogate-escaped str) prints as its raw bytes, like ls, instead of crashing
    # in locales whose stdout is strict UTF-8.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    _tidy_help(typer.main.get_command(app))(prog_name="aivsreal")


if __name__ == "__main__":
    main()
