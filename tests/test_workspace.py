"""A real git + DVC workspace from `autoscope init`: repro, params, experiments, push and pull.

One small recipe (4 synthetic slides, the tiny CNN, one epoch) is put on the pipeline, and the
pipeline is run up to `train` (archive/package/infer run in the demo and their own tests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from toy_workspace import BIN, sh

from autoscope.slides.registry import load_registry
from autoscope.slides.synth import make_synthetic_slide

RECIPE = """\
defaults:
  - config
  - override dataset: demo_tissue
  - override model: tiny_cnn
  - _self_

slides:
  sources: ['data/demo/raw/synthetic']
  metadata: data/demo/raw/metadata.csv

dataset:
  max_patches_per_slide: 60

model:
  input_px: null

trainer:
  max_epochs: 1
  max_minutes: 1.0
  sample_grid: 8
"""
PATIENTS = {"slide_000": "P1", "slide_001": "P1", "slide_002": "P2", "slide_003": "P3"}


def _raw(root: Path) -> None:
    raw = root / "data" / "demo" / "raw" / "synthetic"
    for i, name in enumerate(sorted(PATIENTS)):
        make_synthetic_slide(raw / f"{name}.tif", seed=i, width_px=2048, height_px=1536)
    lines = ["slide,patient"] + [f"{s},{p}" for s, p in sorted(PATIENTS.items())]
    (raw.parent / "metadata.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the `tiny` recipe on its pipeline, raw slides `dvc add`-ed, repro'd."""
    base = tmp_path_factory.mktemp("workspace")
    root, remote = base / "ws", base / "remote"
    out = sh(str(BIN / "autoscope"), "init", str(root), "--remote", str(remote), cwd=base)
    assert "git repository" in out and "DVC remote 'storage'" in out
    (root / "recipes" / "tiny.yaml").write_text(RECIPE)
    out = sh("autoscope", "pipeline", "add", "tiny", cwd=root)
    assert "train@tiny (one training run)" in out
    _raw(root)
    sh("dvc", "add", "data/demo/raw", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "tiny recipe and its slides", cwd=root)
    sh("dvc", "repro", "train@tiny", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "first run", cwd=root)
    return root


def test_init_makes_a_git_dvc_workspace(ws: Path) -> None:
    for f in ("dvc.yaml", "pipeline.yaml", ".gitignore", ".dvcignore", "recipes/tiny.yaml"):
        assert (ws / f).is_file(), f
    assert "storage" in sh("dvc", "remote", "list", cwd=ws)
    text = (ws / "recipes" / "tiny.yaml").read_text()
    assert "infer: {}" in text and "slides:" in text  # the stage blocks the pipeline tracks
    assert sh("git", "status", "--porcelain", cwd=ws).strip() == ""  # outputs ignored or tracked
    dvc_yaml = (ws / "dvc.yaml").read_text()
    assert "foreach" in dvc_yaml and ".venv" not in dvc_yaml and str(ws) not in dvc_yaml


def test_params_and_metrics_are_tracked(ws: Path) -> None:
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    assert lock["train@tiny"]["params"]["recipes/tiny.yaml"]["trainer"]["max_epochs"] == 1
    assert "dataset" in lock["dataset@demo-demo_tissue"]["params"]["recipes/tiny.yaml"]
    metrics = json.loads(sh("dvc", "metrics", "show", "--json", cwd=ws))
    flat = json.dumps(metrics)
    assert "val/acc" in flat and "test/acc" in flat
    report = ws / "outputs" / "demo" / "pipeline" / "tiny"
    assert (report / "curves.csv").read_text().startswith("step,")
    assert (report / "confusion_matrix.png").stat().st_size > 0
    run = json.loads((ws / "outputs/demo/train/pipeline/tiny/run.json").read_text())
    assert len(run["run_id"]) == 32


def test_a_training_param_reruns_train_only(ws: Path) -> None:
    recipe = ws / "recipes" / "tiny.yaml"
    old = recipe.read_text()
    try:
        recipe.write_text(old.replace("sample_grid: 8", "sample_grid: 4"))
        status = sh("dvc", "status", cwd=ws)
        assert "train@tiny" in status
        assert "dataset@" not in status and "ingest@" not in status
        out = sh("dvc", "repro", "train@tiny", cwd=ws)
        assert "Running stage 'train@tiny'" in out
        assert "Running stage 'dataset@" not in out and "Running stage 'ingest@" not in out
    finally:
        recipe.write_text(old)
        sh("dvc", "repro", "train@tiny", cwd=ws)  # back to the committed state


def test_exp_run_set_param_and_exp_show(ws: Path) -> None:
    sh(
        "dvc", "exp", "run", "-n", "two-epochs", "-S", "recipes/tiny.yaml:trainer.max_epochs=2",
        "train@tiny", cwd=ws,
    )  # fmt: skip
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=ws))
    text = json.dumps(shown)
    assert "two-epochs" in text and '"max_epochs": 2' in text and "val/acc" in text
    assert "max_epochs" in sh("dvc", "params", "diff", "HEAD", cwd=ws)
    sh("git", "checkout", "--", "recipes/tiny.yaml", cwd=ws)


def test_dvc_hydra_mode_sets_a_group_choice(ws: Path) -> None:
    """`dvc exp run -S 'model=small_cnn'`: DVC composes the recipe with our conf/ into
    params.yaml (the hydra_plugins search path), and the train stage trains that model."""
    import mlflow

    assert sh("dvc", "config", "hydra.config_name", cwd=ws).strip() == "tiny"
    try:
        out = sh(
            "dvc", "exp", "run", "-n", "small-cnn", "-S", "model=small_cnn", "train@tiny", cwd=ws
        )  # fmt: skip
        params = yaml.safe_load((ws / "params.yaml").read_text())
        assert params["model"]["name"] == "small_cnn" and params["trainer"]["max_epochs"] == 1
        lines = [ln for ln in out.splitlines() if ln.startswith("DVC Hydra mode")]
        # model, and trainer whose data.mean/std follow ${model.mean}; never the dataset's blocks
        assert lines and all(ln.endswith("sets model, trainer of recipe tiny") for ln in lines)
        assert "Running stage 'train@tiny'" in out and "Running stage 'dataset@" not in out
        record = ws / "outputs" / "demo" / "train" / "pipeline" / "tiny" / "run.json"
        run_id = json.loads(record.read_text())["run_id"]
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws}/outputs/_state/mlflow.db")
        assert client.get_run(run_id).data.params["model.name"] == "small_cnn"
    finally:
        (ws / "params.yaml").unlink(missing_ok=True)
        sh("git", "checkout", "--", "dvc.lock", cwd=ws)


def test_push_pull_and_a_rebuild_elsewhere_give_the_same_version(ws: Path, tmp_path: Path) -> None:
    sh("dvc", "push", cwd=ws)
    clone = tmp_path / "colleague"
    sh("git", "clone", "-q", str(ws), str(clone), cwd=tmp_path)
    sh("dvc", "pull", "data/demo/raw", "ingest@demo", "dataset@demo-demo_tissue", cwd=clone)
    # the pulled registry names the clone's own slides (stored relative inside the workspace)
    reg = load_registry(clone / "data" / "demo" / "slides" / "registry.parquet")
    assert len(reg) == 4
    assert all(Path(p).is_file() and Path(p).is_relative_to(clone) for p in reg["path"])
    name = "data/demo/datasets/demo_tissue"
    assert (clone / name / "manifest.parquet").read_bytes() == (
        ws / name / "manifest.parquet"
    ).read_bytes()
    # the colleague rebuilds the dataset from the pulled slides: the same version (DVC hash)
    stages = ("fingerprint", "ingest@demo", "dataset@demo-demo_tissue")
    sh("dvc", "repro", "-f", "-s", *stages, cwd=clone)
    lock_a = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]
    lock_b = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    out_a = lock_a["dataset@demo-demo_tissue"]["outs"][0]["md5"]
    out_b = lock_b["dataset@demo-demo_tissue"]["outs"][0]["md5"]
    assert out_a == out_b
    shutil.rmtree(clone)


def test_the_source_tree_links_to_the_demo_workspace(tmp_path: Path) -> None:
    from autoscope.demo import link_source_tree

    source, ws = tmp_path / "src", tmp_path / "src" / "workspaces" / "demo"
    for rel in ("data/demo/slides", "outputs/demo/infer", "outputs/_state"):
        (ws / rel).mkdir(parents=True)
    (source / "data" / "demo").mkdir(parents=True)  # a real folder stays
    notes = link_source_tree(source, ws)
    linked = source / "outputs" / "demo" / "infer"
    assert linked.resolve() == (ws / "outputs" / "demo" / "infer").resolve()
    assert not (source / "outputs" / "demo").is_symlink()  # runs started here write here
    assert not (source / "outputs" / "_state").exists()
    assert not (source / "data" / "demo").is_symlink() and any("left as it is" in n for n in notes)
    assert link_source_tree(source, ws)  # again: the link is renewed, not nested
    assert not (ws / "outputs" / "demo" / "infer" / "infer").exists()
