"""The CLI: fast help, one clear line and a non-zero exit for what a user gets wrong."""

import subprocess
import sys

import pytest

from autoscope.cli import STAGES, main

PY = sys.executable


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "autoscope.cli", *args], capture_output=True, text=True)


def test_help_lists_stages_and_recipes_without_heavy_imports():
    code = (
        "import sys; from autoscope.cli import main; main(['--help']);"
        "heavy = [m for m in ('torch', 'lightning', 'mlflow', 'bentoml', 'dvc', 'hydra', 'pandas')"
        " if m in sys.modules]; print('HEAVY', heavy)"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    for stage in {s for s, _ in STAGES}:
        assert stage in out
    assert "demo" in out
    assert "HEAVY []" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["frobnicate", "demo"], "unknown stage 'frobnicate'"),
        (["slides", "ingest", "nope"], "unknown recipe 'nope'"),
        (["slides", "ingest", "demo", "slides.nokey=1"], "nokey"),
        (["slides", "ingest", "demo", "model=zzz"], "model/zzz"),
        (["slides", "explode", "demo"], "'slides' needs one of"),
        (["slides", "ingest"], "needs a recipe"),
    ],
)
def test_user_errors_are_one_line(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_main_returns_zero_on_help(capsys):
    assert main(["--help"]) == 0
    assert "usage: autoscope" in capsys.readouterr().out


def test_split_flags_and_overrides():
    from autoscope.cli import _split

    ov, fl = _split(
        ["--json", "paths.workspace=/x", "--where", "a == 'b'", "--sort=-c", "s1", "+k=1"]
    )
    assert ov == ["paths.workspace=/x", "+k=1"]
    assert fl == ["--json", "--where", "a == 'b'", "--sort=-c", "s1"]
