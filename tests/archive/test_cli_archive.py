"""`autoscope archive` and `autoscope models list` through the CLI."""

from __future__ import annotations

from pathlib import Path

from fakes import compose_cfg, fake_run

from autoscope.cli import main


def test_cli_archive_then_models_list(tmp_path: Path, capsys) -> None:
    ws = f"paths.workspace={tmp_path}"
    rid = fake_run(compose_cfg(tmp_path), val_acc=0.8)
    assert main(["models", "list", "demo", ws]) == 0
    assert "no archived models" in capsys.readouterr().out
    assert main(["archive", "demo", ws, "archive.thresholds.min={val/acc:0.95}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "below the minimum 0.95" in err and "Traceback" not in err
    assert main(["archive", "demo", ws, f"run={rid}"]) == 0
    assert "bentoml_tag=demo-tissue_classification:v1" in capsys.readouterr().out
    assert main(["models", "list", "demo", ws]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["model", "version", "aliases"]
    assert lines[1].split()[:3] == ["demo-tissue_classification", "v1", "champion"]
    assert main(["models", "list", "demo", ws, "--bogus"]) == 2
    assert "unexpected argument '--bogus'" in capsys.readouterr().err
