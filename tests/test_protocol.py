"""The evaluation protocol (issue #14) on a tiny synthetic corpus with a tiny training budget.

Checks what could silently go wrong: a held-out family or real group reaching its training manifest,
a resumed protocol retraining finished runs, pairs matched to the wrong twin, the external set scored as
patches instead of whole files, a look at the external set that is not logged, and an external original
leaking into training.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, WEIGHTS, load_script, make_image, save
from hostile import run_cli

from aivsreal.protocol import runner
from aivsreal.protocol.pool import ProtocolError, build_test_pool, read_manifest
from aivsreal.protocol.spec import load_spec

HEADER = "path,label,source,group,split,generator,family,kind,orig_sha256,orig_format,orig_size,box".split(
    ","
)
TAEF2 = WEIGHTS / "autoencoders"
HAVE_TAEF2 = all((TAEF2 / f).is_file() for f in ("taef2_encoder.safetensors", "taef2_decoder.safetensors"))


def _spec(tmp: Path, **over) -> Path:
    d = yaml.safe_load((ROOT / "configs" / "protocol.yaml").read_text())
    d["lofo"] = {"families": ["gan", "aligned", "synthetic", "dit_flow"], "min_families": 3}
    d["lorgo"] = {"groups": ["web", "faces"], "min_groups": 1}
    d["test_fakes"] = {"aligned": False, "synthetic": ["tconv"], "max_patches": 0, "seed": 0}
    d["budgets"] = {"tiny": {"epochs_head": 0, "epochs": 1, "batch_size": 16, "workers": 0}}
    d["default_budget"] = "tiny"
    d["external"].update(min_ai=2, min_real=2, min_ai_sources=1, min_real_sources=1)
    d["external"]["looks_log"] = str(tmp / "looks.jsonl")
    d.update(over)
    p = tmp / "protocol.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _train_config(tmp: Path) -> Path:
    cfg = {"model": "tf_mobilenetv3_small_100", "pretrained": "none", "size": 32, "batch_size": 16,
           "workers": 0, "seed": 0, "max_fpr": 0.1, "augment": {"forensic": False, "geometric": False}}  # fmt: skip
    p = tmp / "train.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _row(path, label, source, group, split, family, kind="original", box="0,0,48,48", sha=""):
    return [path, label, source, group, split, source, family, kind, sha or group, "PNG", "64x64", box]


def make_corpus(root: Path) -> Path:
    """Real groups camera/web, AI families gan/sd1, aligned twins (train/val and two test twins)."""
    rows, k = [], 0
    reals = {"camera": "cam_src", "web": "web_src"}
    ais = {"gan": "gan_src", "sd1": "sd1_src"}
    splits = ["train"] * 6 + ["val"] * 3 + ["test"] * 3
    for fam, src in reals.items():
        for i, sp in enumerate(splits):
            g = f"{src}:{i}"
            p = save(make_image("real", 48, seed=k), root / f"patches/real/{src}/{i}.png")
            rows.append(_row(p.relative_to(root).as_posix(), "real", src, g, sp, fam))
            if sp in ("train", "val"):  # the corpus' aligned twins: same group and box
                t = save(make_image("ai", 48, seed=5000 + k), root / f"patches/ai/aligned_taef2/{fam}{i}.png")
                rows.append(
                    _row(t.relative_to(root).as_posix(), "ai", "aligned_taef2", g, sp, "aligned", "aligned")
                )
            k += 1
    # two real test patches of one original (same group, two boxes), each with its own test twin
    for j, box in enumerate(("0,0,48,48", "48,0,48,48")):
        p = save(make_image("real", 48, seed=900 + j), root / f"patches/real/cam_src/big_{j}.png")
        rows.append(
            _row(p.relative_to(root).as_posix(), "real", "cam_src", "cam_src:big", "test", "camera", box=box)
        )
        t = save(make_image("ai", 48, seed=950 + j), root / f"patches/ai/aligned_taef2/big_{j}.png")
        rows.append(_row(t.relative_to(root).as_posix(), "ai", "aligned_taef2", "cam_src:big", "test",
                         "aligned", "aligned", box=box))  # fmt: skip
    for fam, src in ais.items():
        for i, sp in enumerate(splits):
            p = save(make_image("ai", 48, seed=k), root / f"patches/ai/{src}/{i}.png")
            rows.append(_row(p.relative_to(root).as_posix(), "ai", src, f"{src}:{i}", sp, fam))
            k += 1
    m = root / "manifest.csv"
    with open(m, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return m


def make_external(root: Path) -> Path:
    """external.csv as the builder writes it: one row per whole original file (JPEG and PNG), one broken."""
    rows = []
    for i in range(3):
        for kind, src in (("real", "ext_real"), ("ai", "ext_ai")):
            ext = "jpg" if i % 2 else "png"
            img = make_image(kind, 120, seed=7000 + i + (kind == "ai") * 50, w=160)
            p = save(img, root / f"external/{src}/{i}.{ext}")
            sha = hashlib.sha256(p.read_bytes()).hexdigest()
            rows.append(_row(p.relative_to(root).as_posix(), kind, src, f"{src}:{i}", "test", "web",
                             box="0,0,160,120", sha=sha))  # fmt: skip
    bad = root / "external/ext_ai/broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows.append(_row(bad.relative_to(root).as_posix(), "ai", "ext_ai", "b", "test", "gan", sha="f" * 64))
    p = root / "external.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return p


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("proto_corpus")
    return {"root": root, "manifest": make_corpus(root), "external": make_external(root)}


def test_committed_protocol_is_complete():
    spec = load_spec(ROOT / "configs" / "protocol.yaml")
    assert len(spec.lofo.families) >= spec.lofo.min_families >= 7
    assert {"aligned", "synthetic"} <= set(spec.lofo.families)
    assert len(spec.lorgo.groups) >= spec.lorgo.min_groups >= 4
    assert spec.tiers == ["clean", "web", "hard"] and spec.pairs.jpeg_quality == 90
    assert spec.looks_log_path() == ROOT / "docs" / "protocol" / "looks.jsonl"
    assert (ROOT / "docs" / "protocol.md").is_file() and (
        ROOT / "docs" / "protocol" / "looks.jsonl"
    ).is_file()
    for line in (ROOT / "docs" / "protocol" / "looks.jsonl").read_text().splitlines():
        entry = json.loads(line)  # every committed look is one JSON object with its date, model and figures
        assert {"date", "model", "figures"} <= set(entry)


def test_model_card_reports_the_shipped_models_protocol_figures():
    """MODEL_CARD.md carries v1's figures on sources it never saw, as measured in docs/protocol/v1-baseline."""
    d = json.loads((ROOT / "docs" / "protocol" / "v1-baseline" / "protocol.json").read_text())
    card = (ROOT / "MODEL_CARD.md").read_text()
    ext = d["parts"]["external"]["tiers"]["clean"]
    twin = d["parts"]["pairs"]["tiers"]["clean"]["twin"]
    assert "## Measured on sources it never saw" in card
    assert f"| {ext['n']:,} | {ext['balanced_accuracy']:.3f} | {ext['roc_auc']:.3f} / " in card
    assert f"| {twin['n']:,} | {twin['balanced_accuracy']:.3f} | {twin['roc_auc']:.3f} |" in card
    assert "No truly external test set" not in card
    lead = json.loads((ROOT / "docs" / "protocol" / "v2e-pairs-rgb-npr-full" / "protocol.json").read_text())
    lead_ext = lead["parts"]["external"]["tiers"]["clean"]
    assert (
        f"ROC-AUC {lead_ext['roc_auc']:.3f}" in card
        and f"balanced accuracy {lead_ext['balanced_accuracy']:.3f}" in card
    )


def test_spec_refuses_recipe_changes_in_a_budget(tmp_path):
    p = _spec(tmp_path, budgets={"cheat": {"epochs": 1, "model": "other"}}, default_budget="cheat")
    with pytest.raises(ValueError, match="model not allowed"):
        load_spec(p)


def test_pairs_matched_by_group_and_box(corpus, tmp_path):
    spec = load_spec(_spec(tmp_path))
    items = read_manifest(corpus["manifest"])
    pool = build_test_pool(items, spec, tmp_path / "fakes")
    pairs = {(r.group, r.box): t for r, t in pool.pairs}
    big = [(r, t) for r, t in pool.pairs if r.group == "cam_src:big"]
    assert len(big) == 2
    for r, t in big:  # each real patch with the twin of its own box, not its sibling's
        j = 0 if r.box.startswith("0,") else 1
        assert (t.group, t.box) == (r.group, r.box) and t.path.endswith(f"big_{j}.png")
    assert len(pairs) == 2  # twins are not made (aligned: false): the other test reals have no pair
    made = [it for it in pool.items if it.made]
    n_real_test = sum(1 for it in items if it.split == "test" and it.label == 0)
    assert len(made) == n_real_test and {it.family for it in made} == {"synthetic"}
    assert all(Path(it.path).is_file() and it.split == "test" for it in made)


@pytest.mark.skipif(not HAVE_TAEF2, reason="TAEF2 weights not in ../shared/weights/autoencoders")
def test_missing_twins_are_made_with_taef2(corpus, tmp_path):
    spec = load_spec(
        _spec(tmp_path, test_fakes={"aligned": True, "synthetic": [], "max_patches": 2, "seed": 0})
    )
    items = read_manifest(corpus["manifest"])
    pool = build_test_pool(items, spec, tmp_path / "fakes", weights_dir=str(TAEF2))
    made = [t for _, t in pool.pairs if t.made]
    assert len(pool.pairs) == 2 and pool.made.get("aligned", 0) == len(made)
    for r, t in pool.pairs:
        assert (t.group, t.box) == (r.group, r.box) and Path(t.path).is_file()


@pytest.mark.slow
def test_protocol_run_held_out_resume_external_and_looks(corpus, tmp_path, monkeypatch):
    spec = load_spec(_spec(tmp_path))
    out = tmp_path / "out"
    cfg = _train_config(tmp_path)
    opts = dict(manifest=corpus["manifest"], out=out, config=cfg, external=corpus["external"], progress=False)
    res = runner.run_protocol(
        spec, runner.Options(parts=["lofo", "lorgo", "test", "pairs", "external"], **opts)
    )

    lofo = res["parts"]["lofo"]
    assert {k for k, v in lofo["families"].items() if v["status"] == "done"} == {
        "gan",
        "aligned",
        "synthetic",
    }
    assert lofo["families"]["dit_flow"]["status"] == "absent from the manifest" and lofo["complete"]
    for fam in ("gan", "aligned", "synthetic"):
        rows = list(csv.DictReader(open(out / "runs" / f"lofo-{fam}" / "train.csv")))
        assert rows and not any(r["family"] == fam for r in rows)  # held out from train and val
        assert {r["split"] for r in rows} == {"train", "val"}  # test rows never train
        v = lofo["families"][fam]
        n_test_ai = sum(
            1 for it in read_manifest(corpus["manifest"]) if it.split == "test" and it.family == fam
        )
        assert v["n_real"] == 2 * 3 + 2  # all real test patches
        assert v["n_ai"] == (
            n_test_ai if fam != "synthetic" else 8
        )  # synthetic: made, one per real test patch
        assert set(v["tiers"]) == {"clean", "web", "hard"}
    web_rows = list(csv.DictReader(open(out / "runs" / "lorgo-web" / "train.csv")))
    web_groups = {f"web_src:{i}" for i in range(12)}
    assert not any(r["group"] in web_groups for r in web_rows)  # the group's reals and their twins
    assert any(r["family"] == "camera" for r in web_rows)
    lorgo = res["parts"]["lorgo"]
    assert lorgo["groups"]["web"]["n_real"] == 3 and lorgo["groups"]["faces"]["status"].startswith("absent")
    assert (
        res["parts"]["pairs"]["n_pairs"] == 2 and "twin_jpeg90" in res["parts"]["pairs"]["summary"]["clean"]
    )
    jp = list((out / "fakes" / "jpeg90").glob("*.jpg"))
    assert len(jp) == 2 and all(p.read_bytes()[:2] == b"\xff\xd8" for p in jp)

    ext = res["parts"]["external"]
    assert ext["n_files"] == 7 and ext["tiers"]["clean"]["n"] == 6  # whole files, one broken
    assert ext["errors"] and ext["errors"][0]["path"].endswith("broken.png")
    assert ext["per_source"]["ext_real"]["n"] == 3 and ext["size"]["meets_minimum"]
    looks = (tmp_path / "looks.jsonl").read_text().splitlines()
    assert len(looks) == 1
    entry = json.loads(looks[0])
    assert entry["model"] == res["model"]["id"] and entry["date"].startswith("20")
    assert set(entry["figures"]) == {"clean", "web", "hard"} and entry["n"]["ai"] == 4
    assert (out / "protocol.md").read_text().count("| gan |") == 3
    assert {t["part"] for t in res["targets"]} >= {"lofo", "lorgo", "pairs", "external"}

    # resume: a finished protocol re-run trains nothing; a run whose scoring was interrupted is only scored
    calls = []
    import aivsreal.train as tr

    real_train = tr.train

    def spy(cfg, resume=False, progress=True):
        calls.append((cfg.out, resume))
        return real_train(cfg, resume=resume, progress=progress)

    monkeypatch.setattr(tr, "train", spy)
    hist = (out / "runs" / "lofo-gan" / "train" / "history.csv").read_text()
    (out / "runs" / "lofo-gan" / "result.json").unlink()
    res2 = runner.run_protocol(spec, runner.Options(parts=["lofo", "lorgo"], **opts))
    assert calls == [(str(out / "runs" / "lofo-gan" / "train"), True)]
    assert (out / "runs" / "lofo-gan" / "train" / "history.csv").read_text() == hist  # no epoch redone
    assert res2["parts"]["lofo"]["families"]["gan"] == lofo["families"]["gan"]

    # protocol score on the finished candidate: external looked at again → a second, appended log line
    model = out / "runs" / "full" / "train" / "model.safetensors"
    res3 = runner.score_model(
        spec, runner.Options(parts=["external"], model=str(model), **{**opts, "out": tmp_path / "s"})
    )
    looks2 = (tmp_path / "looks.jsonl").read_text().splitlines()
    assert len(looks2) == 2 and looks2[0] == looks[0]
    assert res3["parts"]["external"]["tiers"]["clean"] == ext["tiers"]["clean"]

    # a changed budget in the same OUT is refused, not mixed
    spec2 = load_spec(_spec(tmp_path, budgets={"tiny": {"epochs_head": 0, "epochs": 2}}))
    with pytest.raises(ProtocolError, match="another protocol, config, budget"):
        runner.run_protocol(spec2, runner.Options(parts=["lofo"], **opts))


def test_external_original_in_training_is_refused(corpus, tmp_path):
    ext_sha = next(r["orig_sha256"] for r in csv.DictReader(open(corpus["external"])))
    leaky = tmp_path / "leaky.csv"
    rows = list(csv.reader(open(corpus["manifest"])))
    rows[1][8] = ext_sha  # a training row made from an external original
    rows = [
        [(str(corpus["root"] / c) if j == 0 and i else c) for j, c in enumerate(r)]
        for i, r in enumerate(rows)
    ]
    with open(leaky, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    spec = load_spec(_spec(tmp_path))
    opts = runner.Options(manifest=leaky, out=tmp_path / "o", parts=["lofo"], external=corpus["external"],
                          config=_train_config(tmp_path), progress=False)  # fmt: skip
    with pytest.raises(ProtocolError, match="external original"):
        runner.run_protocol(spec, opts)


def test_external_list_of_patches_is_refused(corpus, tmp_path):
    from aivsreal.protocol.score import read_external

    rows = list(csv.reader(open(corpus["external"])))
    p = tmp_path / "external.csv"
    with open(p, "w", newline="") as f:
        csv.writer(f).writerows(rows + [rows[1]])  # two rows of one original: patches
    with pytest.raises(ProtocolError, match="not whole"):
        read_external(p)
    assert len(read_external(corpus["external"])) == len(rows) - 1


def test_cli_names_a_bad_protocol_file_and_exits_2(corpus, tmp_path):
    from typer.testing import CliRunner

    from aivsreal.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("lofo: {families: []}\n")
    r = CliRunner().invoke(
        app, ["protocol", "score", "m.onnx", "--manifest", str(corpus["manifest"]), "--protocol", str(bad)]
    )
    assert r.exit_code == 2 and "bad.yaml" in r.output


def test_plan_counts_what_each_run_trains_and_scores(corpus, tmp_path):
    from typer.testing import CliRunner

    from aivsreal.cli import app

    args = ["protocol", "plan", "--manifest", str(corpus["manifest"]), "--protocol", str(_spec(tmp_path))]
    r = CliRunner().invoke(app, [*args, "--external", str(corpus["external"])])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    gan = plan["lofo"]["gan"]
    assert (gan["train_val"], gan["held_out_train_val"], gan["test_ai"], gan["test_real"]) == (45, 9, 3, 8)
    assert plan["lofo"]["synthetic"]["test_ai"] == 8 and plan["lofo"]["aligned"]["test_ai"] == 2
    assert not plan["lofo"]["dit_flow"]["scored"] and plan["lofo_complete"]["complete"]
    assert plan["lorgo"]["web"] == {"train_val": 36, "test_real": 3, "scored": True}  # reals and twins out
    assert plan["external"]["originals"] == 7 and plan["external"]["leak"] is None


def test_a_failed_training_run_is_recorded_and_the_rest_go_on(corpus, tmp_path, monkeypatch):
    import aivsreal.train as tr

    def boom(cfg, resume=False, progress=True):
        raise ValueError(f"{cfg.data}: need training and validation images")

    monkeypatch.setattr(tr, "train", boom)
    spec = load_spec(_spec(tmp_path))
    opts = runner.Options(manifest=corpus["manifest"], out=tmp_path / "o", parts=["lofo"],
                          external=corpus["external"], config=_train_config(tmp_path), progress=False)  # fmt: skip
    res = runner.run_protocol(spec, opts)
    fams = res["parts"]["lofo"]["families"]
    assert all(fams[f]["status"].startswith("failed: ") for f in ("gan", "aligned", "synthetic"))
    assert not res["parts"]["lofo"]["complete"]
    assert json.loads((tmp_path / "o" / "protocol.json").read_text())["parts"]["lofo"]["scored"] == 0


def test_score_cli_on_the_shipped_onnx_model(corpus, tmp_path):
    """The no-training parts through the CLI on an ONNX model, as a user would run them."""
    from typer.testing import CliRunner

    from aivsreal.cli import app

    model = ROOT / "src" / "aivsreal" / "models_dist" / "default.onnx"
    if not model.is_file():
        pytest.skip("the shipped model is not in this checkout")
    looks = tmp_path / "looks.jsonl"
    looks.write_text('{"date": "2026-01-01", "model": "earlier", "figures": {}}\n')
    args = [
        "protocol",
        "score",
        str(model),
        "--manifest",
        str(corpus["manifest"]),
        "--out",
        str(tmp_path / "s"),
    ]
    args += ["--protocol", str(_spec(tmp_path)), "--external", str(corpus["external"]), "--looks", str(looks)]
    r = CliRunner().invoke(app, [*args, "--reason", "test", "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "s" / "protocol.json").read_text())
    assert set(res["parts"]) == {"test", "pairs", "external"} and res["model"]["id"] == "aivsreal-default-v1"
    assert res["parts"]["external"]["tiers"]["web"]["n"] == 6
    lines = looks.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["model"] == "earlier"  # appended, not rewritten
    assert json.loads(lines[1])["reason"] == "test" and json.loads(lines[1])["model"] == "aivsreal-default-v1"
    assert "## External check set" in (tmp_path / "s" / "protocol.md").read_text()


def test_compare_puts_candidates_side_by_side(tmp_path):
    from aivsreal.protocol.report import compare, compare_rows

    def res(auc: float, twin: float) -> dict:
        return {
            "parts": {
                "test": {
                    "all": {"clean": {"roc_auc": auc}},
                    "families": {"gan": {"clean": {"roc_auc": auc}}},
                },
                "pairs": {"summary": {"clean": {"twin": {"roc_auc": twin}, "twin_jpeg90": {"roc_auc": 0.5}}}},
            }
        }

    assert compare_rows(res(0.7, 0.6))["pairs twin roc_auc"] == 0.6
    table = compare({"a": res(0.7, 0.6), "b": {"parts": {}}})
    lines = table.splitlines()
    assert lines[0] == "| figure (clean) | a | b |"
    assert "| test all roc_auc | 0.700 | – |" in lines
    assert "| test gan roc_auc | 0.700 | – |" in lines
    assert "| pairs twin_jpeg90 roc_auc | 0.500 | – |" in lines
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "protocol.json").write_text(json.dumps(res(0.8, 0.9)))
    r = run_cli(["protocol", "compare", str(tmp_path / "a"), str(tmp_path / "missing.json")])
    assert r.rc != 0 and "missing.json" in r.stderr


def test_test_originals_manifest_is_a_collection_of_test_files(tmp_path):
    """scripts/test_originals.py --manifest-out: the materialised files, readable by load_dataset, all test."""
    from aivsreal.data import load_dataset

    mod = load_script("test_originals")
    rows = []
    for i, label in enumerate(["ai", "real", "ai", "real"]):
        p = tmp_path / f"{label}{i}.png"
        save(make_image(label, 64, seed=i), p)
        rows.append({"path": str(p), "label": label, "source": f"s{i % 2}"})
    out = tmp_path / "m" / "test_originals.csv"
    mod.write_manifest(rows, out)
    ds = load_dataset(out)
    assert {s.split for s in ds.samples} == {"test"}
    got = sorted((Path(s.path).name, s.label) for s in ds.samples)
    assert got == sorted((Path(r["path"]).name, int(r["label"] == "ai")) for r in rows)


def test_external_subset_drops_the_sources_whose_repository_the_baseline_trained_on(tmp_path, monkeypatch):
    mod = load_script("external_subset")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "SOURCES.md").write_text(
        "| label | source | what | origin | licence |\n|---|---|---|---|---|\n"
        "| ai | gal | g | `github:Owner/Gallery@abc:x` | MIT |\n"
        "| ai | other | o | `github:Owner/Other@abc:x` | MIT |\n"
    )
    (dev / "manifest.csv").write_text(
        "path,label,source,split\na.png,ai,gal,train\nb.png,ai,other,test\n"  # only gal trains
    )
    src = [
        {"name": "ext_gal", "role": "external", "origin": {"kind": "github", "repo": "owner/gallery"}},
        {"name": "ext_other", "role": "external", "origin": {"kind": "github", "repo": "Owner/Other"}},
        {"name": "ext_real", "role": "external", "origin": {"kind": "github", "repo": "x/photos"}},
    ]
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"sources": src}))
    per_source = {
        "ext_gal": {"label": "ai", "n": 30, "clean": {"accuracy": 1.0}, "web": {"accuracy": 1.0}},
        "ext_other": {"label": "ai", "n": 10, "clean": {"accuracy": 0.2}, "web": {"accuracy": 0.1}},
        "ext_real": {"label": "real", "n": 20, "clean": {"accuracy": 0.9}, "web": {"accuracy": 0.9}},
    }
    res = tmp_path / "m"
    res.mkdir()
    (res / "protocol.json").write_text(json.dumps({"parts": {"external": {"per_source": per_source}}}))
    out = tmp_path / "t.json"
    argv = ["x", f"m={res}", "--trained-on", str(dev), "--catalog", str(tmp_path / "catalog.yaml")]
    monkeypatch.setattr("sys.argv", [*argv, "--json", str(out)])
    assert mod.main() == 0
    got = json.loads(out.read_text())
    assert got["excluded_sources"] == ["ext_gal"]  # only the repository with a train split, case-insensitive
    clean = got["m"]["clean"]
    assert clean["all"]["recall"] == pytest.approx(0.8)  # (30 + 2) / 40
    assert clean["unseen"]["recall"] == pytest.approx(0.2) and clean["unseen"]["n_ai"] == 10
    assert clean["unseen"]["balanced_accuracy"] == pytest.approx((0.2 + 0.9) / 2)
