"""`dataset build` end to end on ingested synthetic slides: storage contract, version, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autoscope.config import stores_spec
from autoscope.datasets import store
from autoscope.datasets.store import dataset_version, load_split, read_manifest
from autoscope.errors import UserError
from autoscope.slides.reader import open_reader
from autoscope.slides.registry import load_registry
from autoscope.stages.dataset import build as build_dataset


def dataset_dir(cfg, name: str | None = None) -> Path:
    """The folder of dataset `name` (default: the one the config selects)."""
    return store.dataset_dir(stores_spec(cfg), name or cfg.dataset.name)


def datasets_using_slide(cfg, slide_id: str) -> list[str]:
    return store.datasets_using_slide(stores_spec(cfg), slide_id)


CONTRACT = [
    "patch_id",
    "slide_id",
    "slide",
    "x",
    "y",
    "pyramid_level",
    "mpp",
    "patch_px",
    "label",
    "label_idx",
    "label_level",
    "split",
    "group",
    "shard",
    "index",
]


@pytest.fixture(scope="module")
def built(base_workspace, tmp_path_factory):
    """The demo_tissue dataset built once in a private copy of the workspace."""
    import shutil

    root = tmp_path_factory.mktemp("built") / "ws"
    shutil.copytree(base_workspace.root, root)
    ws = type(base_workspace)(root, base_workspace.raw)
    cfg = ws.cfg()
    return ws, cfg, build_dataset(cfg)


def test_manifest_and_shards_follow_the_contract(built) -> None:
    ws, cfg, result = built
    d = dataset_dir(cfg)
    assert d == Path(cfg.paths.data) / "datasets" / "demo_tissue" and result["dir"] == str(d)
    m = read_manifest(d)
    assert list(m.columns[: len(CONTRACT)]) == CONTRACT
    assert len(m) == result["patches"] > 100 and m["patch_id"].is_unique
    assert set(m["label"]) == {"tumor", "stroma"} and set(m["label_level"]) == {"tissue"}
    assert (m["mpp"] == 1.0).all() and (m["patch_px"] == 64).all()
    assert (m["pyramid_level"] == 1).all()  # 0.5 um/px slides: level 1 is 1.0 um/px
    shards = sorted((d / "shards").glob("*.npy"))
    assert len(shards) == 1
    arr = np.load(shards[0], mmap_mode="r")
    assert arr.dtype == np.uint8 and arr.shape == (len(m), 64, 64, 3)
    reg = load_registry(stores_spec(cfg)).set_index("slide_id")
    for row in m.sample(5, random_state=0).itertuples():  # pixels are the slide's, at (x, y)
        with open_reader(reg.loc[row.slide_id, "path"]) as r:
            assert np.array_equal(arr[row.index], r.read_patch(row.x, row.y, 1.0, 64))


def test_splits_by_slide_without_leakage(built) -> None:
    _, cfg, result = built
    m = read_manifest(dataset_dir(cfg))
    assert set(m["split"]) == {"train", "val", "test"}
    assert (m.groupby("slide")["split"].nunique() == 1).all()
    assert (m["group"] == m["slide"]).all()
    assert result["splits"] == m["split"].value_counts().to_dict()
    images, labels = load_split(dataset_dir(cfg), "val")
    val = m[m["split"] == "val"]
    assert images.shape == (len(val), 64, 64, 3) and labels.tolist() == val["label_idx"].tolist()


def test_stats_report_and_views(built, capsys) -> None:
    ws, cfg, result = built
    d = dataset_dir(cfg)
    stats = json.loads((d / "stats.json").read_text())
    assert stats["patches"] == result["patches"] and sum(stats["by_class"].values()) == len(
        read_manifest(d)
    )
    assert set(stats["by_slide"]) <= {f"slide_{i:03d}" for i in range(4)}
    assert len(stats["colour"]["mean"]) == 3 and all(0 < v < 1 for v in stats["colour"]["std"])
    report = (d / "report" / "report.md").read_text()
    for pic in ("montage_tumor.png", "montage_stroma.png", "class_distribution.png"):
        assert pic in report and (d / "report" / pic).stat().st_size > 1000
    from autoscope.stages.dataset import list_view, show_view

    list_view(cfg, [])
    show_view(cfg, [])
    out = capsys.readouterr().out
    assert "demo_tissue" in out and result["version"] in out and "report.md" in out


def test_version_is_the_dvc_hash_and_is_reproducible(built, tmp_path) -> None:
    _, cfg, result = built
    d = dataset_dir(cfg)
    assert result["version"] == dataset_version(d) and result["version"].endswith(".dir")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    import shutil

    shutil.copytree(d, repo / "ds")
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(dvc + ["add", "ds", "-q"], cwd=repo, check=True, env=env)
    assert f"md5: {result['version']}" in (repo / "ds.dvc").read_text()


def test_rebuild_same_version_and_diff(workspace, capsys) -> None:
    cfg = workspace.cfg()
    first = build_dataset(cfg)
    again = build_dataset(workspace.cfg("dataset.workers=2"))  # parallel reader: same bytes
    assert again["version"] == first["version"]
    import shutil

    shutil.copytree(dataset_dir(cfg), dataset_dir(cfg).with_name("old"))
    smaller = build_dataset(workspace.cfg("dataset.max_patches_per_slide=20"))
    assert smaller["version"] != first["version"]
    from autoscope.datasets.diff import diff_datasets
    from autoscope.stages.dataset import diff_view

    d = diff_datasets(dataset_dir(cfg, "old"), dataset_dir(cfg))
    assert d["removed"] == first["patches"] - smaller["patches"] + d["added"]
    assert d["kept"] + d["added"] == smaller["patches"]
    assert (
        sum(v["change"] for v in d["class_counts"].values())
        == smaller["patches"] - first["patches"]
    )
    diff_view(cfg, ["old", "demo_tissue"])
    assert "removed" in capsys.readouterr().out
    sid = read_manifest(dataset_dir(cfg))["slide_id"].iloc[0]
    assert datasets_using_slide(cfg, sid) == ["demo_tissue", "old"]
    assert datasets_using_slide(cfg, "0" * 16) == []


def _nothing_half_written(cfg, before: dict[str, float]) -> None:
    root = Path(cfg.paths.data) / "datasets"
    leftovers = [p.name for p in root.iterdir() if ".tmp-" in p.name] if root.exists() else []
    assert leftovers == []
    after = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}
    assert {k: v for k, v in after.items() if ".versions" not in k} == {
        k: v for k, v in before.items() if ".versions" not in k
    }


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ("outside", r"slide_001.geojson: feature 0 .* lies outside the slide"),
        ("unknown", r"slide_001.geojson: feature 0 .*unknown class 'Necrosis'"),
        ("bowtie", r"slide_001.geojson: feature 0 .*invalid polygon: Self-intersection"),
        ("empty", r"slide_001.geojson: feature 0 .*(empty polygon|has 0 distinct vertices)"),
        ("malformed", r"slide_001.geojson: malformed GeoJSON"),
        ("no_slide", r"slide_009.geojson: slide 'slide_009' is not in the registry"),
    ],
)
def test_bad_annotations_fail_with_one_line_and_keep_the_old_version(workspace, edit, needle):
    cfg = workspace.cfg()
    build_dataset(cfg)
    root = Path(cfg.paths.data) / "datasets"
    before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}
    geo = workspace.root / "data/demo/raw/synthetic/slide_001.geojson"
    doc = json.loads(geo.read_text())
    feat = doc["features"][0]
    if edit == "outside":
        feat["geometry"]["coordinates"][0][1] = [5000.0, 10.0]
    elif edit == "unknown":
        feat["properties"]["classification"]["name"] = "Necrosis"
    elif edit == "bowtie":
        feat["geometry"]["coordinates"] = [[[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]]
    elif edit == "empty":
        feat["geometry"]["coordinates"] = [[]]
    if edit == "malformed":
        geo.write_text(json.dumps(doc)[:-20])
    elif edit == "no_slide":
        geo.rename(geo.with_name("slide_009.geojson"))
    else:
        geo.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=needle) as e:
        build_dataset(cfg)
    assert "\n" not in str(e.value)
    _nothing_half_written(cfg, before)


def test_cli_bad_input_exits_non_zero_with_one_line(workspace) -> None:
    geo = workspace.root / "data/demo/raw/synthetic/slide_002.geojson"
    doc = json.loads(geo.read_text())
    doc["features"][0]["properties"]["classification"]["name"] = "Necrosis"
    geo.write_text(json.dumps(doc))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autoscope.cli",
            "dataset",
            "build",
            "demo",
            f"paths.workspace={workspace.root}",
            "dataset=demo_tissue",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "unknown class 'Necrosis'" in err[0] and "slide_002.geojson" in err[0]
    assert not (workspace.root / "data/demo/datasets/demo_tissue").exists()


def test_class_map_renames_and_drops(workspace) -> None:
    geo = workspace.root / "data/demo/raw/synthetic/slide_000.geojson"
    doc = json.loads(geo.read_text())
    for f in doc["features"]:
        c = f["properties"]["classification"]
        c["name"] = {"tumor": "Tumour", "stroma": "Other"}[c["name"]]
    geo.write_text(json.dumps(doc))
    res = build_dataset(workspace.cfg("+dataset.class_map={Tumour: tumor, Other: null}"))
    m = read_manifest(Path(res["dir"]))
    assert set(m.loc[m["slide"] == "slide_000", "label"]) == {"tumor"}


def test_split_by_patient_uses_the_registry_column(workspace) -> None:
    res = build_dataset(workspace.cfg("dataset.split.by=patient"))
    m = read_manifest(Path(res["dir"]))
    assert (m.groupby("group")["split"].nunique() == 1).all()
    assert set(m.loc[m["slide"].isin(["slide_000", "slide_001"]), "group"]) == {"P1"}
    assert m.loc[m["slide"].isin(["slide_000", "slide_001"]), "split"].nunique() == 1
    with pytest.raises(UserError, match="registry has no 'site' column"):
        build_dataset(workspace.cfg("dataset.split.by=group", "dataset.split.column=site"))


def test_points_give_cell_patches_and_keep_the_points(workspace) -> None:
    pts = workspace.root / "points"
    pts.mkdir()
    (pts / "slide_000.csv").write_text("x,y,class\n300,400,tumor\n5,5,stroma\n1000,700,stroma\n")
    feats = [
        {
            "type": "Feature",
            "geometry": {"type": "MultiPoint", "coordinates": [[600, 600], [900, 500]]},
            "properties": {"classification": {"name": "tumor"}},
        }
    ]
    (pts / "slide_003.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": feats})
    )
    res = build_dataset(
        workspace.cfg(
            f"dataset.sources=[{{type: points, path: {pts}}}]",
            "dataset.name=cells",
            "dataset.split.fractions={train: 0.5, val: 0.5, test: 0.0}",
        )
    )
    d = Path(res["dir"])
    m = read_manifest(d)
    assert len(m) == 5 and set(m["label_level"]) == {"cell"}
    corner = m[m["point_x"] == 5].iloc[0]
    assert (corner.x, corner.y) == (0, 0)  # near the edge: shifted inside the slide
    centred = m[m["point_x"] == 300].iloc[0]
    assert (centred.x, centred.y) == (300 - 64, 400 - 64)  # 64 px at 1 um/px = 128 level-0 px
    assert len(pd.read_parquet(d / "points.parquet")) == 5


def test_slide_labels_from_a_registry_column(workspace) -> None:
    src = "dataset.sources=[{type: slide_labels, column: diagnosis}]"
    res = build_dataset(
        workspace.cfg(src, "dataset.name=organ", "dataset.max_patches_per_slide=15")
    )
    m = read_manifest(Path(res["dir"]))
    assert set(m["label_level"]) == {"organ"}
    assert m.groupby("slide").size().max() <= 15
    assert set(m.loc[m["slide"] == "slide_001", "label"]) == {"stroma"}
    with pytest.raises(UserError, match="'nope' is not a registry column"):
        build_dataset(workspace.cfg("dataset.sources=[{type: slide_labels, column: nope}]"))


def _to_asap(geojson: Path, out: Path) -> None:
    doc = json.loads(geojson.read_text())
    parts = ["<ASAP_Annotations><Annotations>"]
    for i, f in enumerate(doc["features"]):
        ring = f["geometry"]["coordinates"][0][:-1]
        cls = f["properties"]["classification"]["name"]
        coords = "".join(
            f'<Coordinate Order="{j}" X="{x}" Y="{y}"/>' for j, (x, y) in enumerate(ring)
        )
        parts.append(
            f'<Annotation Name="a{i}" Type="Polygon" PartOfGroup="{cls}">'
            f"<Coordinates>{coords}</Coordinates></Annotation>"
        )
    out.write_text("".join(parts) + "</Annotations></ASAP_Annotations>")


def test_asap_xml_with_an_explicit_slide_mapping_matches_the_geojson(workspace) -> None:
    raw = workspace.root / "data/demo/raw/synthetic"
    xml = workspace.root / "case-17.xml"
    _to_asap(raw / "slide_002.geojson", xml)
    one = "dataset.split.fractions={train: 1.0, val: 0.0, test: 0.0}"
    a = build_dataset(
        workspace.cfg(
            f"dataset.sources=[{{type: xml, files: {{slide_002: {xml}}}}}]", "dataset.name=x", one
        )
    )
    b = build_dataset(
        workspace.cfg(
            f"dataset.sources=[{{type: geojson, path: {raw / 'slide_002.geojson'}}}]",
            "dataset.name=g",
            one,
        )
    )
    ma, mb = read_manifest(Path(a["dir"])), read_manifest(Path(b["dir"]))
    assert len(ma) > 0 and set(ma["slide"]) == {"slide_002"}
    assert ma[["x", "y", "label"]].equals(mb[["x", "y", "label"]])


def test_a_minimal_dataset_yaml_gets_the_defaults(workspace, tmp_path) -> None:
    from autoscope.config import compose

    recipe = tmp_path / "mini.yaml"
    recipe.write_text(
        "defaults: [config, _self_]\n"
        "dataset:\n  name: mini\n  patch_px: 32\n"
        "  sources: [{type: geojson,\n"
        "             glob: '${paths.workspace}/data/demo/raw/synthetic/*.geojson'}]\n"
    )
    res = build_dataset(
        compose(str(recipe), [f"paths.workspace={workspace.root}"], "dataset_build")
    )
    m = read_manifest(Path(res["dir"]))
    assert (m["patch_px"] == 32).all() and (m["mpp"] == 1.0).all()  # mpp = project.target_mpp
    assert set(m["split"]) == {"train", "val", "test"}
    with pytest.raises(UserError, match="no dataset selected"):
        build_dataset(compose("demo", [f"paths.workspace={workspace.root}", "dataset=none"]))


def test_dvc_add_into_the_workspace_repo(workspace) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    cfg = workspace.cfg("dataset.dvc_add=true")
    with pytest.raises(UserError, match="not a DVC repo"):
        build_dataset(cfg)
    assert not dataset_dir(cfg).exists()  # checked before anything is written
    subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"],
        cwd=workspace.root,
        check=True,
        env=env,
    )
    res = build_dataset(cfg)
    dvc_file = Path(res["dir"]).with_name("demo_tissue.dvc")
    assert f"md5: {res['version']}" in dvc_file.read_text()


def test_views_through_the_cli(built, capsys) -> None:
    from autoscope.cli import main

    ws, cfg, result = built
    over = [f"paths.workspace={ws.root}"]
    assert main(["dataset", "list", "demo", *over]) == 0
    rc = main(["dataset", "show", "demo", *over, "demo_tissue", "--json"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    shown = json.loads(out[out.index("{") :])
    assert shown["version"] == result["version"] and shown["patches"] == result["patches"]
    assert main(["dataset", "diff", "demo", "demo_tissue", "demo_tissue", *over]) == 0
    assert "+0 added, -0 removed" in capsys.readouterr().out
    assert main(["dataset", "diff", "demo", "demo_tissue", *over]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "required: b" in err[0]
