"""`autoscope dataset build` on files that are not what they claim: one line naming the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autoscope.errors import UserError
from autoscope.stages.dataset import build as build_dataset

ROOT = Path(__file__).parents[2]


def _cli(workspace, *overrides: str) -> subprocess.CompletedProcess:
    args = ["dataset", "build", "demo", f"paths.workspace={workspace.root}", *overrides]
    return subprocess.run(
        [sys.executable, "-m", "autoscope.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_deeply_nested_geojson_is_one_line(workspace, tmp_path) -> None:
    geo = tmp_path / "slide_001.geojson"
    depth = 100_000  # far past Python's recursion limit
    geo.write_text('{"type": "FeatureCollection", "features": ' + "[" * depth + "]" * depth + "}")
    line = _one_line(_cli(workspace, f"dataset.sources=[{{type: geojson, path: {geo}}}]"))
    assert line.startswith(f"autoscope: error: {geo}: malformed GeoJSON (nested too deeply")
    assert not (workspace.root / "data/demo/datasets/demo_tissue").exists()


@pytest.mark.parametrize(
    "content",
    [
        'slide,label\nslide_000,tumor\nslide_001,stroma,extra,"unterminated\n',  # ParserError
        "",  # EmptyDataError
    ],
)
def test_a_slide_label_csv_that_is_not_a_csv_is_one_line(workspace, tmp_path, content) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(content)
    src = f"dataset.sources=[{{type: slide_labels, path: {csv}}}]"
    with pytest.raises(UserError, match=rf"^{csv}: not a readable slide-label CSV \(") as e:
        build_dataset(workspace.cfg(src, "dataset.name=organ"))
    assert "\n" not in str(e.value)
    if content:  # and through the command: exit 2, one line
        line = _one_line(_cli(workspace, src, "dataset.name=organ"))
        assert line.startswith(f"autoscope: error: {csv}: not a readable slide-label CSV")
