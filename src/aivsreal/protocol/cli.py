"""``aivsreal protocol run|score``: thin Typer commands over :mod:`aivsreal.protocol.runner`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The fixed evaluation protocol of issue #14 (configs/protocol.yaml, docs/protocol.md).",
)
DEFAULT_SPEC = Path("configs/protocol.yaml")


def _fail(message: str) -> None:
    typer.echo(f"aivsreal: error: {message}", err=True)
    raise typer.Exit(2)


def _parts(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _go(fn_name: str, protocol: Path, **kw) -> None:
    from .pool import ProtocolError
    from .runner import Options, plan_protocol, run_protocol, score_model
    from .spec import load_spec

    fn = {"run": run_protocol, "score": score_model, "plan": plan_protocol}[fn_name]
    try:
        spec = load_spec(protocol)
        res = fn(spec, Options(**kw))
    except (ProtocolError, ValueError, OSError) as e:
        _fail(str(e))
    if fn_name == "plan":
        typer.echo(json.dumps(res, indent=2))
        return
    out = Path(kw["out"])
    typer.echo(json.dumps({"out": str(out), "json": str(out / "protocol.json"), "targets": res["targets"]}))


@app.command("run")
def run(
    manifest: Path = typer.Option(
        ..., help="Corpus manifest.csv (path,label,split,family[,group,box,kind])."
    ),
    out: Path = typer.Option(..., help="Folder for runs, fakes, protocol.json and protocol.md (resumable)."),
    config: Path | None = typer.Option(None, help="Training config (the recipe under test)."),
    parts: str = typer.Option("lofo,lorgo,test,pairs,external", help="Comma-separated parts to run."),
    budget: str | None = typer.Option(None, help="A budget named in the protocol file."),
    protocol: Path = typer.Option(DEFAULT_SPEC, help="The protocol file."),
    model: str | None = typer.Option(None, help="Model for test/pairs/external (default: train 'full')."),
    external: Path | None = typer.Option(
        None, help="external.csv: whole external originals (default: beside the manifest)."
    ),
    looks: Path | None = typer.Option(None, help="Looks log (default: the protocol file's)."),
    weights_dir: str | None = typer.Option(None, help="Folder with the TAEF2 weights (aligned twins)."),
    fakes: Path | None = typer.Option(None, help="Cache of the protocol's test fakes (default: OUT/fakes)."),
    reason: str = typer.Option("", help="Why the external set is looked at (logged)."),
    batch_size: int = typer.Option(32, min=1, help="Images per model call."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train the held-out models (resumable) and score every part; writes OUT/protocol.json and .md."""
    _go("run", protocol, manifest=manifest, out=out, config=config, parts=_parts(parts), budget=budget,
        model=model, external=external, looks=looks, weights_dir=weights_dir, fakes_dir=fakes, reason=reason,
        batch_size=batch_size, progress=not quiet)  # fmt: skip


@app.command("score")
def score(
    model: str = typer.Argument(..., help="ONNX model, checkpoint or run dir."),
    manifest: Path = typer.Option(..., help="Corpus manifest.csv."),
    out: Path = typer.Option(Path("runs/protocol-score"), help="Folder for protocol.json and protocol.md."),
    parts: str = typer.Option("test,pairs,external", help="Comma-separated: test, pairs, external."),
    protocol: Path = typer.Option(DEFAULT_SPEC, help="The protocol file."),
    external: Path | None = typer.Option(
        None, help="external.csv: whole external originals (default: beside the manifest)."
    ),
    looks: Path | None = typer.Option(None, help="Looks log (default: the protocol file's)."),
    weights_dir: str | None = typer.Option(None, help="Folder with the TAEF2 weights (aligned twins)."),
    fakes: Path | None = typer.Option(None, help="Cache of the protocol's test fakes (default: OUT/fakes)."),
    reason: str = typer.Option("", help="Why the external set is looked at (logged)."),
    batch_size: int = typer.Option(32, min=1, help="Images per model call."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Score one model on the parts that need no training (test split tiers, aligned pairs, external)."""
    _go("score", protocol, manifest=manifest, out=out, parts=_parts(parts), model=model, external=external,
        looks=looks, weights_dir=weights_dir, fakes_dir=fakes, reason=reason, batch_size=batch_size, progress=not quiet)  # fmt: skip


@app.command("plan")
def plan(
    manifest: Path = typer.Option(..., help="Corpus manifest.csv."),
    protocol: Path = typer.Option(DEFAULT_SPEC, help="The protocol file."),
    external: Path | None = typer.Option(None, help="external.csv (default: beside the manifest)."),
) -> None:
    """Print what a run would train and score (per held-out family and group), with the leak check."""
    _go("plan", protocol, manifest=manifest, out=Path("."), parts=[], external=external, progress=False)


@app.command("compare")
def compare(
    results: list[Path] = typer.Argument(..., help="protocol.json files (or the folders holding them)."),
    tier: str = typer.Option("clean", help="clean | web | hard."),
) -> None:
    """Print candidates' headline figures side by side (markdown), one column per protocol.json."""
    import json

    from .report import compare as table

    if tier not in ("clean", "web", "hard"):
        _fail(f"unknown tier {tier!r}; choose from clean, web, hard")
    loaded = {}
    for r in results:
        f = r / "protocol.json" if r.is_dir() else r
        try:
            loaded[f.parent.name or str(f)] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            _fail(f"{f}: cannot read a protocol.json: {e}")
    typer.echo(table(loaded, tier), nl=False)
