"""Layouts, label aliases, group-aware splits without leakage, duplicates and shortcut warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest
from helpers import make_dataset, make_image, save

from aivsreal.data import AI, REAL, DataError, Sample, load_dataset, parse_label, shortcut_score, summarize


@pytest.mark.parametrize(
    "name,label",
    [
        ("real", REAL),
        ("Human", REAL),
        ("AUTHENTIC", REAL),
        ("0_real", REAL),
        ("fake", AI),
        ("AI", AI),
        ("Generated", AI),
        ("synthetic", AI),
        ("1_fake", AI),
        ("cats", None),
    ],
)
def test_label_aliases_case_insensitive(name, label):
    assert parse_label(name) == label


@pytest.mark.parametrize(
    "layout,expected_layout",
    [
        ("class_folders", "class_folders"),
        ("aliases", "class_folders"),
        ("split_folders", "split_folders"),
        ("cifake", "cifake"),
        ("kaggle_csv", "kaggle_csv"),
        ("manifest", "manifest_csv"),
    ],
)
def test_layouts_are_detected_with_labels_and_splits(tmp_path, layout, expected_layout):
    path = make_dataset(tmp_path / layout, layout, n=10, size=40)
    ds = load_dataset(path)
    assert ds.layout == expected_layout
    assert len(ds.samples) == 20
    labels = defaultdict(int)
    for s in ds.samples:
        labels[s.label] += 1
        assert s.split in ("train", "val", "test")
    assert labels == {REAL: 10, AI: 10}
    # file names tell the true class in every layout: real files were written from "real" images
    by_path = {s.path: s.label for s in ds.samples}
    if layout == "class_folders":
        assert all(("/ai/" in p) == (lab == AI) for p, lab in by_path.items())
        assert {s.source for s in ds.samples} == {"src_a", "src_b"}
    if layout == "split_folders":
        assert {s.split for s in ds.samples} == {"train", "val", "test"}
    if layout == "cifake":  # train/test given: val is carved from train, test kept
        assert {s.split for s in ds.samples} == {"train", "val", "test"}
        assert all(s.split == "test" for s in ds.samples if "/test/" in s.path)


def test_kaggle_csv_label_one_is_ai(tmp_path):
    path = make_dataset(tmp_path, "kaggle_csv", n=6, size=40)
    rows = path.read_text().splitlines()[1:]
    ds = load_dataset(path)
    by_name = {s.path.rsplit("/", 1)[1]: s.label for s in ds.samples}
    for r in rows:
        _, rel, lab = r.split(",")
        assert by_name[rel.rsplit("/", 1)[1]] == int(lab)


def test_group_split_keeps_groups_together_and_is_seeded(tmp_path):
    path = make_dataset(tmp_path, "manifest", n=30, size=40)
    a = load_dataset(path, seed=3, dedupe=False)
    b = load_dataset(path, seed=3, dedupe=False)
    c = load_dataset(path, seed=4, dedupe=False)
    splits = defaultdict(set)
    for s in a.samples:
        splits[s.group].add(s.split)
    assert all(len(v) == 1 for v in splits.values()), "a group straddles splits"
    assert [s.split for s in a.samples] == [s.split for s in b.samples]
    assert [s.split for s in a.samples] != [s.split for s in c.samples]
    counts = defaultdict(int)
    for s in a.samples:
        counts[s.split] += 1
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_near_duplicates_are_kept_in_one_split(tmp_path):
    # 12 distinct originals per class, each saved twice: PNG and a re-encoded JPEG copy
    for kind in ("real", "ai"):
        for i in range(12):
            img = make_image(kind, 64, seed=i * 7 + (kind == "ai") * 500)
            save(img, tmp_path / kind / f"{i}.png")
            save(img, tmp_path / kind / f"{i}_copy.jpg")
    ds = load_dataset(tmp_path, seed=1)
    where = {s.path.rsplit("/", 1)[1]: s.split for s in ds.samples}
    for _kind in ("real", "ai"):
        for i in range(12):
            assert where[f"{i}.png"] == where[f"{i}_copy.jpg"]


def test_shortcut_warning_when_format_separates_classes(tmp_path):
    mixed = make_dataset(tmp_path / "mixed", "class_folders", n=12, size=40, same_format=False)
    sm = summarize(load_dataset(mixed))
    assert sm.formats["real"] == {"JPEG": 12} and sm.formats["ai"] == {"PNG": 12}
    assert sm.shortcut_scores["format"] == 1.0
    assert any("SHORTCUT" in w and "format" in w for w in sm.warnings)
    fair = make_dataset(tmp_path / "fair", "class_folders", n=12, size=40, same_format=True)
    sm2 = summarize(load_dataset(fair))
    assert sm2.shortcut_scores["format"] == 0.5
    assert not any("SHORTCUT" in w for w in sm2.warnings)


def test_shortcut_score_hand_computed():
    # key A: 3 real, 1 ai; key B: 1 real, 3 ai → rule A→real, B→ai is right 6 of 8, per class 3/4
    keys = ["A", "A", "A", "B", "A", "B", "B", "B"]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    assert shortcut_score(keys, labels) == pytest.approx(0.75)


def test_summary_reports_undecodable_files(tmp_path):
    root = make_dataset(tmp_path, "class_folders", n=6, size=40)
    (root / "real" / "src_a" / "broken.png").write_bytes(b"not an image at all")
    sm = summarize(load_dataset(root))
    assert len(sm.undecodable) == 1 and sm.undecodable[0]["path"].endswith("broken.png")
    assert sm.counts["train"]["real"] + sm.counts["val"]["real"] + sm.counts["test"]["real"] == 7


def test_data_summary_cli_json_and_errors(tmp_path):
    root = make_dataset(tmp_path / "d", "class_folders", n=6, size=40, same_format=False)
    out = subprocess.run(
        [sys.executable, "-m", "aivsreal", "data", "summary", str(root), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(out.stdout)
    assert d["layout"] == "class_folders" and d["shortcut_scores"]["format"] == 1.0
    bad = subprocess.run(
        [sys.executable, "-m", "aivsreal", "data", "summary", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_empty_collection_is_a_clear_error(tmp_path):
    (tmp_path / "cats").mkdir()
    save(make_image("real", 32), tmp_path / "cats" / "a.png")
    with pytest.raises(DataError, match="no labelled images"):
        load_dataset(tmp_path)


def test_sample_group_defaults_to_path():
    assert Sample("/x/a.png", 1).group == "/x/a.png"
