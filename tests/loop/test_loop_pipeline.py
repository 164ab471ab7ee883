"""The loop as a DVC pipeline: `dvc repro` runs refine and select after archive; edited QuPath
files in corrections/<dataset>/round_1/ make the next `dvc repro` rebuild the dataset with them,
retrain and archive a model whose card names the round and the corrections."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from toy_workspace import env, pipeline_workspace, sh

from autoscope.demo_loop import annotate
from autoscope.slides.synth import make_synthetic_slide

RECIPE = """\
defaults:
  - config
  - override dataset: demo_tissue
  - override model: tiny_cnn
  - _self_

slides:
  sources: ['data/demo/raw/synthetic']

dataset:
  max_patches_per_slide: 60
  split:
    fractions: {train: 0.34, val: 0.33, test: 0.33}

model:
  input_px: null

trainer:
  max_epochs: 1
  max_minutes: 1.0
  sample_grid: 8

archive:
  thresholds:
    min: {val/acc: null}    # a one-epoch toy fit need not clear the bar

select:
  budget: 6
  per_slide_cap: 3
  candidates_per_slide: 60
"""


def _raw(root: Path) -> None:
    raw = root / "data" / "demo" / "raw" / "synthetic"
    for i in range(3):
        make_synthetic_slide(raw / f"slide_{i:03d}.tif", seed=i, width_px=2048, height_px=1536)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("loopdvc")
    return pipeline_workspace(base, "tiny", RECIPE, _raw, "refine@tiny", "select@tiny")


def test_dvc_repro_runs_the_loop_and_a_correction_round(ws: Path) -> None:
    pipe = yaml.safe_load((ws / "pipeline.yaml").read_text())
    model = pipe["loops"]["tiny"]["model"]
    out = ws / "outputs" / "demo" / "loop"
    refine1 = out / "refine" / "demo_tissue" / "round_1"
    select1 = out / "select" / "demo_tissue" / "round_1"
    assert (refine1 / "summary.json").is_file() and (refine1 / "queue.csv").is_file()
    regions = sorted(select1.glob("*.geojson"))
    assert regions and (select1 / "sheet.png").is_file()
    doc = json.loads(regions[0].read_text())
    assert doc["autoscope"]["kind"] == "select" and doc["autoscope"]["width"] == 2048
    assert (ws / "corrections" / "demo_tissue" / "README.md").is_file()
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    deps = [d["path"] for d in lock["stages"]["dataset@demo-demo_tissue"]["deps"]]
    assert "corrections/demo_tissue" in deps

    sh("git", "add", "-A", cwd=ws)
    sh("git", "commit", "-qm", "loop round 1 queues", cwd=ws)

    # the annotator labels the selected regions in QuPath and drops them in round_1/
    done = ws / "corrections" / "demo_tissue" / "round_1"
    counts = annotate(select1, done, ws / "data/demo/raw/synthetic", "dr_sato")
    assert counts["label"] + counts["delete"] == sum(
        len(json.loads(p.read_text())["features"]) for p in regions
    )
    status = sh("dvc", "status", "dataset@demo-demo_tissue", cwd=ws)
    assert "corrections/demo_tissue" in status  # the new round is a changed dependency
    sh("dvc", "repro", "refine@tiny", cwd=ws)

    lineage = json.loads((ws / "data/demo/datasets/demo_tissue/lineage.json").read_text())
    assert lineage["round"] == 1 and lineage["queues"] == ["select round 1"]
    assert lineage["by_author"] == {"dr_sato": sum(lineage["by_kind"].values())}
    assert lineage["by_kind"].get("add", 0) >= counts["label"]
    versions = sorted((ws / "outputs/demo/models" / model).glob("v*"))
    assert [v.name for v in versions] == ["v1", "v2"]
    card = json.loads((versions[-1] / "metadata.json").read_text())
    assert card["lineage"]["round"] == 1 and card["lineage"]["dataset"] == "demo_tissue"
    assert card["lineage"]["queues"] == ["select round 1"]
    assert "lineage" not in json.loads((versions[0] / "metadata.json").read_text())
    assert (out / "refine" / "demo_tissue" / "round_2" / "summary.json").is_file()
    assert refine1.is_dir()  # earlier rounds stay (persist)

    # the previous version, from the DVC cache at the last commit, against the corrected one
    diff = sh("autoscope", "dataset", "diff", "tiny", "demo_tissue@HEAD", "demo_tissue", cwd=ws)
    added = lineage["by_kind"]["add"]
    assert f"+{added} added, -0 removed" in diff and "dr_sato" in diff, diff
    assert "corrections (round 1" in diff
    bad = subprocess.run(
        ["autoscope", "dataset", "diff", "tiny", "demo_tissue@nosuchrev", "demo_tissue"],
        cwd=ws,
        env=env(),
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "at revision nosuchrev" in bad.stderr
