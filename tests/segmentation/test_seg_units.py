"""Segmentation pieces on small arrays: loss and metrics, stitching, masks, polygons, TIFF, nets."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from autoscope.datasets.seg_masks import IGNORE, rasterize_patch, read_label_mask
from autoscope.errors import UserError
from autoscope.infer.seg_stitch import BandStitcher, window
from autoscope.infer.seg_writers import class_polygons, qupath_annotations, write_label_tiff
from autoscope.models.seg_losses import DiceCE
from autoscope.models.seg_metrics import confusion, dice_iou, summary


def test_dice_ce_ignores_unannotated_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :4] = IGNORE
    loss = DiceCE()
    changed = logits.clone()
    changed[:, :, :4] = torch.randn(2, 3, 4, 8) * 10  # only ignored pixels differ
    assert torch.allclose(loss(logits, target), loss(changed, target))
    perfect = torch.nn.functional.one_hot(torch.where(target == IGNORE, 0, target), 3)
    assert loss(perfect.permute(0, 3, 1, 2).float() * 50, target) < 0.01
    assert loss(logits, torch.full_like(target, IGNORE)) == 0


def test_dice_and_iou_from_the_pixel_confusion() -> None:
    truth = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE, IGNORE]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = confusion(pred, truth, 3)
    assert int(cm.sum()) == 6  # ignored pixels are not counted
    dice, iou = dice_iou(cm)
    assert dice[1] == pytest.approx(2 * 2 / (2 * 2 + 1))  # tp 2, fp 1, fn 0
    assert iou[0] == pytest.approx(1 / 3)
    out = summary(cm, "val/", ["bg", "tumor", "stroma"])
    assert out["val/dice"] == pytest.approx(dice.mean()) and "val/iou/stroma" in out


def test_stitching_crops_of_one_map_gives_that_map_without_seams() -> None:
    rng = np.random.default_rng(0)
    h, w, tile, step = 70, 90, 32, 24
    truth = rng.random((3, h, w)).astype(np.float32)
    out = np.zeros_like(truth)
    seen = np.zeros((h, w), bool)

    def sink(probs: np.ndarray, weight: np.ndarray, top: int) -> None:
        assert probs.shape[1] <= tile  # the band never holds more than one tile's rows
        out[:, top : top + probs.shape[1]] = probs
        seen[top : top + probs.shape[1]] = weight > 0

    s = BandStitcher(3, w, h, tile, sink, "hann")
    for y in range(0, h, step):
        for x in range(0, w, step):
            crop = np.zeros((3, tile, tile), np.float32)
            part = truth[:, y : y + tile, x : x + tile]
            crop[:, : part.shape[1], : part.shape[2]] = part
            s.add(crop, x, y)
    s.close()
    assert seen.all()
    np.testing.assert_allclose(out, truth, rtol=1e-5, atol=1e-6)
    assert window(8).min() > 0 and window(8)[4, 4] == window(8).max()


def test_polygons_become_patch_masks_with_holes_and_a_fill() -> None:
    from shapely.geometry import Polygon

    square = Polygon(
        [(10, 10), (50, 10), (50, 50), (10, 50)], [[(20, 20), (30, 20), (30, 30), (20, 30)]]
    )
    m = rasterize_patch({2: square}, 0, 0, scale=2.0, patch_px=32, fill=IGNORE)
    # level-0 10..50 at 2 level-0 px per pixel: pixels 5..24, hole 10..14
    assert m[7, 7] == 2 and m[12, 12] == IGNORE and m[0, 0] == IGNORE
    assert int((m == 2).sum()) == 20 * 20 - 5 * 5
    assert rasterize_patch({1: square}, 0, 0, 2.0, 32, fill=0)[0, 0] == 0


def test_label_masks_are_checked_against_their_image(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 16), 1, np.uint8)).save(tmp_path / "a_mask.png")
    with pytest.raises(
        UserError, match=r"a_mask.png: label mask is 16x8 px but its image a.png is 16x16"
    ):
        read_label_mask(tmp_path / "a_mask.png", tmp_path / "a.png", 3)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "a_mask.png")
    with pytest.raises(UserError, match="label value 7 is no class"):
        read_label_mask(tmp_path / "a_mask.png", tmp_path / "a.png", 3)


def test_an_xml_without_microns_per_pixel_on_a_slide_without_mpp_is_refused(tmp_path: Path) -> None:
    from autoscope.datasets.segmentation import _slide_mpp

    xml = tmp_path / "s.xml"
    xml.write_text('<Annotations><Annotation Id="1"><Regions/></Annotation></Annotations>')
    row = pd.Series({"name": "s", "mpp_x": np.nan})
    with pytest.raises(
        UserError, match=r"s.xml: the XML has no MicronsPerPixel and slide 's' has no MPP"
    ):
        _slide_mpp(row, xml)
    assert _slide_mpp(pd.Series({"name": "s", "mpp_x": 0.25}), xml) == 0.25


@pytest.mark.parametrize(
    "coords, match",
    [
        ([[0, 0], [10, 0], [0, 0]], "vertices|malformed"),  # too few vertices
        ([[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]], "Self-intersection"),
    ],
)
def test_bad_polygons_are_refused_with_file_and_feature(tmp_path: Path, coords, match) -> None:
    from autoscope.datasets.annotations import read_annotations

    geo = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [coords]},
           "properties": {"classification": {"name": "tumor"}}}  # fmt: skip
    (tmp_path / "a.geojson").write_text(json.dumps(geo))
    with pytest.raises(UserError, match=match) as e:
        read_annotations(tmp_path / "a.geojson")
    assert "a.geojson: feature 0" in str(e.value)


def test_label_map_polygons_geojson_and_pyramidal_tiff(tmp_path: Path) -> None:
    import openslide

    labels = np.zeros((600, 700), np.uint8)
    labels[100:300, 100:400] = 2  # class 1, 200 x 300 px
    labels[150:200, 150:200] = 1  # class 0 inside it: a hole in class 1
    polys = class_polygons(labels, 3, px0=2.0, simplify_px0=1.0, min_area_px0=10.0)
    assert set(polys) == {0, 1}
    assert polys[1].area == pytest.approx((200 * 300 - 50 * 50) * 4)  # level-0 px²
    assert len(polys[1].interiors) == 1
    geo = qupath_annotations(polys, [{"name": n, "color": "#102030"} for n in "abc"], 1e-6)
    props = geo["features"][1]["properties"]
    assert props["classification"] == {"name": "b", "color": [16, 32, 48]}
    info = write_label_tiff(labels, 1.0, tmp_path / "labels.tif")
    assert info["levels"][0] == [700, 600] and len(info["levels"]) >= 2
    with openslide.OpenSlide(str(tmp_path / "labels.tif")) as s:
        assert s.level_dimensions[0] == (700, 600) and s.level_count == len(info["levels"])
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(1.0)


def test_dense_nets_and_dihedral_tta_keep_the_input_frame() -> None:
    from autoscope.models.classifier import PatchClassifier, head_name
    from autoscope.models.seg_nets import seg_unet

    net = seg_unet(3, widths=[8, 16], depths=[1, 1], stem_width=8)
    assert net(torch.randn(1, 3, 37, 41)).shape == (1, 3, 37, 41)  # padded, cropped back
    assert head_name(net).startswith("head")
    pointwise = torch.nn.Conv2d(3, 2, 1)  # a per-pixel net: every view gives the same map
    model = PatchClassifier(pointwise, channels_last=False).eval()
    x = torch.randint(0, 255, (2, 16, 16, 3), dtype=torch.uint8)
    plain = torch.softmax(model(x), dim=1)
    torch.testing.assert_close(model.predict_tta(x), plain, rtol=1e-5, atol=1e-6)


def test_predict_patches_gives_masks_and_areas() -> None:
    from autoscope.infer.segment import predict_patches
    from autoscope.models.classifier import PatchClassifier
    from autoscope.project import ClassSpec

    torch.manual_seed(0)
    model = PatchClassifier(torch.nn.Conv2d(3, 2, 1), channels_last=False).eval()
    spec = SimpleNamespace(patch_px=8, device="cpu", classes=(ClassSpec("a"), ClassSpec("b")))
    out = predict_patches(model, np.zeros((3, 8, 8, 3), np.uint8), spec)
    assert len(out) == 3 and np.asarray(out[0]["mask"]).shape == (8, 8)
    assert sum(out[0]["areas_px"].values()) == 64
    with pytest.raises(ValueError, match="shape"):
        predict_patches(model, np.zeros((1, 4, 4, 3), np.uint8), spec)


def test_pre_cut_images_with_label_masks_give_aligned_patch_masks(tmp_path: Path) -> None:
    from PIL import Image

    from autoscope.datasets.segmentation import SegTargets
    from autoscope.datasets.spec import SourceSpec
    from autoscope.project import ClassSpec

    for i in range(3):
        img = np.zeros((20, 24, 3), np.uint8)
        mask = np.full((20, 24), IGNORE, np.uint8)
        mask[:, : 8 + 4 * i] = 1
        mask[:5, :4] = 0
        Image.fromarray(img).save(tmp_path / f"p{i}.png")
        Image.fromarray(mask).save(tmp_path / f"p{i}_mask.png")
    src = SourceSpec(type="masks", path=str(tmp_path))
    ds = SimpleNamespace(name="m", sources=(src,), class_map={}, split=SimpleNamespace(seed=0),
                         patch_px=10, mpp=None)  # fmt: skip
    project = SimpleNamespace(class_names=["a", "b"], classes=[ClassSpec("a"), ClassSpec("b")])
    t = SegTargets()
    plan, points = t.plan(ds, project, pd.DataFrame(), None)
    assert len(plan) == 3 and points.empty and set(plan["label_idx"]) == {1}
    plan["shard"], plan["index"], plan["split"] = "shards/shard_00000.npy", range(3), "train"
    stats = t.write(plan, tmp_path / "ds", ds, project, {})
    masks = np.load(tmp_path / "ds" / "masks" / "shard_00000.npy")
    assert masks.shape == (3, 10, 10)
    # centre square 20x20 of 20x24 (columns 2..21), halved: class-1 columns 8+4i-2 -> 3, 5, 7
    assert [int((m[5] == 1).sum()) for m in masks] == [3, 5, 7]
    assert stats["kind"] == "segmentation" and stats["ignored_pixels"] > 0
    with pytest.raises(UserError, match="no label mask beside it"):
        (tmp_path / "p0_mask.png").unlink()
        t.plan(ds, project, pd.DataFrame(), None)


def test_imagescope_polygons_give_patches_with_pixel_masks(tmp_path: Path) -> None:
    from autoscope.datasets.segmentation import SegTargets
    from autoscope.datasets.spec import SourceSpec
    from autoscope.project import ClassSpec

    def region(text: str, x0: int, x1: int) -> str:
        pts = [(x0, 0), (x1, 0), (x1, 400), (x0, 400)]
        verts = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in pts)
        return f'<Region Id="1" Text="{text}"><Vertices>{verts}</Vertices></Region>'

    xml = tmp_path / "s1.xml"
    body = region("tumor", 0, 200) + region("stroma", 200, 400)
    xml.write_text(f'<Annotations MicronsPerPixel="0.5"><Annotation Id="1" Name="x"><Regions>{body}'
                   "</Regions></Annotation></Annotations>")  # fmt: skip
    row = {"slide_id": "abc123", "name": "s1", "status": "ok", "error": "", "path": "s1.tif"}
    registry = pd.DataFrame([{**row, "width_px": 800, "height_px": 800, "mpp_x": 0.5}])
    src = SourceSpec(type="xml", path=str(xml))
    ds = SimpleNamespace(name="x", sources=(src,), class_map={}, split=SimpleNamespace(seed=0),
                         patch_px=50, mpp=1.0, stride=lambda s: 50, max_patches_per_slide=None,
                         setting=lambda s, k: {"min_overlap": 0.5, "max_patches_per_slide": None,
                                               "label_level": "tissue"}[k])  # fmt: skip
    project = SimpleNamespace(
        class_names=["tumor", "stroma"], classes=[ClassSpec("tumor"), ClassSpec("stroma")]
    )
    t = SegTargets()
    plan, _ = t.plan(ds, project, registry, None)
    assert len(plan) == 16 and set(plan["x"]) == {0, 100, 200, 300}  # 100 level-0 px patches
    assert (plan["label_idx"] == (plan["x"] >= 200)).all()  # the dominant class
    plan = plan.sort_values(["x", "y"]).reset_index(drop=True)
    plan["shard"], plan["index"], plan["split"] = "shards/shard_00000.npy", range(16), "train"
    stats = t.write(plan, tmp_path / "ds", ds, project, {"abc123": ("s1.tif", 0.5)})
    masks = np.load(tmp_path / "ds" / "masks" / "shard_00000.npy")
    assert (masks[:8] == 0).all() and (masks[8:] == 1).all()  # tumor left of x=200, stroma right
    assert stats["pixels"] == {"tumor": 8 * 2500, "stroma": 8 * 2500}


def test_segment_settings_are_checked_with_one_line() -> None:
    from autoscope.infer.seg_settings import SegSettings

    def spec(**seg: object) -> SimpleNamespace:
        return SimpleNamespace(patch_px=64, segment=seg)

    st = SegSettings.from_spec(spec())
    assert (st.tile_px, st.step_px, st.window) == (256, 224, "hann")  # at least 256 px tiles
    assert SegSettings.from_spec(spec(tile_px=96, overlap_px=16)).step_px == 80
    with pytest.raises(UserError, match=r"infer.segment.overlap: not a segmentation setting"):
        SegSettings.from_spec(spec(overlap=3))
    with pytest.raises(UserError, match=r"infer.segment.overlap_px: 300 must be in 0..255"):
        SegSettings.from_spec(spec(overlap_px=300))
    with pytest.raises(UserError, match=r"infer.segment.window"):
        SegSettings.from_spec(spec(window="gauss"))
