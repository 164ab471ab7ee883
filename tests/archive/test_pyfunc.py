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
