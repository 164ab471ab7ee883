"""`autoscope slides list|show` on a real ingested registry (through the CLI entry point)."""

import shutil
from pathlib import Path

import pytest

from autoscope.cli import main

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture()
def ws(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIX / "cmu-1-small-region.svs", src / "cmu.svs")
    shutil.copy(FIX / "broken.svs", src / "broken.svs")
    (tmp_path / "meta.csv").write_text("slide,scanner\ncmu,GT450\nbroken,AT2\n")
    args = [
        f"paths.workspace={tmp_path}",
        f"slides.sources=[{src}]",
        f"slides.metadata={tmp_path / 'meta.csv'}",
    ]
    assert main(["slides", "ingest", "demo", *args]) == 0
    return tmp_path


def test_list_where_sort(ws, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "slides",
                "list",
                "demo",
                f"paths.workspace={ws}",
                "--where",
                "scanner == 'GT450' and mpp_x < 0.6",
                "--sort=-mpp_x",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cmu" in out and "broken" not in out and "1 slide(s)" in out


def test_list_bad_column_is_one_line(ws, capsys):
    assert main(["slides", "list", "demo", f"paths.workspace={ws}", "--sort", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_show(ws, capsys):
    capsys.readouterr()
    assert main(["slides", "show", "demo", f"paths.workspace={ws}", "cmu"]) == 0
    out = capsys.readouterr().out
    for needle in ("0.499", "thumbnail", "tissue_fraction", "datasets", "aperio"):
        assert needle in out
    assert main(["slides", "show", "demo", f"paths.workspace={ws}", "zzz"]) == 2
