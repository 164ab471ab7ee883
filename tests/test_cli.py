"""The CLI: fast help; actions are Hydra apps (everything a Hydra user knows works); one clear
message and a non-zero exit for whatever a user gets wrong."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autoscope.cli import STAGES, main

PY = sys.executable
HPO = Path(__file__).parent / "hpo"


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "autoscope.cli", *args], capture_output=True, text=True, cwd=cwd
    )


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
        (["slides", "ingest", "demo", "slides.nokey=1"], "Key 'nokey' is not in struct"),
        (["slides", "ingest", "demo", "model=zzz"], "Could not find 'model/zzz'"),
        (["train", "demo", "trainer.max_epochs=abc"], "trainer.max_epochs=abc: expected an int"),
        (["train", "demo", "-m", "trainer.tta=true,maybe"], "trainer.tta=maybe: expected a bool"),
        (["train", "demo", "trainer.max_epochs=[1"], "override_grammar"),
        (["train", "demo", "--resolve"], "--resolve flag can only be used"),
        (["dataset", "list", "demo", "model=zzz"], "Could not find 'model/zzz'"),
        (["slides", "explode", "demo"], "'slides' needs one of"),
        (["slides", "ingest"], "needs a recipe"),
    ],
)
def test_user_errors_are_one_message_and_exit_2(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("autoscope: error: "), r.stderr
    assert r.stderr.count("autoscope: error:") == 1
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_group_choice_keeps_hydras_full_text():
    r = run_cli("train", "demo", "model=zzz")
    assert "Available options in 'model':" in r.stderr and "small_cnn" in r.stderr


def test_cfg_job_help_info_and_deletion():
    r = run_cli("train", "demo", "--cfg", "job", "~logger.tags", "model=tiny_cnn")
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["model"]["name"] == "tiny_cnn" and "tags" not in cfg["logger"]
    assert "stage" not in cfg and "multirun" not in cfg and "recipe" not in cfg
    r = run_cli("train", "demo", "--cfg", "hydra")
    assert "sweeper:" in r.stdout and "autoscope_sweeper" in r.stdout
    r = run_cli("train", "demo", "--cfg", "job", "--resolve", "-p", "paths")
    assert "${" not in r.stdout and "mlflow_uri: sqlite:///" in r.stdout
    r = run_cli("train", "demo", "--help")
    assert r.returncode == 0 and "== Configuration groups ==" in r.stdout
    assert "model: " in r.stdout and "small_cnn" in r.stdout
    r = run_cli("train", "demo", "--info", "searchpath")
    assert r.returncode == 0 and "autoscope/conf" in r.stdout
    r = run_cli("train", "demo", "--shell-completion", "install=bash")
    assert (
        r.returncode == 0 and "complete -o nospace -o default -F hydra_bash_completion" in r.stdout
    )
    for line, want in [
        ("autoscope tr", "train"),
        ("autoscope slides i", "ingest"),
        ("autoscope train de", "demo"),
        ("autoscope train demo model=sm", "model=small_cnn"),
        ("autoscope train demo hydra/launcher=jo", "hydra/launcher=joblib"),
    ]:
        env = {**os.environ, "COMP_LINE": line}
        r = subprocess.run(
            [PY, "-m", "autoscope.cli", "-sc", "query=bash"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert want in r.stdout.split(), (line, r.stdout, r.stderr)


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


# -- multirun through the real sweeper and launchers, on the cheap toy stage ------------------
@pytest.fixture
def toy(tmp_path, monkeypatch):
    sys.path.insert(0, str(HPO))
    from hpo_toy import Toy, write_toy

    recipe = write_toy(tmp_path / "recipes")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(HPO))
    return Toy(recipe, tmp_path)


def _records(root: Path) -> list[dict]:
    found = sorted(root.glob("outputs/demo/toy/multirun/*/*/*/.hydra/overrides.yaml"))
    return [yaml.safe_load(p.read_text()) for p in found]


def test_grid_multirun_over_keys_and_groups(toy, capsys):
    assert toy("hpo=none", "toy=a,b", "seed=1,2") == 0
    runs = _records(toy.root)
    assert len(runs) == 4
    assert {(r[1], r[2]) for r in runs} == {
        (t, s) for t in ("toy=a", "toy=b") for s in ("seed=1", "seed=2")
    }
    job = next(toy.root.glob("outputs/demo/toy/multirun/*/*/0/.hydra"))
    assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= {p.name for p in job.iterdir()}
    choices = yaml.safe_load((job / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    assert choices["toy"] == "a"
    assert (job.parent / "toy.log").is_file()


def test_glob_sweeps_a_whole_group(toy):
    assert toy("hpo=none", "toy=glob(*)") == 0
    assert sorted(r[1] for r in _records(toy.root)) == ["toy=a", "toy=b"]


def test_single_run_has_its_hydra_record(toy):
    assert toy("hpo=none", "seed=9", multirun=False) == 0
    rec = list(toy.root.glob("outputs/demo/toy/jobs/*/*/.hydra/overrides.yaml"))
    assert len(rec) == 1 and yaml.safe_load(rec[0].read_text()) == ["hpo=none", "seed=9"]


def test_joblib_launcher_runs_the_grid_side_by_side(toy, capsys):
    args = ["hpo=none", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2"]
    assert toy(*args, "toy.sleep_s=1") == 0
    pids = {p.read_text() for p in toy.root.glob("outputs/demo/toy/multirun/*/*/*/pid.txt")}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # two worker processes
    assert len(_records(toy.root)) == 2


def test_submitit_local_launcher(toy):
    args = ["hpo=none", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "seed=1,2"]
    assert toy(*args) == 0
    assert len(_records(toy.root)) == 2
    assert list(toy.root.glob("outputs/demo/toy/multirun/*/*/.submitit/*/*_result.pkl"))
