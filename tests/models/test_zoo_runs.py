"""The model zoo (cards, archived models, pretrained loading) and the runs/zoo/ui views."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from autoscope.cli import main
from autoscope.config import compose
from autoscope.errors import UserError
from autoscope.models import archs, zoo


def _tiny() -> torch.nn.Module:
    return archs.small_resnet(5, widths=[8, 16], depths=[1, 1], stem_width=8)


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    """A workspace with one zoo card and one archived model."""
    (tmp_path / "zoo").mkdir()
    torch.save(_tiny().state_dict(), tmp_path / "zoo" / "tiny5.pt")
    (tmp_path / "zoo" / "tiny5.yaml").write_text(
        "arch: small_cnn\nsource: our lab\ninput: {mpp: 0.5, mean: [0.5, 0.5, 0.5], "
        "std: [0.2, 0.2, 0.2]}\n"
    )
    v1 = tmp_path / "outputs" / "demo" / "models" / "tumor" / "v1"
    v1.mkdir(parents=True)
    torch.save({f"net.{k}": v for k, v in _tiny().state_dict().items()}, v1 / "model.pt")
    (v1 / "metadata.json").write_text(
        json.dumps({"run_id": "abc", "arch": {"name": "small_cnn"}, "input": {"mpp": 1.0}})
    )
    return tmp_path


def test_zoo_lists_cards_and_archived(ws: Path, capsys: pytest.CaptureFixture) -> None:
    names = [
        e["name"]
        for e in zoo.zoo_entries(ws / "zoo") + zoo.archived_entries(ws / "outputs" / "demo")
    ]
    assert names == ["tiny5", "tumor/v1"]
    assert main(["zoo", "list", "demo", f"paths.workspace={ws}"]) == 0
    out = capsys.readouterr().out
    assert "tiny5" in out and "tumor/v1" in out and "our lab" in out


def test_pretrained_loads_all_but_the_head(ws: Path) -> None:
    for ref in ("zoo:tiny5", "zoo:tumor/v1", str(ws / "zoo" / "tiny5.pt")):
        net = archs.small_resnet(2, widths=[8, 16], depths=[1, 1], stem_width=8)
        path = zoo.resolve_pretrained(ref, ws / "zoo", ws / "outputs" / "demo")
        counts = zoo.load_pretrained(net, path)
        assert counts["skipped"] == 2  # the 5-class head's weight and bias do not fit 2 classes
        src = torch.load(path, weights_only=True)
        key = "features.0.weight"
        assert torch.equal(net.state_dict()[key], src.get(key, src.get(f"net.{key}")))


def test_missing_pretrained_is_one_line_user_error(ws: Path) -> None:
    with pytest.raises(UserError, match="no zoo entry 'nope'"):
        zoo.resolve_pretrained("zoo:nope", ws / "zoo", ws / "outputs" / "demo")
    with pytest.raises(UserError, match="not found"):
        zoo.resolve_pretrained(str(ws / "missing.pt"), ws / "zoo", ws)
    bad = ws / "zoo" / "evil.pt"
    torch.save({"x": object()}, bad)
    with pytest.raises(UserError, match="weights-only"):
        zoo.load_pretrained(_tiny(), bad)


def test_runs_list_sorts_and_empty(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import mlflow

    cfg = compose("demo", [f"paths.workspace={tmp_path}"])
    assert main(["runs", "list", "demo", f"paths.workspace={tmp_path}"]) == 0
    assert "no runs" in capsys.readouterr().out
    from autoscope.config import project_spec, stores_spec
    from autoscope.project import ensure_experiment

    exp = ensure_experiment(project_spec(cfg), stores_spec(cfg))
    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    for name, acc in (("low", 0.5), ("high", 0.9), ("mid", 0.7)):
        rid = client.create_run(exp, run_name=name, tags={"dataset_version": "d1.dir"}).info.run_id
        client.log_metric(rid, "val/acc", acc)
        client.set_terminated(rid)
    assert main(["runs", "list", "demo", f"paths.workspace={tmp_path}", "--sort", "val/acc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run_id", "name", "status", "val/acc"]
    assert [ln.split()[1] for ln in lines[1:]] == ["high", "mid", "low"]
    assert "0.9000" in lines[1] and "d1.dir" in lines[1] and "FINISHED" in lines[1]
    assert main(["runs", "list", "demo", f"paths.workspace={tmp_path}", "--bogus"]) == 2


@pytest.mark.slow  # starting the MLflow server takes 7-25 s here
def test_ui_starts_on_localhost_and_stops(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["ui", "demo", f"paths.workspace={tmp_path}", "--port", str(port), "--check"]) == 0
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out
    with socket.socket() as s:  # stopped: the port is free again
        s.bind(("127.0.0.1", port))
