"""An archived version is an MLflow model: `models:/<name>@champion` loads and predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import compose_cfg, fake_run

from autoscope.stages import archive

NAME = "demo-tissue_classification"


@pytest.fixture()
def mlflow_uri(tmp_path: Path):
    """The archived workspace's store as MLflow's global URI (what a user's session sets)."""
    import mlflow

    cfg = compose_cfg(tmp_path / "ws")
    mlflow.set_tracking_uri(cfg.paths.mlflow_uri)
    try:
        yield cfg
    finally:
        mlflow.set_tracking_uri(None)


def test_champion_loads_as_pyfunc_and_predicts_like_our_engine(mlflow_uri) -> None:
    import mlflow
    import torch

    from autoscope.archive import registry
    from autoscope.infer.models import load_model

    cfg = mlflow_uri
    fake_run(cfg, val_acc=0.9, seed=3)
    out = archive.run(cfg)
    patches = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    got = model.predict(patches)
    assert list(got.columns) == ["tumor", "stroma", "label"] and len(got) == 7

    ours, card = load_model(Path(out["card"]).parent)  # the path `autoscope infer` loads
    with torch.inference_mode():
        want = torch.softmax(ours(torch.from_numpy(patches)).float(), dim=1).numpy()
    np.testing.assert_allclose(got[["tumor", "stroma"]].to_numpy(), want, atol=1e-6)
    assert list(got["label"]) == [card.classes[i].name for i in want.argmax(1)]
    by_number = mlflow.pyfunc.load_model(f"models:/{NAME}/{out['version']}").predict(patches)
    np.testing.assert_allclose(by_number[["tumor", "stroma"]].to_numpy(), want, atol=1e-6)

    sig = model.metadata.signature
    assert sig.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "uint8", "shape": (-1, 32, 32, 3)}
    assert sig.outputs.input_names() == ["tumor", "stroma", "label"]
    with pytest.raises(Exception, match="uint8|dtype|type"):
        model.predict(patches.astype(np.float32))

    client = mlflow.MlflowClient()
    model_id = registry.model_id_of(client, NAME, out["version"])
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == out["run_id"] and str(logged.status) == "READY"
    assert client.get_model_version(NAME, "1").source == f"models:/{model_id}"

    again = archive.run(cfg)
    assert again["version"] == 1 and again["new"] is False
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert registry.model_id_of(client, NAME, 1) == model_id


def test_logged_model_is_code_and_state_dict_without_host_paths(mlflow_uri) -> None:
    import mlflow
    import torch
    import yaml

    cfg = mlflow_uri
    fake_run(cfg)
    archive.run(cfg)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion"))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "pyfunc_model.py", "requirements.txt"} <= files
    assert {"artifacts/metadata.json", "artifacts/spec.json", "artifacts/model.pt"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert "python_model" not in flavor  # nothing pickled: the model is the script
    script = (local / "pyfunc_model.py").read_text()
    assert "from autoscope.archive.pyfunc import" in script and "class " not in script
    state = torch.load(local / "artifacts" / "model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    reqs = (local / "requirements.txt").read_text()
    assert "autoscope==" in reqs and "torch==" in reqs
    roots = {str(Path(cfg.paths.workspace).resolve()), str(Path(__file__).parents[2])}
    for f in files - {"artifacts/model.pt"}:
        text = (local / f).read_text(errors="replace")
        assert not [r for r in roots if r in text], f"{f} names a host path"


def test_trained_run_archives_to_a_pyfunc_that_matches_the_engine(mlflow_uri) -> None:
    """A real tiny training run, archived: the pyfunc gives the engine's probabilities."""
    import sys

    import mlflow

    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from tinydata import TINY_TRAIN, make_tiny_dataset

    from autoscope.config import compose
    from autoscope.infer.batching import pick_device, prepare_model, run_model
    from autoscope.infer.models import load_model
    from autoscope.stages import train

    ws = Path(mlflow_uri.paths.workspace)
    make_tiny_dataset(ws / "data" / "demo" / "datasets" / "tiny")
    extra = ["++dataset.name=tiny", *TINY_TRAIN, "trainer.max_epochs=2", "trainer.max_minutes=null"]
    trained = train.train_once(compose("demo", [f"paths.workspace={ws}", *extra], "train"))
    out = archive.run(compose("demo", [f"paths.workspace={ws}", *extra], "archive"))
    assert out["run_id"] == trained["run_id"]

    patches = np.load(ws / "data" / "demo" / "datasets" / "tiny" / "shards" / "000.npy")[-32:]
    got = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(patches)
    model, card = load_model(Path(out["card"]).parent)
    device = pick_device("cpu")
    batches = [(patches, np.zeros((len(patches), 2)))]
    _, want, _ = run_model(
        prepare_model(model, device, card.input.patch_px), batches, device=device
    )
    np.testing.assert_allclose(got[["tumor", "stroma"]].to_numpy(), want, atol=1e-5)
    assert (got["label"] == "tumor").sum() == 16  # the tiny test split: 16 of each, learnt

    run = mlflow.MlflowClient().get_run(out["run_id"])
    assert run.inputs.dataset_inputs[0].dataset.name == "tiny"
    assert "config.yaml" in {a.path for a in mlflow.MlflowClient().list_artifacts(out["run_id"])}
