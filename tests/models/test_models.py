"""Architectures, the PatchClassifier contract, losses and every model config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autoscope.config import CONF_DIR, compose
from autoscope.errors import UserError
from autoscope.models import archs
from autoscope.models.classifier import PatchClassifier, make_spec
from autoscope.models.losses import CrossEntropy, FocalLoss

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def test_small_cnn_is_about_300k_params() -> None:
    n = sum(p.numel() for p in archs.small_resnet(2).parameters())
    assert 250_000 < n < 350_000


def test_vit_s_has_vit_s_shape() -> None:
    vit = archs.vit_small(3, image_px=32)
    assert (vit.patch_size, vit.hidden_dim, len(vit.encoder.layers)) == (16, 384, 12)
    assert vit.encoder.layers[0].num_heads == 6
    with pytest.raises(ValueError, match="multiple"):
        archs.vit_small(3, image_px=90)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_config_builds_and_binds(name: str, tmp_path: Path) -> None:
    """Each conf/model choice instantiates (no download) and its partials bind."""
    import inspect

    from hydra.utils import instantiate

    cfg = compose("demo", [f"paths.workspace={tmp_path}", f"model={name}", "model.input_px=64"])
    model = PatchClassifier.build(cfg.model, 3)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape
        dense = name.startswith(("seg_", "det_"))  # per-pixel logits / centre heatmaps
        assert out == ((2, 3, 64, 64) if dense else (2, 3))
    opt = instantiate(cfg.model.optimizer)(params=model.parameters())
    sched_fn = instantiate(cfg.model.scheduler)
    assert "total_steps" in inspect.signature(sched_fn).parameters
    sched_fn(opt, total_steps=10)
    instantiate(cfg.model.loss)


def test_uint8_and_float_inputs_agree() -> None:
    torch.manual_seed(0)
    model = PatchClassifier(archs.small_resnet(2, widths=[8, 16], depths=[1, 1], stem_width=8))
    model.eval()
    x = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    f = x.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        a, b = model(x), model(f)
        c = model((f - model.mean) / model.std, normalize=False)
        probs = model.predict_tta(x)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)
    assert probs.shape == (4, 2) and torch.allclose(probs.sum(1), torch.ones(4))


def test_from_files_roundtrip(tmp_path: Path) -> None:
    cfg = compose(
        "demo", [f"paths.workspace={tmp_path}", "model.net.widths=[8,16]", "model.net.depths=[1,1]"]
    )
    model = PatchClassifier.build(cfg.model, 2).eval()
    spec = make_spec(cfg.model, list(cfg.project.classes), 1.0, 96)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    again = PatchClassifier.from_files(tmp_path / "spec.json", tmp_path / "model.pt")
    x = torch.randint(0, 256, (2, 96, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert spec["input"] == {
        "mpp": 1.0,
        "patch_px": 96,
        "mean": list(cfg.model.mean),
        "std": list(cfg.model.std),
    }
    with pytest.raises(UserError, match="not found"):
        PatchClassifier.from_files(tmp_path / "spec.json", tmp_path / "nope.pt")


def test_losses() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, y), ce, atol=1e-6)
    assert FocalLoss(gamma=2.0)(logits, y) < ce
    assert torch.allclose(CrossEntropy()(logits, y), ce)
    smooth = CrossEntropy(label_smoothing=0.1)(logits, y)
    assert not torch.allclose(smooth, ce)
    balanced = CrossEntropy(class_weights="balanced")
    balanced.fit([90, 10, 0])
    assert balanced.weight[1] > balanced.weight[0]
    with pytest.raises(ValueError):
        CrossEntropy(class_weights="heavy")


def test_warmup_cosine_by_steps_and_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoscope.models import schedules

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = schedules.WarmupCosine(
        opt, total_steps=100, warmup_pct=0.1, div_factor=10, final_div_factor=10
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    lrs = []
    for _ in range(100):
        opt.step()
        s.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(1.0) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.01)
    clock = [0.0]
    monkeypatch.setattr(schedules.time, "monotonic", lambda: clock[0])
    timed = schedules.WarmupCosine(opt, total_steps=10_000, budget_minutes=1.0)
    clock[0] = 60.0  # the budget is spent after one step: the lr is fully annealed
    opt.step()
    timed.step()
    assert timed.progress() == 1.0
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25 / 1000)


def test_hed_jitter_matches_colour_deconvolution(fixtures_dir: Path) -> None:
    """Scaling H and E in OD space agrees with scikit-image's rgb2hed/hed2rgb on a real tile."""
    import numpy as np
    from PIL import Image
    from skimage.color import hed2rgb, rgb2hed

    from autoscope.datasets import stain

    tile = fixtures_dir / "tiles" / "tissue-level0-4302-10273-4814-10785.png"
    img = np.asarray(Image.open(tile).convert("RGB"))[:64, :64].copy()
    x = torch.from_numpy(img)[None]
    g = torch.Generator().manual_seed(0)
    assert torch.equal(stain.hed_jitter(x, g, 0.0, 0.0), x)
    a = stain.hed_jitter(x, torch.Generator().manual_seed(3), 0.3, 0.0)
    b = stain.hed_jitter(x, torch.Generator().manual_seed(3), 0.3, 0.0)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and not torch.equal(a, x)
    alpha = 1.0 + 0.3 * (2.0 * torch.rand(1, 3, generator=torch.Generator().manual_seed(3)) - 1.0)
    rgb = img / 255.0
    raw = (np.log(np.maximum(rgb, 1e-6)) / np.log(1e-6)) @ stain.HED_FROM_RGB.numpy()
    ok = (raw >= 0).all(-1)  # scikit-image clips negative stain amounts; compare the others
    ref = hed2rgb(rgb2hed(rgb) * alpha[0].numpy())
    assert np.abs(ref - a[0].numpy() / 255.0)[ok].max() < 0.01


def test_trainer_choices_compose(tmp_path: Path) -> None:
    """Every conf/trainer choice composes; gpu differs from cpu_fast only where it says so."""
    base = compose("demo", [f"paths.workspace={tmp_path}", "trainer=cpu_fast"]).trainer
    gpu = compose("demo", [f"paths.workspace={tmp_path}", "trainer=gpu"]).trainer
    assert set(base) == set(gpu)
    assert gpu.accelerator == "gpu" and gpu.batch_size > base.batch_size
    # the `_target_` sections follow the knobs (interpolated), so a choice changes them too
    assert gpu.lightning.accelerator == "gpu" and gpu.data.batch_size == gpu.batch_size
    assert gpu.data.eval_batch_size == gpu.eval_batch_size != base.data.eval_batch_size


# Arguments the train stage (or the LightningModule) gives each `_target_` at call time; every
# other argument must come from the config. A `_partial_` node must be listed here.
GIVEN = {
    "model.net": {"num_classes"},  # archs.build_net
    "model.optimizer": {"params"},  # PatchClassifierModule.configure_optimizers
    "model.scheduler": {"optimizer", "total_steps"},
    "trainer.data": {"dataset_dir", "num_classes"},  # stages/train.py train_once
    "trainer.lightning": {"ckpt_dir", "logger", "callbacks"},
    "logger.lightning": {"run_name", "tags"},
}
GROUPS = [("model", m) for m in MODELS] + [
    (group, p.stem)
    for group in ("trainer", "logger")
    for p in sorted((CONF_DIR / group).glob("*.yaml"))
]


def _targets(node: object, path: str = "") -> list[tuple[str, dict]]:
    """Every `(dotted path, mapping)` under `node` that has a `_target_`."""
    if not isinstance(node, dict):
        return []
    found = [(path, node)] if "_target_" in node else []
    for k, v in node.items():
        found += _targets(v, f"{path}.{k}" if path else str(k))
    return found


@pytest.mark.parametrize(("group", "choice"), GROUPS, ids=[f"{g}={c}" for g, c in GROUPS])
def test_every_target_resolves_and_binds(group: str, choice: str, tmp_path: Path) -> None:
    """Each `_target_` of a model/trainer/logger choice resolves and binds its arguments.

    Nothing is instantiated: `inspect.signature(target).bind(config args + stage args)`.
    """
    import inspect

    from hydra.utils import get_object

    from autoscope.config import to_dict

    cfg = compose("demo", [f"paths.workspace={tmp_path}", f"{group}={choice}"])
    found = _targets(to_dict(cfg[group]), group)
    assert found, f"{group}={choice} has no _target_"
    for path, node in found:
        args = {k: v for k, v in node.items() if not k.startswith("_")}
        given = GIVEN.get(path, set())
        assert not node.get("_partial_") or path in GIVEN, f"{path}: a partial nobody completes"
        if path == "model.net":  # model cards rebuild the net without Hydra: same rule
            archs.locate_builder(node["_target_"])
        target = get_object(node["_target_"])
        inspect.signature(target).bind(**args, **dict.fromkeys(given))


def test_logger_store_is_one_override(tmp_path: Path) -> None:
    """A second MLflow server is `logger.tracking_uri=...`; logger=csv has no MLflow store."""
    uri = "http://mlflow.example:5000"
    cfg = compose("demo", [f"paths.workspace={tmp_path}", f"logger.tracking_uri={uri}"])
    assert cfg.logger.lightning.tracking_uri == uri
    assert compose("demo", [f"paths.workspace={tmp_path}"]).logger.tracking_uri.startswith(
        "sqlite:///"
    )
    csv = compose("demo", [f"paths.workspace={tmp_path}", "logger=csv"]).logger
    assert "tracking_uri" not in csv
    assert {"run_name", "log_params", "log_pictures", "tags"} <= set(csv)


def test_model_cards_only_name_architecture_builders() -> None:
    """A model card's `net._target_` is called at load time: only builders are allowed."""
    with pytest.raises(UserError, match="not an architecture builder"):
        archs.build_net({"_target_": "os.system", "command": "true"}, 2)
    with pytest.raises(UserError, match="no such builder"):
        archs.build_net({"_target_": "autoscope.models.archs.nope"}, 2)
    net = archs.build_net(
        {"_target_": "autoscope.models.archs.small_resnet", "widths": [4], "depths": [1]}, 3
    )
    assert net(torch.zeros(1, 3, 16, 16)).shape == (1, 3)
