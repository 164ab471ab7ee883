"""The tile reader matches OpenSlide read_region, on a real SVS and on synthetic TIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from autoscope.errors import UserError
from autoscope.slides.reader import open_reader
from autoscope.slides.synth import make_synthetic_slide

FIXTURES = Path(__file__).parent.parent / "fixtures"
CMU = FIXTURES / "cmu-1-small-region.svs"
# libjpeg-turbo in imagecodecs and in openslide-bin decode identically today; allow 2 levels of
# rounding difference should their versions drift apart (documented tolerance)
MAX_DIFF = 2


def openslide_rgb(path: Path, x0: int, y0: int, level: int, w: int, h: int) -> np.ndarray:
    """OpenSlide's read_region composited over white (OpenSlide's background convention)."""
    with openslide.OpenSlide(str(path)) as slide:
        rgba = np.asarray(slide.read_region((x0, y0), level, (w, h))).astype(np.float64)
    a = rgba[..., 3:] / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == np.uint8
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(scope="module")
def synth444(tmp_path_factory: pytest.TempPathFactory):
    """A small 4:4:4 synthetic slide with 3 levels."""
    out = tmp_path_factory.mktemp("synth444")
    return make_synthetic_slide(
        out / "s444.tif", seed=3, width_px=2500, height_px=1800, subsampling="444"
    )


def write_tiff(path: Path, img: np.ndarray, *, compression: str = "jpeg") -> Path:
    """A 2-level tiled TIFF (level 1 = every second pixel) at 0.25 um/px."""
    with tifffile.TiffWriter(path) as tw:
        for lvl in range(2):
            tw.write(
                img[:: 2**lvl, :: 2**lvl],
                tile=(128, 128),
                photometric="rgb",
                compression=compression,
                subfiletype=lvl,
                resolution=(4e4, 4e4),
                resolutionunit="CENTIMETER",
            )
    return path


CMU_REGIONS = [
    (0, 0, 240, 240),  # one whole stored tile (aligned fast path)
    (480, 720, 240, 240),
    (100, 37, 300, 211),  # unaligned, across tiles
    (2100, 2900, 200, 150),  # past the right and bottom edges: white padding
    (-20, -10, 64, 64),  # before the origin
]


def test_cmu_svs_matches_openslide() -> None:
    with open_reader(CMU) as reader:
        assert reader.vendor == "aperio"
        assert reader.fast_levels[0] is not None, "the SVS must take the fast path"
        assert reader.level_dimensions == ((2220, 2967),)
        assert reader.mpp == pytest.approx(0.499)
        for x, y, w, h in CMU_REGIONS:
            got = reader.read_region(x, y, 0, w, h)
            assert got.shape == (h, w, 3)
            assert max_diff(got, openslide_rgb(CMU, x, y, 0, w, h)) <= MAX_DIFF, (x, y, w, h)
        edge = reader.read_region(2100, 2900, 0, 200, 150)
        assert (edge[100:, :] == 255).all() and (edge[:, 150:] == 255).all()


@pytest.mark.parametrize("which", ["synth420", "synth444"])
def test_synthetic_levels_match_openslide(which: str, synth_slide, synth444) -> None:
    path = (synth_slide if which == "synth420" else synth444).path
    with open_reader(path) as reader:
        assert reader.level_count >= 3
        assert all(f is not None for f in reader.fast_levels)
        for level in range(reader.level_count):
            ds = int(reader.level_downsamples[level])
            w, h = reader.level_dimensions[level]
            for lx, ly, pw in [(0, 0, 256), (256, 256, 256), (37, 91, 224), (w - 100, h - 50, 224)]:
                x0, y0 = lx * ds, ly * ds
                got = reader.read_region(x0, y0, level, pw, pw)
                ref = openslide_rgb(path, x0, y0, level, pw, pw)
                assert max_diff(got, ref) <= MAX_DIFF, (level, lx, ly, pw)


def test_cache_is_bounded_and_reused(synth_slide) -> None:
    with open_reader(synth_slide.path, cache_mb=1) as reader:
        for x in range(0, 3000, 224):
            reader.read_region(x + 5, 7, 0, 224, 224)
        assert reader.cache.nbytes <= 2**20 + 256 * 256 * 3
        a = reader.read_region(1000, 1000, 0, 100, 100)
        b = reader.read_region(1000, 1000, 0, 100, 100)  # the second read comes from the cache
        a[...] = 0  # results are the caller's own arrays, never views of the cache
        assert (b != 0).any() and (reader.read_region(1000, 1000, 0, 100, 100) == b).all()


def test_read_into_out_matches(synth_slide) -> None:
    with open_reader(synth_slide.path) as reader:
        out = np.zeros((2, 256, 256, 3), np.uint8)
        reader.read_region(512, 256, 0, 256, 256, out=out[1])
        assert (out[1] == reader.read_region(512, 256, 0, 256, 256)).all()
        assert (out[0] == 0).all()


def test_openslide_backend_and_fallback(tmp_path: Path, synth_slide) -> None:
    """The forced OpenSlide backend and a non-JPEG TIFF (OpenSlide fallback) agree."""
    with (
        open_reader(synth_slide.path, backend="openslide") as slow,
        open_reader(synth_slide.path) as fast,
    ):
        assert all(f is None for f in slow.fast_levels)
        for level in range(fast.level_count):
            assert (
                max_diff(
                    slow.read_region(304, 200, level, 150, 90),
                    fast.read_region(304, 200, level, 150, 90),
                )
                <= MAX_DIFF
            )
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    path = write_tiff(tmp_path / "deflate.tif", img, compression="zlib")
    with open_reader(path) as reader:
        assert reader.fast_levels == [None, None]
        assert (reader.read_region(10, 20, 0, 50, 40) == img[20:60, 10:60]).all()
        assert (reader.read_region(380, 0, 0, 40, 10)[:, 20:] == 255).all()
        assert reader.mpp == pytest.approx(0.25)


def test_best_level_and_read_patch(synth_slide) -> None:
    with open_reader(synth_slide.path) as reader:
        assert reader.best_level(0.5) == (0, 1.0)
        assert reader.best_level(1.0) == (1, 1.0)
        assert reader.best_level(1.004) == (1, 1.0)  # within 1 %: no resampling
        level, scale = reader.best_level(1.5)
        assert level == 1 and scale == pytest.approx(1.5)
        assert reader.best_level(0.25) == (0, 0.5)
        # a matching level: the patch is exactly that level's pixels
        assert (
            reader.read_patch(512, 512, 1.0, 64) == reader.read_region(512, 512, 1, 64, 64)
        ).all()
        odd = reader.read_patch(100, 100, 0.8, 48)
        assert odd.shape == (48, 48, 3) and odd.dtype == np.uint8


def test_read_patch_integer_reduction() -> None:
    """A single-level slide read at twice its mpp: each pixel is a 2x2 box mean."""
    with open_reader(CMU) as reader:
        assert reader.best_level(0.998) == (0, pytest.approx(2.0))
        patch = reader.read_patch(512, 300, 0.998, 32)
        src = reader.read_region(512, 300, 0, 64, 64).astype(np.float64)
        mean = src.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        assert np.abs(patch - mean).max() <= 1


def test_thumbnail(synth_slide) -> None:
    with open_reader(synth_slide.path) as reader:
        thumb = reader.thumbnail(512)
        w0, h0 = reader.level_dimensions[0]
        assert thumb.shape == (round(h0 * 512 / w0), 512, 3)
        lvl = reader.level_count - 1
        lw, lh = reader.level_dimensions[lvl]
        small = reader.read_region(0, 0, lvl, lw, lh).astype(np.float64).mean()
        assert abs(thumb.astype(np.float64).mean() - small) < 3
    with open_reader(CMU) as reader:
        assert max(reader.thumbnail(300).shape[:2]) == 300


def test_user_errors(tmp_path: Path, synth_slide) -> None:
    with pytest.raises(UserError, match="not found"):
        open_reader(tmp_path / "nope.svs")
    with pytest.raises(UserError, match="cannot open"):
        open_reader(FIXTURES / "broken.svs")
    nompp = make_synthetic_slide(
        tmp_path / "nompp.tif", seed=1, width_px=600, height_px=500, with_mpp=False
    )
    with open_reader(nompp.path) as reader, pytest.raises(UserError, match="no mpp"):
        reader.read_patch(0, 0, 0.5, 64)
    with open_reader(nompp.path, mpp_x=0.5) as reader:
        assert reader.best_level(0.5) == (0, 1.0)


def test_decode_targets_are_placed_off_32_byte_alignment(synth_slide) -> None:
    from autoscope.slides.tiff_fast import ALIGN_OFFSET, empty_rgb

    for shape in [(256, 256, 3), (4, 224, 224, 3), (1, 1, 3)]:
        arr = empty_rgb(shape)
        assert arr.shape == shape and arr.dtype == np.uint8
        assert arr.flags.c_contiguous and arr.flags.writeable
        assert arr.ctypes.data % 64 == ALIGN_OFFSET
    with open_reader(synth_slide.path) as reader:
        tile = reader.read_region(256, 256, 0, 256, 256)  # decoded straight into the result
        assert tile.ctypes.data % 64 == ALIGN_OFFSET


def test_self_check_turns_a_wrong_fast_path_off(
    monkeypatch: pytest.MonkeyPatch, synth_slide
) -> None:
    """Should the fast path ever decode differently from OpenSlide, the reader uses OpenSlide."""
    from autoscope.slides import tiff_fast

    monkeypatch.setattr(tiff_fast, "JCS_YCBCR", tiff_fast.JCS_RGB)  # a wrong colour convention
    with open_reader(synth_slide.path) as reader:
        assert all(f is None for f in reader.fast_levels)
        got = reader.read_region(512, 512, 0, 100, 80)
        assert max_diff(got, openslide_rgb(synth_slide.path, 512, 512, 0, 100, 80)) == 0


def test_near_integer_downsample_maps_to_nearest_pixel(tmp_path: Path) -> None:
    """Odd level sizes give downsamples like 3.995; level-0 points map to the nearest pixel."""
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (1003, 2601, 3), dtype=np.uint8)
    path = tmp_path / "odd.tif"
    with tifffile.TiffWriter(path) as tw:
        for lvl, step in enumerate((1, 4)):
            tw.write(
                img[::step, ::step],
                tile=(128, 128),
                photometric="rgb",
                compression="jpeg",
                subfiletype=lvl,
                resolution=(2e4, 2e4),
                resolutionunit="CENTIMETER",
            )
    with open_reader(path) as reader:
        ds = reader.level_downsamples[1]
        assert ds != 4.0 and abs(ds - 4.0) < 0.01
        fast = reader.fast_levels[1]
        for x0 in (4, 600, 2400):  # 2400 / ds = 600.6: OpenSlide's geometry, not 2400 / 4
            k = int(np.floor(x0 / ds + 0.5))
            assert (reader.read_region(x0, 0, 1, 32, 16) == fast.read(k, 0, 32, 16)).all()
        # OpenSlide blends around 600.6: the nearest pixel (601) is closer than floor's (600)
        ref = openslide_rgb(path, 2400, 0, 1, 64, 16).astype(np.float64)
        err = {k: np.abs(fast.read(k, 0, 64, 16) - ref).mean() for k in (600, 601)}
        assert err[601] < err[600]
