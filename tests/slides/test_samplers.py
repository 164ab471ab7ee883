"""Samplers give exact, seeded level-0 coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from autoscope.slides.samplers import (
    around_points,
    cap,
    covered,
    foreground_grid,
    grid,
    in_polygons,
    in_regions,
    random_points,
    region_fractions,
    tissue_fractions,
)
from autoscope.slides.units import MPP_TOLERANCE, level0_px, same_mpp


def test_grid_exact() -> None:
    got = grid(1000, 600, 256, 256)
    expect = [[x, y] for y in (0, 256) for x in (0, 256, 512)]
    assert got.dtype == np.int64 and got.tolist() == expect
    assert grid(1000, 600, 256, 512).tolist() == [[0, 0], [512, 0]]
    edges = grid(600, 300, 256, 256, cover_edges=True)
    assert edges.tolist() == [[0, 0], [256, 0], [512, 0], [0, 256], [256, 256], [512, 256]]
    assert grid(100, 100, 256, 256).shape == (0, 2)
    with pytest.raises(ValueError):
        grid(100, 100, 0, 10)


def test_tissue_fractions_and_foreground_grid() -> None:
    mask = np.zeros((8, 8), bool)  # downsample 16: a 128 x 128 level-0 slide
    mask[0:4, 0:4] = True  # tissue in the top-left 64 x 64 level-0 pixels
    mask[4:8, 6:8] = True  # and a strip at x 96..128, y 64..128
    coords = grid(128, 128, 64, 32)
    frac = tissue_fractions(coords, mask, 16, 64)
    assert frac.tolist() == [1.0, 0.5, 0.0, 0.5, 0.25, 0.25, 0.0, 0.0, 0.5]
    got = foreground_grid(mask, 16, 64, 32, min_tissue_fraction=0.5)
    assert got.tolist() == [[0, 0], [32, 0], [0, 32], [64, 64]]
    assert foreground_grid(mask, 16, 64, 64, 1.0).tolist() == [[0, 0]]


def test_random_points_seeded() -> None:
    a = random_points(5, 7, 1000, 800, 100)
    b = random_points(5, 7, 1000, 800, 100)
    assert a.tolist() == b.tolist()
    assert a.tolist() == [[851, 543], [563, 584], [616, 157], [808, 38], [521, 210]]
    assert (a[:, 0] <= 900).all() and (a[:, 1] <= 700).all()
    assert random_points(5, 8, 1000, 800, 100).tolist() != a.tolist()
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True  # tissue is the left half (x < 500 at downsample 100)
    on = random_points(
        50, 3, 1000, 1000, 100, mask=mask, mask_downsample=100, min_tissue_fraction=1.0
    )
    # a patch counts the mask pixels whose centre it covers: x0 < 450 keeps to cells 0..4
    assert len(on) == 50 and (on[:, 0] < 450).all()
    again = random_points(
        50, 3, 1000, 1000, 100, mask=mask, mask_downsample=100, min_tissue_fraction=1.0
    )
    assert on.tolist() == again.tolist()
    none = random_points(4, 1, 1000, 1000, 100, mask=np.zeros((10, 10), bool), mask_downsample=100)
    assert none.shape == (0, 2)


def test_in_polygons_exact() -> None:
    square = box(100, 100, 356, 356)
    assert in_polygons(square, 128, 128, min_overlap=1.0).tolist() == [[128, 128]]
    got = in_polygons([square], 128, 128, min_overlap=0.5)
    # 128-px lattice cells overlapping [100, 356]^2 by >= half: x, y in {128, 256}; edge cells
    # at 0 overlap 28/128 (< half), those at 256 overlap 100/128
    assert got.tolist() == [[128, 128], [256, 128], [128, 256], [256, 256]]
    tri = Polygon([(0, 0), (512, 0), (0, 512)])
    full = in_polygons(tri, 256, 256, min_overlap=1.0)
    assert full.tolist() == [[0, 0]]
    half = in_polygons(tri, 256, 256, min_overlap=0.5)
    assert half.tolist() == [[0, 0], [256, 0], [0, 256]]
    two = in_polygons([box(0, 0, 64, 64), box(1000, 1000, 1064, 1064)], 64, 64, min_overlap=1.0)
    assert two.tolist() == [[0, 0]]  # the second box is off the 64-px lattice: no full patch
    assert in_polygons([], 64, 64).shape == (0, 2)


def test_in_polygons_union_of_touching_polygons() -> None:
    left, right = box(0, 0, 100, 200), box(100, 0, 200, 200)
    # neither half alone holds a whole 128-px patch; their union holds four
    assert in_polygons(left, 128, 64, min_overlap=1.0).shape == (0, 2)
    got = in_polygons([left, right], 128, 64, min_overlap=1.0)
    assert got.tolist() == [[0, 0], [64, 0], [0, 64], [64, 64]]


def test_in_regions_overlap_and_labels() -> None:
    square = box(0, 0, 100, 100)
    xy, lab = in_regions({1: square}, 50, 25, min_overlap=1.0, width=1000, height=1000)
    assert sorted(map(tuple, xy)) == [(x, y) for x in (0, 25, 50) for y in (0, 25, 50)]
    assert (lab == 1).all()
    xy2, _ = in_regions({1: square}, 50, 25, min_overlap=0.5, width=1000, height=1000)
    assert len(xy2) > len(xy)  # half-covered patches count at 0.5
    two = {0: box(0, 0, 60, 100), 1: box(60, 0, 100, 100)}
    xy3, lab3 = in_regions(two, 50, 50, min_overlap=0.5, width=100, height=100)
    assert dict(zip(map(tuple, xy3), lab3, strict=True)) == {
        (0, 0): 0,
        (0, 50): 0,
        (50, 0): 1,
        (50, 50): 1,
    }
    edge, _ = in_regions({0: box(0, 0, 100, 100)}, 50, 50, 0.9, 80, 80)
    assert len(edge) == 1  # patches must lie inside the slide


def test_one_coverage_rule_for_masks_and_regions() -> None:
    """A mask and the polygon it rasterises give the same patches (training = inference)."""
    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True  # 50 x 50 level-0 pixels at downsample 10
    xy = foreground_grid(mask, 10, 20, 20, 0.5, width=100, height=100)
    expected = {(x, y) for x in (0, 20, 40) for y in (0, 20, 40)} - {(40, 40)}  # 25 % is too little
    assert {(int(x), int(y)) for x, y in xy} == expected
    coords = grid(100, 100, 20, 20)
    frac_mask = tissue_fractions(coords, mask, 10, 20)
    frac_poly = region_fractions(coords, box(0, 0, 50, 50), 20)
    assert np.allclose(frac_mask, frac_poly)
    assert covered(np.array([0.5 - 1e-12, 0.49]), 0.5).tolist() == [True, False]


def test_around_points_cap_and_units() -> None:
    c = around_points(np.array([[100.0, 100.0], [5.0, 995.0]]), 64, 1000, 1000)
    assert c.tolist() == [[68, 68], [0, 936]]
    assert len(cap(100, 10, np.random.default_rng(0))) == 10
    assert cap(5, None, np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4]
    assert level0_px(0.25, 0.5, 224) == 448 and level0_px(0.5, 0.5, 0) == 1
    assert same_mpp(0.5, 0.5 * (1 + MPP_TOLERANCE / 2)) and not same_mpp(0.5, 0.55)
