"""Pretrained starts: zoo weights, linear probe vs fine-tuning, clear errors, a sweep over them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tinydata import TINY_TRAIN, make_tiny_dataset  # noqa: E402

from autoscope.config import compose, stores_spec, to_dict  # noqa: E402
from autoscope.errors import UserError  # noqa: E402
from autoscope.models.build import build_classifier, build_module  # noqa: E402
from autoscope.models.classifier import PatchClassifier  # noqa: E402
from autoscope.models.losses import CrossEntropy  # noqa: E402

TINY = ["++dataset.name=tiny", "model=tiny_cnn", *TINY_TRAIN, "trainer.max_epochs=1"]
FIT = [*TINY, "trainer.max_minutes=null", "logger=csv", "logger.log_pictures=false"]
CARD = (
    "arch: tiny_cnn\nsource: a test\ninput: "
    "{mpp: 1.0, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n"
)
HEAD = "head.2"  # the tiny net's last linear layer


def _net(ws: Path, num_classes: int, *extra: str) -> torch.nn.Module:
    """A tiny_cnn net as the model config builds it, with batch-norm statistics of some data."""
    cfg = compose("demo", [f"paths.workspace={ws}", "model=tiny_cnn", *extra])
    model = PatchClassifier.build(to_dict(cfg.model), num_classes)
    torch.manual_seed(num_classes)
    with torch.no_grad():  # "trained": running stats far from their 0/1 start
        for _ in range(3):
            model(torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8))
    return model.net


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace: the tiny dataset and zoo entries of 2 and 5 classes, a wide and a gone one."""
    ws = tmp_path_factory.mktemp("ws")
    make_tiny_dataset(ws / "data" / "demo" / "datasets" / "tiny")
    zoo = ws / "zoo"
    zoo.mkdir()
    torch.save(_net(ws, 2).state_dict(), zoo / "tiny2.pt")  # the net's own keys
    five = {f"net.{k}": v for k, v in _net(ws, 5).state_dict().items()}  # PatchClassifier keys
    torch.save(five, zoo / "tiny5.pt")
    torch.save(_net(ws, 2, "model.net.widths=[8,24]").state_dict(), zoo / "wide.pt")
    for name in ("tiny2", "tiny5", "wide", "gone"):  # gone: a card without its weights
        (zoo / f"{name}.yaml").write_text(CARD)
    return ws


def _cfg(ws: Path, *extra: str):
    return compose("demo", [f"paths.workspace={ws}", *FIT, *extra], "train")


def _state(ws: Path, name: str) -> dict[str, torch.Tensor]:
    state = torch.load(ws / "zoo" / f"{name}.pt", weights_only=True)
    return {k.removeprefix("net."): v for k, v in state.items()}


def _trained(ws: Path, *extra: str) -> dict[str, torch.Tensor]:
    """Fit one epoch from zoo:tiny2 and return the run's net weights."""
    from autoscope.stages.train import train_once

    cfg = _cfg(ws, "model.pretrained=zoo:tiny2", *extra)
    out = train_once(cfg)
    run_dir = Path(cfg.paths.outputs) / "train" / "runs" / out["run_id"]
    state = torch.load(run_dir / "model.pt", weights_only=True)
    return {k[4:]: v for k, v in state.items() if k.startswith("net.")}


def test_head_of_another_class_count_is_reinitialised(ws: Path, capsys) -> None:
    cfg = _cfg(ws, "model.pretrained=zoo:tiny5")
    model = build_classifier(to_dict(cfg.model), 2, stores_spec(cfg))
    out = capsys.readouterr().out
    assert f"head {HEAD} re-initialised for 2 classes (the weights have 5)" in out
    src, got = _state(ws, "tiny5"), model.net.state_dict()
    assert all(torch.equal(got[k], src[k]) for k in got if not k.startswith(HEAD))
    cfg2 = _cfg(ws, "model.pretrained=zoo:tiny2")
    model = build_classifier(to_dict(cfg2.model), 2, stores_spec(cfg2))
    assert "re-initialised" not in capsys.readouterr().out
    assert torch.equal(
        model.net.state_dict()[f"{HEAD}.weight"], _state(ws, "tiny2")[f"{HEAD}.weight"]
    )


def test_linear_probe_trains_the_head_only(ws: Path) -> None:
    src = _state(ws, "tiny2")
    got = _trained(ws, "model.finetune=linear_probe")
    backbone = [k for k in src if not k.startswith(HEAD)]
    assert any("running_mean" in k for k in backbone)  # batch-norm statistics stay frozen too
    assert all(torch.equal(got[k], src[k]) for k in backbone)
    assert not torch.equal(got[f"{HEAD}.weight"], src[f"{HEAD}.weight"])


def test_full_finetuning_trains_backbone_and_head(ws: Path) -> None:
    src = _state(ws, "tiny2")
    got = _trained(ws, "model.finetune=full", "model.backbone_lr_mult=0.5")
    for key in ("features.0.weight", "features.1.running_mean", f"{HEAD}.weight"):
        assert not torch.equal(got[key], src[key]), key


def test_param_groups_and_frozen_modes(ws: Path) -> None:
    def groups(*extra: str) -> tuple[PatchClassifier, list[dict]]:
        cfg = _cfg(ws, "model.pretrained=zoo:tiny2", *extra)
        model = build_classifier(to_dict(cfg.model), 2, stores_spec(cfg))
        opt = torch.optim.AdamW
        module = build_module(model, CrossEntropy(), lambda params: opt(params, lr=0.01), None,
                              [1, 1], tta=False)  # fmt: skip
        return model, module.configure_optimizers()["optimizer"].param_groups

    model, g = groups("model.finetune=full", "model.backbone_lr_mult=0.1")
    assert [pytest.approx(x["lr"]) for x in g] == [0.001, 0.01]
    assert sum(len(x["params"]) for x in g) == len(list(model.parameters()))
    model, g = groups("model.finetune=linear_probe")
    assert len(g) == 1 and len(g[0]["params"]) == 2  # the head's weight and bias
    model.train()
    assert not model.net.features.training and not model.net.features[1].training
    assert model.net.head[2].training and model.training
    model, g = groups()  # the default: full at the optimiser's lr, one group of everything
    assert len(g) == 1 and g[0]["lr"] == 0.01
    model.train()
    assert all(m.training for m in model.modules())


def test_finetune_without_pretrained_trains_everything(ws: Path, capsys) -> None:
    cfg = _cfg(ws, "model.finetune=linear_probe")
    model = build_classifier(to_dict(cfg.model), 2, stores_spec(cfg))
    assert "apply to pretrained starts only" in capsys.readouterr().out
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(UserError, match="model.finetune: 'head' is not one of full, linear_probe"):
        build_classifier(to_dict(_cfg(ws, "model.finetune=head").model), 2)


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("zoo:nope", "no zoo entry 'nope' in paths.zoo"),
        ("zoo:gone", "weights file not found"),
        ("zoo:wide", "does not fit the model: features.4.conv1.weight is [24, 8, 3, 3] in the"),
        ("/nowhere/w.pt", "weights file not found: /nowhere/w.pt"),
    ],
)
def test_bad_pretrained_is_exit_2_with_one_line(
    ws: Path, ref: str, says: str, monkeypatch, capsys
) -> None:
    from autoscope.cli import main

    monkeypatch.chdir(ws)
    assert main(["train", "demo", *TINY, f"model.pretrained={ref}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    if ref == "zoo:nope":
        assert str(ws / "zoo") in err[0] and "archived models" in err[0] and "tiny2" in err[0]
    if ref == "zoo:gone":
        assert str(ws / "zoo" / "gone.pt") in err[0] and "nothing is downloaded" in err[0]


@pytest.mark.slow  # two real trials through the Hydra app and the Optuna study: ~40 s here
def test_sweep_over_zoo_entries_and_finetune_modes(ws: Path, monkeypatch, capsys) -> None:
    """`train -m` with the zoo entries and both modes as categoricals of an Optuna study."""
    import optuna

    from autoscope.cli import main

    monkeypatch.chdir(ws)
    sweep = ["hpo=small", "hpo.n_trials=2", "hpo.study_name=pretrained", *TINY]
    cli = ["model.pretrained=zoo:tiny2,zoo:tiny5", "model.finetune=full,linear_probe"]
    assert main(["train", "demo", "-m", *sweep, *cli]) == 0
    assert "] 2/2 trial #1" in capsys.readouterr().out
    cfg = compose("demo", sweep, "train")
    study = optuna.load_study(study_name="pretrained", storage=cfg.paths.optuna_storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        assert t.params["model.pretrained"] in ("zoo:tiny2", "zoo:tiny5")
        assert t.params["model.finetune"] in ("full", "linear_probe")
