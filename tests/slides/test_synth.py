"""The synthetic slide generator: OpenSlide-readable pyramids, determinism, ground truth."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pytest
import shapely
import tifffile
from PIL import Image
from shapely.geometry import shape

from autoscope.slides.synth import SynthSlide, main, make_synthetic_slide


def _level(slide: openslide.OpenSlide, level: int) -> np.ndarray:
    return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))[..., :3]


def test_openslide_reads_pyramid_and_mpp(synth_slide: SynthSlide) -> None:
    with openslide.OpenSlide(synth_slide.path) as s:
        assert s.level_count >= 3
        assert s.dimensions == (4096, 3072)
        assert s.level_dimensions[:3] == ((4096, 3072), (2048, 1536), (1024, 768))
        assert max(s.level_dimensions[-1]) < 1024
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.5)
        assert s.properties["tiff.ResolutionUnit"] == "centimeter"


def test_tiles_are_jpeg_ycbcr_420(synth_slide: SynthSlide) -> None:
    with tifffile.TiffFile(synth_slide.path) as tif:
        assert len(tif.pages) >= 3 and len(tif.series[0].levels) >= 1
        for i, page in enumerate(tif.pages):
            assert page.is_tiled and page.tilewidth == 256
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert page.photometric == tifffile.PHOTOMETRIC.YCBCR
            assert tuple(page.subsampling) == (2, 2)
            assert page.subfiletype == (0 if i == 0 else 1)


def test_geojson_matches_mask(synth_slide: SynthSlide) -> None:
    """Rasterise the GeoJSON independently (shapely, pixel centres) and compare with the PNG."""
    mask = np.asarray(Image.open(synth_slide.mask_path))
    np.testing.assert_array_equal(mask, synth_slide.label_mask)
    assert set(np.unique(mask)) == {0, 1, 2}
    doc = json.loads(synth_slide.geojson_path.read_text())
    assert doc["type"] == "FeatureCollection"
    ds = synth_slide.mask_downsample
    rows, cols = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    cx, cy = (cols + 0.5) * ds, (rows + 0.5) * ds
    ours = np.zeros_like(mask)
    for f in doc["features"]:
        assert f["geometry"]["type"] == "Polygon"
        props = f["properties"]
        assert props["objectType"] == "annotation"
        name = props["classification"]["name"]
        assert name in ("tumor", "stroma") and len(props["classification"]["color"]) == 3
        poly = shape(f["geometry"])
        assert poly.is_valid
        ours[shapely.contains_xy(poly, cx, cy)] = 1 if name == "tumor" else 2
    assert (ours == mask).mean() > 0.995
    assert {f["properties"]["classification"]["name"] for f in doc["features"]} == {
        "tumor",
        "stroma",
    }


def test_pixels_follow_labels(synth_slide: SynthSlide) -> None:
    """Glass is bright, tumor darker and bluer than stroma: two distinct textures."""
    ds = synth_slide.mask_downsample
    with openslide.OpenSlide(synth_slide.path) as s:
        img = np.asarray(s.get_thumbnail((4096 // ds, 3072 // ds)))[..., :3].astype(float)
    mask = synth_slide.label_mask[: img.shape[0], : img.shape[1]]
    glass, tumor, stroma = (img[mask == k].mean(axis=0) for k in (0, 1, 2))
    assert glass.min() > 220
    assert tumor.mean() < stroma.mean() < glass.mean()
    assert tumor[2] - tumor[0] > stroma[2] - stroma[0] + 20  # purple vs pink


def test_deterministic_and_seeded(tmp_path) -> None:
    a = make_synthetic_slide(tmp_path / "a.tif", seed=3, width_px=1024, height_px=768)
    b = make_synthetic_slide(tmp_path / "b.tif", seed=3, width_px=1024, height_px=768)
    c = make_synthetic_slide(tmp_path / "c.tif", seed=4, width_px=1024, height_px=768)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.geojson_path.read_text() == b.geojson_path.read_text()
    np.testing.assert_array_equal(a.label_mask, b.label_mask)
    assert not np.array_equal(a.label_mask, c.label_mask)
    assert not list(tmp_path.glob("*.part"))


def test_no_mpp_and_444(tmp_path) -> None:
    s = make_synthetic_slide(
        tmp_path / "x.tif",
        seed=1,
        width_px=1024,
        height_px=768,
        with_mpp=False,
        subsampling="444",
        level_factor=4,
    )
    with openslide.OpenSlide(s.path) as o:
        assert "openslide.mpp-x" not in o.properties
        assert o.level_dimensions == ((1024, 768), (256, 192))
    with tifffile.TiffFile(s.path) as tif:
        assert tuple(tif.pages[0].subsampling) == (1, 1)


def test_pen_stroke_is_on_glass_and_not_tissue(tmp_path) -> None:
    s = make_synthetic_slide(tmp_path / "p.tif", seed=5, width_px=2048, height_px=1536, pen=True)
    ds = s.mask_downsample
    with openslide.OpenSlide(s.path) as o:
        img = np.asarray(o.get_thumbnail((2048 // ds, 1536 // ds)))[..., :3].astype(int)
    ink = (img[..., 1] - img[..., 0] > 40) | (img[..., 2] - img[..., 0] > 60)
    assert ink.sum() > 50
    assert (s.label_mask[: img.shape[0], : img.shape[1]][ink] == 0).all()


def test_cli_writes_a_set(tmp_path, capsys) -> None:
    main([str(tmp_path), "--count", "2", "--seed", "7", "--width-px", "1024", "--height-px", "768"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "slide_000.geojson",
        "slide_000.tif",
        "slide_000_mask.png",
        "slide_001.geojson",
        "slide_001.tif",
        "slide_001_mask.png",
    ]
    assert "slide_001.tif" in capsys.readouterr().out
    with openslide.OpenSlide(tmp_path / "slide_001.tif") as o:
        assert o.dimensions == (1024, 768) and o.level_count == 2
