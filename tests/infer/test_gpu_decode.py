"""Device JPEG decoding (torchvision.io.decode_jpeg), run here on the CPU with the same code.

Patches cut from device-decoded tiles must equal the reader's within ``MAX_DIFF`` anywhere and
``MEAN_DIFF`` on average: two JPEG decoders may differ by an IDCT rounding step (both are
libjpeg-turbo on the CPU, where they agree exactly; nvJPEG on a GPU is checked at open time by
``open_gpu_source`` with its own looser limits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_helpers import tiny_classifier

from autoscope.errors import UserError
from autoscope.infer.engine import predict_slide
from autoscope.infer.gpu_decode import open_gpu_source
from autoscope.slides.reader import open_reader
from autoscope.slides.synth import make_synthetic_slide

MAX_DIFF = 2  # IDCT rounding of two decoders, 0-255 levels
MEAN_DIFF = 0.5
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["420", "444"])
def synth(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpudec") / f"synth_{request.param}.tif"
    return make_synthetic_slide(
        out, seed=3, width_px=2048, height_px=1536, subsampling=request.param
    )


def _coords(path: str, level: int, patch_px: int, n: int = 40) -> np.ndarray:
    """Random level-0 corners, some hanging over the slide's edges, plus tile-aligned ones."""
    with open_reader(path) as r:
        w, h = r.level_dimensions[0]
        ds = r.level_downsamples[level]
        tile = r.fast_levels[level].tile_w
    rng = np.random.default_rng(level * 1000 + patch_px)
    span = int(patch_px * ds)
    pts = rng.integers([-span // 2, -span // 2], [w - span // 3, h - span // 3], (n, 2))
    aligned = np.array([[0, 0], [round(tile * ds), round(2 * tile * ds)]])
    return np.concatenate([pts, aligned]).astype(np.int64)


def _check(path: str, level: int, patch_px: int) -> None:
    with open_reader(path) as r:
        mpp = r.level_mpp(level)
    coords = _coords(path, level, patch_px)
    src, why = open_gpu_source(path, mpp=mpp, patch_px=patch_px, device=CPU, probe=coords)
    assert src is not None, why
    try:
        got = src.patches(coords).numpy()
        ref = src.reader_patches(coords)
        assert got.shape == ref.shape == (len(coords), patch_px, patch_px, 3)
        diff = np.abs(got.astype(np.int16) - ref)
        assert diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF, (diff.max(), diff.mean())
        assert src.decoded > 0
    finally:
        src.close()


@pytest.mark.parametrize("level", [0, 1])
@pytest.mark.parametrize("patch_px", [256, 100])
def test_synthetic_patches_equal_reader(synth, level, patch_px):
    _check(str(synth.path), level, patch_px)


@pytest.mark.parametrize("patch_px", [240, 224])
def test_aperio_rgb_patches_equal_reader(fixtures_dir, patch_px):
    _check(str(fixtures_dir / "cmu-1-small-region.svs"), 0, patch_px)


def test_aperio_colours_are_checked(fixtures_dir, monkeypatch):
    """Without the Adobe RGB marker, RGB tiles decode as YCbCr: the open-time check refuses."""
    from autoscope.slides import tiff_fast

    monkeypatch.setattr(tiff_fast, "ADOBE_RGB", b"")
    path = str(fixtures_dir / "cmu-1-small-region.svs")
    src, why = open_gpu_source(
        path, mpp=0.499, patch_px=224, device=CPU, probe=np.array([[0, 0], [500, 700]])
    )
    assert src is None and "differs" in why


def test_decode_error_falls_back_to_reader(synth):
    path = str(synth.path)
    with open_reader(path) as r:
        mpp = r.mpp
    coords = _coords(path, 0, 128, n=6)
    src, _ = open_gpu_source(path, mpp=mpp, patch_px=128, device=CPU)
    try:
        src.fast.jpeg_stream = lambda tx, ty: b"\xff\xd8not a jpeg\xff\xd9"
        got = src.batch(coords).numpy()
        assert src.fallback_batches == 1
        assert np.array_equal(got, src.reader_patches(coords))
    finally:
        src.close()


def test_engine_predictions_match_cpu_path(synth_slide):
    model = tiny_classifier()
    kw = {"mpp": 2.0, "patch_px": 32, "batch_size": 16, "workers": 1, "progress": False}
    cpu = predict_slide(model, synth_slide.path, decode="cpu", device="cpu", **kw)
    dev = predict_slide(model, synth_slide.path, decode="gpu", device="cpu", **kw)
    assert cpu.decode == "cpu" and dev.decode == "device", dev.decode_note
    assert len(cpu.coords) > 16 and np.array_equal(cpu.coords, dev.coords)
    assert np.abs(cpu.probs - dev.probs).max() <= 1e-5
    assert dev.timings["tiles_decoded"] > 0


def test_resampling_falls_back_to_cpu_path(synth_slide):
    model = tiny_classifier()
    kw = {"patch_px": 32, "batch_size": 16, "workers": 1, "progress": False, "device": "cpu"}
    pred = predict_slide(model, synth_slide.path, mpp=1.5, decode="gpu", **kw)
    assert pred.decode == "cpu" and "resampling" in pred.decode_note
    assert len(pred.coords) > 0


def test_unknown_decode_mode_is_a_user_error(synth_slide):
    with pytest.raises(UserError, match="infer.decode"):
        predict_slide(tiny_classifier(), synth_slide.path, mpp=2.0, patch_px=32, decode="nvjpeg")


def test_tiles_are_decoded_once_per_window(synth):
    from autoscope.infer.gpu_decode import WINDOW_BATCHES

    path = str(synth.path)
    with open_reader(path) as r:
        mpp = r.mpp
    src, _ = open_gpu_source(path, mpp=mpp, patch_px=128, device=CPU)
    try:
        a, b = np.array([[0, 0], [200, 200]]), np.array([[1024, 1024]])
        src.patches(a)
        first = src.decoded
        assert first == 4  # the 2 x 2 tiles under (200..327)^2, the first patch's among them
        src.patches(a)
        assert src.decoded == first, "a tile used by the last batch is not decoded again"
        for _ in range(WINDOW_BATCHES):
            src.patches(b)
        src.patches(a)
        assert src.decoded == 2 * first + 1, "tiles unused for a whole window were dropped"
    finally:
        src.close()
