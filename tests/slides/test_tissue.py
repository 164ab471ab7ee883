"""The tissue detector: labelled real tiles, pen ink, synthetic ground truth, whole-slide masks."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import openslide
import pytest
import yaml
from PIL import Image

from autoscope.errors import UserError
from autoscope.slides.mask_metrics import mask_iou
from autoscope.slides.reader import open_reader
from autoscope.slides.synth import SynthSlide, make_synthetic_slide
from autoscope.slides.tissue import TissueDetector, slide_mask

ROOT = Path(__file__).resolve().parents[2]
TILES = sorted((ROOT / "tests/fixtures/tiles").glob("*.png"))


def _tile(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> TissueDetector:
    """The detector exactly as conf/tissue/default.yaml configures it."""
    cfg = yaml.safe_load((ROOT / "autoscope/conf/tissue/default.yaml").read_text())
    assert cfg.pop("_target_") == "autoscope.slides.tissue.TissueDetector"
    return TissueDetector(**cfg)


def test_config_names_every_parameter() -> None:
    cfg = yaml.safe_load((ROOT / "autoscope/conf/tissue/default.yaml").read_text())
    cfg.pop("_target_")
    assert set(cfg) == set(inspect.signature(TissueDetector).parameters)
    assert cfg == TissueDetector().params()  # the code's fallbacks never contradict conf/


def test_from_params_is_the_plain_way_to_the_configured_detector() -> None:
    cfg = yaml.safe_load((ROOT / "autoscope/conf/tissue/default.yaml").read_text())
    det = TissueDetector.from_params(cfg)  # `_target_` and all: as a model card stores it
    assert det == TissueDetector(**{k: v for k, v in cfg.items() if k != "_target_"})
    assert TissueDetector.from_params(det.params()) == det
    assert TissueDetector.from_params({"min_od": 0.2}).min_od == 0.2
    with pytest.raises(UserError, match="unknown setting 'nope'"):
        TissueDetector.from_params({"nope": 1})


@pytest.mark.parametrize("path", [p for p in TILES if p.name.startswith("tissue-")], ids=str)
def test_tissue_tiles_are_tissue(detector: TissueDetector, path: Path) -> None:
    assert detector.is_tissue(_tile(path))


@pytest.mark.parametrize(
    "path", [p for p in TILES if p.name.startswith(("no-tissue", "almost-white-"))], ids=str
)
def test_background_tiles_are_background(detector: TissueDetector, path: Path) -> None:
    assert not detector.is_tissue(_tile(path))


def test_fixture_tiles_present() -> None:
    names = [p.name for p in TILES]
    assert sum(n.startswith("tissue-") for n in names) == 6
    assert sum(n.startswith(("no-tissue", "almost-white-")) for n in names) == 8


@pytest.mark.parametrize("path", [p for p in TILES if "-pen" in p.name], ids=str)
def test_pen_pixels_are_not_tissue(detector: TissueDetector, path: Path) -> None:
    """Unmistakable ink (saturated green/cyan, or pure red with G ~ B) never lands in the mask."""
    rgb = _tile(path).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    green_ink = (g > r + 50) & (np.maximum(g, b) > 100)
    red_ink = (r > 150) & (g < 80) & (b < 90) & (np.abs(g - b) < 20)
    ink = green_ink | red_ink
    assert ink.sum() > 500, "the tile should show pen ink"
    mask = detector.mask(_tile(path))
    assert not mask[ink].any()
    assert detector.pen_mask(_tile(path))[ink].all()


def test_blank_and_tiny_inputs(detector: TissueDetector) -> None:
    white = np.full((64, 64, 3), 245, np.uint8)
    assert not detector.mask(white).any() and detector.tissue_fraction(white) == 0.0
    rgba = np.dstack(
        [np.full((8, 8, 3), (200, 120, 170), np.uint8), np.full((8, 8), 255, np.uint8)]
    )
    assert detector.mask(rgba).shape == (8, 8)
    with pytest.raises(ValueError):
        detector.mask(np.zeros((8, 8), np.uint8))


def test_synthetic_slide_iou(detector: TissueDetector, synth_slide: SynthSlide) -> None:
    """At the ground truth's own grid (mask_mpp = mpp * mask_downsample) IoU >= 0.95."""
    mpp = 0.5 * synth_slide.mask_downsample
    mask, actual = slide_mask(synth_slide.path, mpp, detector)
    assert actual == pytest.approx(mpp)
    assert mask.shape == synth_slide.label_mask.shape
    assert mask_iou(mask, synth_slide.label_mask) >= 0.95


def test_synthetic_pen_slide(detector: TissueDetector, tmp_path: Path) -> None:
    """A pen stroke on glass stays out of the mask at the coarse 16 um/px used at ingestion."""
    s = make_synthetic_slide(
        tmp_path / "pen.tif", seed=5, width_px=4096, height_px=3072, pen=True, mask_downsample=32
    )
    with open_reader(s.path) as reader:
        mask, actual = slide_mask(reader, 16.0, detector)
        thumb = reader.thumbnail(max(mask.shape)).astype(int)
    assert actual == pytest.approx(16.0)
    assert mask_iou(mask, s.label_mask) >= 0.95
    ink = (thumb[..., 1] - thumb[..., 0] > 40) | (thumb[..., 2] - thumb[..., 0] > 60)
    assert ink.sum() > 20
    assert not mask[: ink.shape[0], : ink.shape[1]][ink[: mask.shape[0], : mask.shape[1]]].any()


def test_slide_mask_backends_agree(detector: TissueDetector, fixtures_dir: Path) -> None:
    """Path, OpenSlide handle and TileReader give the same mask of the real CMU slide."""
    path = fixtures_dir / "cmu-1-small-region.svs"
    by_path, mpp = slide_mask(path, 16.0, detector)
    with openslide.OpenSlide(path) as s:
        by_openslide, mpp2 = slide_mask(s, 16.0, detector)
    with open_reader(path) as reader:
        by_reader, mpp3 = detector.slide_mask(reader, 16.0)
    assert mpp == mpp2 == mpp3 == pytest.approx(0.499 * 32)
    assert by_path.shape == (2967 // 32, 2220 // 32)
    np.testing.assert_array_equal(by_path, by_openslide)
    np.testing.assert_array_equal(by_path, by_reader)
    assert 0.2 < by_path.mean() < 0.6  # a strip of skin on a mostly empty glass


def test_slide_without_mpp(detector: TissueDetector, tmp_path: Path) -> None:
    s = make_synthetic_slide(
        tmp_path / "nompp.tif", seed=2, width_px=2048, height_px=1536, with_mpp=False
    )
    mask, actual = slide_mask(s.path, 16.0, detector)
    assert actual is None and mask.shape == (1536 // 32, 2048 // 32)
    assert mask.any()


def test_mask_iou() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    labels = np.array([[0, 1], [2, 0]], np.uint8)  # any nonzero label is foreground
    assert mask_iou(labels > 0, labels) == 1.0
    fine = np.kron(a, np.ones((2, 2)))
    assert mask_iou(fine, a) == 1.0 and mask_iou(a, fine) == 1.0  # compared on the coarser grid
    assert mask_iou(fine[:7, :7], a) == 1.0  # an incomplete last block still lines up
