"""The corpus data engine (issue #13) on a tiny fixture catalog: local files, a git snapshot, one Debian package.

Checks what could go wrong in a real build: hashes of the originals as fetched, lossless JPEG patches
(pixels equal the original's region), no metadata in patches, grouping/splits, reserved files and
repositories skipped, duplicates dropped, resumption after kill -9, byte-identical re-runs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import ROOT, WEIGHTS, make_image
from PIL import Image

from aivsreal.corpus.catalog import CatalogError, load_catalog, parse_catalog
from aivsreal.corpus.origins import glob_match
from aivsreal.corpus.patches import jpegtran, plan_boxes, probe

DEB = ("libjs-jquery-ui", "1.13.2+dfsg-1")  # six 256×240 PNG icon sheets + tiny backgrounds
DEB_GLOB = "usr/share/javascript/jquery-ui/themes/base/images/*.png"
TAEF2 = WEIGHTS / "autoencoders"

pytestmark = pytest.mark.skipif(
    shutil.which("jpegtran") is None, reason="jpegtran missing (libjpeg-turbo-progs)"
)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _apt_ready() -> str | None:
    """None when ``apt-get download`` of the fixture package should work, else why not."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get/dpkg-deb not available"
    spec = f"{DEB[0]}={DEB[1]}"

    def known() -> bool:
        r = subprocess.run(["apt-cache", "show", spec], capture_output=True)
        return r.returncode == 0 and b"Package:" in r.stdout

    if not known() and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
    return None if known() else f"apt does not know {spec} (no package lists; run apt-get update)"


def _jpeg(img: Image.Image, path: Path, subsampling: int, exif: dict[int, str] | None = None) -> bytes:
    ex = Image.Exif()
    for k, v in (exif or {}).items():
        ex[k] = v
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, subsampling=subsampling, exif=ex.tobytes() if exif else b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _png(img: Image.Image, path: Path) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a prompt, Steps: 20")  # provenance text the patches must not keep
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG", pnginfo=info)
    return path.read_bytes()


def _git_snapshot(mirrors: Path, repo: str, files: dict[str, bytes]) -> str:
    """A bare git dir at mirrors/owner+name/repo holding ``files``; returns the commit."""
    work = mirrors.parent / "gitwork"
    bare = mirrors / repo.replace("/", "+") / "repo"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00",
        "GIT_COMMITTER_DATE": "2020-01-01T00:00:00",
    }
    for rel, b in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(b)
    git = ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(work)], check=True, env=env)
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "x"], check=True, env=env)
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    return subprocess.run(
        ["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def fixture_catalog(tmp_path_factory) -> dict:
    """Fixture originals, reserved lists, a git snapshot and the catalog that names them."""
    root = tmp_path_factory.mktemp("corpus_fixture")
    files = root / "files"
    orig: dict[str, bytes] = {}
    cam = {271: "Canon", 272: "Canon EOS 5D"}
    orig["cam/a444.jpg"] = _jpeg(make_image("real", 480, 1, w=640), files / "cam/a444.jpg", 0, cam)
    orig["cam/b420.jpg"] = _jpeg(make_image("real", 400, 2, w=520), files / "cam/b420.jpg", 2, cam)
    orig["cam/c420.jpg"] = _jpeg(make_image("real", 300, 3, w=300), files / "cam/c420.jpg", 2, cam)
    heif = pytest.importorskip("pillow_heif")
    heif.register_heif_opener()
    ex = Image.Exif()
    ex[271], ex[272] = "Apple", "iPhone 12"
    make_image("real", 200, 11, w=264).save(files / "cam/h.heic", "HEIF", exif=ex.tobytes())
    orig["cam/h.heic"] = (files / "cam/h.heic").read_bytes()
    orig["web/d.png"] = _png(make_image("real", 200, 4), files / "web/d.png")
    orig["ext/x.png"] = _png(make_image("real", 200, 12, w=240), files / "ext/x.png")
    orig["ai/e.png"] = _png(make_image("ai", 520, 5, w=600), files / "ai/e.png")
    orig["ai/f.png"] = _png(make_image("ai", 256, 6), files / "ai/f.png")
    orig["ai/tiny.png"] = _png(make_image("ai", 40, 7), files / "ai/tiny.png")
    orig["ai/reserved.png"] = _png(make_image("ai", 300, 8), files / "ai/reserved.png")
    (files / "ai2").mkdir()
    shutil.copy(files / "ai/f.png", files / "ai2/f_copy.png")
    orig["ai2/f_copy.png"] = orig["ai/f.png"]  # exact duplicate in another source
    e_img = Image.open(files / "ai/e.png").convert("RGB")
    orig["ai2/e_resaved.jpg"] = _jpeg(e_img, files / "ai2/e_resaved.jpg", 2)  # near duplicate
    reserved = root / "reserved"
    reserved.mkdir()
    (reserved / "reserved_sha256.txt").write_text(_sha(orig["ai/reserved.png"]) + "\n")
    (reserved / "reserved_repos_sha256.txt").write_text(
        hashlib.sha256(b"someone/reserved-repo").hexdigest() + "\n"
    )
    mirrors = root / "mirrors"
    mirrors.mkdir()
    git_files = {"gen/g1.png": _png(make_image("ai", 300, 9), root / "g1.png"), "README.md": b"x"}
    git_files["gen/g2.png"] = _png(make_image("ai", 288, 10), root / "g2.png")
    commit = _git_snapshot(mirrors, "Owner/Gallery", git_files)
    orig.update({f"git:{k}": v for k, v in git_files.items() if k.endswith(".png")})

    def local(name, label, glob, **kw):
        fam = kw.pop("family", "camera" if label == "real" else "sd1")
        return {"name": name, "label": label, "generator": kw.pop("generator", name), "family": fam,
                "licence": "CC0-1.0", "origin": {"kind": "local", "path": "files", "include": [glob]}, **kw}  # fmt: skip

    sources = [
        local("cam_canon", "real", "cam/*", camera=True, generator="Canon EOS 5D"),
        local("web_misc", "real", "web/*.png", family="web"),
        local("ext_check", "real", "ext/*", family="web", role="external"),
        local("gen_a", "ai", "ai/*", released=2025),
        local("gen_b", "ai", "ai2/*", family="gan", generator="SomeGAN"),
        {"name": "git_gallery", "label": "ai", "generator": "Gallery model", "family": "dit_flow", "licence": "MIT",
         "origin": {"kind": "github", "repo": "Owner/Gallery", "commit": commit, "include": ["gen/**"]}},
        {"name": "reserved_repo_src", "label": "ai", "generator": "x", "family": "sd1",
         "origin": {"kind": "github", "repo": "someone/reserved-repo", "commit": "0" * 40}},
    ]  # fmt: skip
    apt_why = _apt_ready()
    if apt_why is None:
        sources.append({"name": "deb_jqueryui", "label": "real", "generator": "UI icons", "family": "web",
                        "licence": "MIT", "origin": {"kind": "debian", "package": DEB[0], "version": DEB[1],
                                                    "include": [DEB_GLOB]}})  # fmt: skip
    have_taef2 = all(
        (TAEF2 / f).is_file() for f in ("taef2_encoder.safetensors", "taef2_decoder.safetensors")
    )
    build = {"patch": 128, "max_patches": 4, "min_split_originals": 1, "val_frac": 0.3, "test_frac": 0.2,
             "aligned_per_original": 1 if have_taef2 else 0, "synthetic_per_original": 1,
             "synthetic_families": ["tconv", "pixelshuffle"], "balance": False, "torch_threads": 1}  # fmt: skip
    cat = root / "catalog.yaml"
    generators = {"gen_a": {"aliases": ["Gallery model"]}}  # two sources, one generator
    cat.write_text(
        yaml.safe_dump({"version": 1, "build": build, "generators": generators, "sources": sources})
    )
    return {"root": root, "catalog": cat, "mirrors": mirrors, "reserved": reserved, "orig": orig,
            "files": files, "apt_why": apt_why, "taef2": have_taef2}  # fmt: skip


def _build(fx: dict, out: Path, *, background: bool = False) -> subprocess.Popen | dict:
    cmd = [
        sys.executable,
        "-m",
        "aivsreal",
        "data",
        "build",
        str(fx["catalog"]),
        "--mirrors",
        str(fx["mirrors"]),
    ]
    cmd += [
        "--out",
        str(out),
        "--downloads",
        str(fx["root"] / "downloads"),
        "--reserved",
        str(fx["reserved"]),
        "-q",
    ]
    if TAEF2.is_dir():
        cmd += ["--weights-dir", str(TAEF2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


def _tree(out: Path) -> dict[str, str]:
    """sha256 of every output file except the state folder and the timing log."""
    return {
        p.relative_to(out).as_posix(): _sha(p.read_bytes())
        for p in sorted(out.rglob("*"))
        if p.is_file() and "state" not in p.relative_to(out).parts and p.name != "build-log.json"
    }


@pytest.fixture(scope="module")
def built(fixture_catalog, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("corpus_a")
    report = _build(fixture_catalog, out)
    rows = list(csv.DictReader(open(out / "manifest.csv", newline="")))
    origs = list(csv.DictReader(open(out / "originals.csv", newline="")))
    return {"out": out, "report": report, "rows": rows, "origs": origs}


def test_catalog_accepts_fragment_format_and_names_bad_entries(tmp_path):
    good = {"sources": [{"name": "x_gpt", "label": "ai", "generator": "GPT-4o image", "family": "autoregressive",
                         "released": 2025, "licence": "MIT", "origin": {"kind": "github", "repo": "o/n", "commit": "a" * 40,
                         "include": ["images/*.png"], "exclude": []}, "files": 3, "evidence": "README"}]}  # fmt: skip
    cat = parse_catalog(good)
    assert cat.sources[0].role == "train" and cat.sources[0].origin.include == ["images/*.png"]
    bad = json.loads(json.dumps(good))
    bad["sources"][0]["family"] = "camera"
    with pytest.raises(CatalogError, match="x_gpt.*family"):
        parse_catalog(bad)
    gens = {"GPT Image": {"aliases": ["GPT-4o image"]}, "Mix": {"distinct": False}}
    cat = parse_catalog({**good, "generators": gens})
    assert cat.canonical_generator("gpt-4o  IMAGE") == ("GPT Image", True)
    assert cat.canonical_generator("Mix") == ("Mix", False) and cat.canonical_generator("New") == (
        "New",
        True,
    )
    with pytest.raises(CatalogError, match="GPT-4o image.*both"):
        parse_catalog({**good, "generators": {**gens, "Other": {"aliases": ["GPT-4o image"]}}})
    p = tmp_path / "c.yaml"
    p.write_text("sources: [")
    with pytest.raises(CatalogError, match="c.yaml"):
        load_catalog(p)
    assert glob_match("a/b.png", "a/**/b.png") and glob_match("a/x/y/b.png", "a/**/b.png")
    assert not glob_match("b/b.png", "a/**")


def test_plan_boxes_grid():
    boxes = plan_boxes(4000, 3000, 256, 16, (16, 16))
    assert len(boxes) == 16
    assert all(x % 16 == 0 and y % 16 == 0 and w == h == 256 for x, y, w, h in boxes)
    for i, a in enumerate(boxes):  # non-overlapping, inside the image
        assert a[0] + a[2] <= 4000 and a[1] + a[3] <= 3000
        for b in boxes[i + 1 :]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
    assert plan_boxes(100, 90, 256, 16) == [(0, 0, 100, 90)]
    assert jpegtran()


def test_hashes_and_statuses(built, fixture_catalog):
    rep, origs = built["report"], built["origs"]
    by_sha = {o["sha256"]: o for o in origs}
    fx = fixture_catalog["orig"]
    for rel, b in fx.items():
        if rel != "ai/reserved.png":
            assert _sha(b) in by_sha, rel  # every original hashed as fetched (git blobs included)
    assert _sha(fx["ai/reserved.png"]) not in by_sha  # reserved ones are counted, not listed
    assert rep["reserved_skipped"]["files"] == 1 and rep["reserved_skipped"]["repositories"] == 1
    assert rep["reserved_skipped"]["repository_sources"] == ["reserved_repo_src"]
    st = {o["origin"].rsplit("/", 1)[-1]: o["status"] for o in origs if o["origin"].startswith("local:")}
    assert st["tiny.png"] == "too_small"
    assert st["f_copy.png"] == "duplicate" and st["f.png"] == "ok"
    assert st["e_resaved.jpg"] == "near_duplicate" and st["e.png"] == "ok"
    assert rep["duplicates_dropped"]["exact"] == 1 and rep["duplicates_dropped"]["near_across_sources"] >= 1
    assert not any(r["orig_sha256"] == _sha(fx["ai/reserved.png"]) for r in built["rows"])
    assert rep["camera_originals"] == 4 and rep["camera_models"] == 2 and rep["heic_originals"] == 1
    for k in (
        "ai_originals",
        "real_originals",
        "ai_sources",
        "real_sources",
        "ai_generators",
        "gan_generators",
        "patches",
    ):
        assert isinstance(rep[k], int)
    assert rep["partial"] is False and "shortcut_check" in rep
    # the catalog's generator table merges git_gallery's "Gallery model" into gen_a: one generator, not
    # two (gen_b's originals are all duplicates, so SomeGAN has none kept)
    assert rep["ai_generators"] == 1 and rep["gan_generators"] == 0
    assert rep["ai_generator_list"]["gen_a"]["as_named"] == ["Gallery model", "gen_a"]
    assert rep["ai_generator_list"]["gen_a"]["sources"] == ["gen_a", "git_gallery"]


def test_patches_lossless_and_stripped(built, fixture_catalog):
    out, rows = built["out"], built["rows"]
    src_of = {_sha(b): b for b in fixture_catalog["orig"].values()}
    checked = 0
    for r in rows:
        if r["kind"] != "original" or r["orig_sha256"] not in src_of:  # (Debian files: see their own test)
            continue
        data = (out / r["path"]).read_bytes()
        x, y, w, h = map(int, r["box"].split(","))
        orig = Image.open(io.BytesIO(src_of[r["orig_sha256"]]))
        with Image.open(io.BytesIO(data)) as p:
            assert p.size == (w, h) and w <= 128 and h <= 128
            if r["orig_format"] == "JPEG":
                assert p.format == "JPEG" and not p.getexif() and b"Exif" not in data[:2048]
                a = np.asarray(p.convert("RGB"), dtype=int)
                b = np.asarray(orig.convert("RGB"), dtype=int)[y : y + h, x : x + w]
                if orig.layer[0][1] == 1:  # 4:4:4: every pixel equal
                    assert np.array_equal(a, b), r["path"]
                else:  # 4:2:0: equal inside; the border pixel's chroma up-sampling reads outside the crop
                    assert np.array_equal(a[1:-1, 1:-1], b[1:-1, 1:-1]), r["path"]
                checked += 1
            else:
                assert p.format == "PNG" and not p.text and "icc_profile" not in p.info
                a = np.asarray(p.convert("RGB"))
                assert np.array_equal(a, np.asarray(orig.convert("RGB"))[y : y + h, x : x + w])
    assert checked >= 6
    n = {r["orig_sha256"] for r in rows if r["source"] == "cam_canon"}
    assert len(n) == 4
    big = [r for r in rows if r["source"] == "cam_canon" and r["orig_size"] == "640x480"]
    assert len(big) == 4  # several non-overlapping patches from a big original (max_patches 4)


def test_grouping_and_fakes(built, fixture_catalog):
    rows = built["rows"]
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(v) == 1 for v in by_group.values())  # a group (and its fakes) never straddles splits
    real_tv = {r["group"] for r in rows if r["label"] == "real" and r["split"] in ("train", "val")}
    for fam in ("synthetic_tconv", "synthetic_pixelshuffle") + (
        ("aligned_taef2",) if fixture_catalog["taef2"] else ()
    ):
        fk = [r for r in rows if r["source"] == fam]
        assert {r["group"] for r in fk} == real_tv, fam  # every real train/val original has its fake
        assert all(r["label"] == "ai" and r["path"].endswith(".png") for r in fk)
    assert not any(r["kind"] != "original" and r["split"] == "test" for r in rows)
    from aivsreal.data import load_dataset

    ds = load_dataset(built["out"] / "manifest.csv", dedupe=False)
    assert {s.split for s in ds.samples} <= {"train", "val", "test"} and len(ds.samples) == len(rows)


def test_debian_origin(built, fixture_catalog):
    if fixture_catalog["apt_why"]:
        pytest.skip(fixture_catalog["apt_why"])
    ps = built["report"]["per_source"]["deb_jqueryui"]
    assert ps["origin"] == f"debian:{DEB[0]}={DEB[1]}" and ps["originals"] >= 1
    assert ps["skipped"].get("too_small", 0) >= 1  # the 40×100 backgrounds
    origs = [o for o in built["origs"] if o["source"] == "deb_jqueryui"]
    deb_root = next((fixture_catalog["root"] / "downloads" / "debian").iterdir()) / "root"
    for o in origs:
        rel = o["origin"].split(":", 2)[-1]
        assert _sha((deb_root / rel).read_bytes()) == o["sha256"]


def test_rerun_identical_and_resume_after_kill(built, fixture_catalog, tmp_path):
    first = _tree(built["out"])
    again = _build(fixture_catalog, built["out"])  # idempotent: a finished build re-run changes nothing
    assert again == built["report"] and _tree(built["out"]) == first
    out = tmp_path / "killed"
    proc = _build(fixture_catalog, out, background=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and proc.poll() is None:
        done = list((out / "state" / "cut").rglob("*.json")) if (out / "state" / "cut").is_dir() else []
        if len(done) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    assert not (out / "report.json").exists()
    _build(fixture_catalog, out)
    assert _tree(out) == first  # resumed build = clean build, byte for byte


def test_external_sources_keep_whole_originals(built, fixture_catalog):
    ext = list(csv.DictReader(open(built["out"] / "external.csv", newline="")))
    assert [r["source"] for r in ext] == ["ext_check"]
    data = (built["out"] / ext[0]["path"]).read_bytes()
    assert data == fixture_catalog["orig"]["ext/x.png"]  # the original as fetched, not a patch
    assert not any(r["source"] == "ext_check" for r in built["rows"])
    assert built["report"]["external_check_set"]["originals"] == 1


def test_probe_keeps_camera_tags_and_drops_comfyui_workflows_stored_in_them():
    """ComfyUI saves its workflow JSON in the EXIF Make/Model of WebP files: that is no camera."""

    def webp(make: str, model: str) -> bytes:
        exif = Image.Exif()
        exif[271], exif[272] = make, model
        buf = io.BytesIO()
        make_image("ai", 64).save(buf, "WEBP", exif=exif.tobytes())
        return buf.getvalue()

    p = probe(webp('workflow:{"id": "52b9", "nodes": []}', 'prompt:{"6": {"inputs": {}}}'))
    assert (p.make, p.model) == ("", "")
    p = probe(webp("Canon", "Canon EOS 1300D"))
    assert (p.make, p.model) == ("Canon", "Canon EOS 1300D")
