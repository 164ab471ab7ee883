"""Bad inputs and unusual formats at ingest: one line each, the batch goes on (real files only).

Fixtures are written here: tiled TIFFs (tifffile), DICOM WSIs (pydicom: VL Whole Slide
Microscopy, TILED_FULL, one file per level), OME-TIFF (tifffile) and OME-Zarr (zarr).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from autoscope.config import compose, stores_spec
from autoscope.slides.reader import open_reader
from autoscope.slides.registry import load_registry
from autoscope.stages.slides import ingest

COARSE_MPP = 28.97  # coarser than the 16 um/px tissue mask


def _tissue_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Glass with a block of H&E-like (pink/purple) texture in the middle."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 240, np.uint8)
    block = rng.integers(0, 40, (h // 2, w // 2, 3)) + np.array([150, 60, 140])
    img[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = block.astype(np.uint8)
    return img


def tiled_tiff(path: Path, img: np.ndarray, mpp: float | None) -> Path:
    res = (
        {}
        if mpp is None
        else {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    )
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", compression="jpeg", **res)
    return path


def dicom_wsi(folder: Path, *, mpp: float = COARSE_MPP, w: int = 384, h: int = 320,
              syntax: str = "jpeg", levels: int = 2) -> Path:  # fmt: skip
    """A DICOM WSI series (one file per level, TILED_FULL); syntax jpeg|rle (OpenSlide: no RLE)."""
    import pydicom
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    img0, tile = _tissue_image(w, h), 128
    series, study, frame_ref = generate_uid(), generate_uid(), generate_uid()
    for i in range(levels):
        img = img0[:: 2**i, :: 2**i].copy()
        lh, lw, _ = img.shape
        tiles = []
        for ty in range(0, lh, tile):
            for tx in range(0, lw, tile):
                t = np.full((tile, tile, 3), 255, np.uint8)
                blk = img[ty : ty + tile, tx : tx + tile]
                t[: blk.shape[0], : blk.shape[1]] = blk
                tiles.append(t)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        jpeg = syntax == "jpeg"
        meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = (
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_ref
        ds.Modality, ds.PatientName, ds.PatientID, ds.Manufacturer = "SM", "Test^Slide", "1", "test"
        ds.ImageType = ["ORIGINAL" if i == 0 else "DERIVED", "PRIMARY", "VOLUME", "NONE"]
        ds.InstanceNumber, ds.SeriesNumber = i + 1, 1
        ds.Rows = ds.Columns = tile
        ds.NumberOfFrames = len(tiles)
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = lw, lh
        ds.TotalPixelMatrixFocalPlanes = ds.NumberOfOpticalPaths = 1
        ds.DimensionOrganizationType = "TILED_FULL"
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, 8, 8, 7
        ds.PixelRepresentation = ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = "YBR_FULL_422" if jpeg else "RGB"
        lmpp = mpp * 2**i
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = lw * lmpp / 1000, lh * lmpp / 1000
        ds.ImagedVolumeDepth = 0.001
        ds.SpecimenLabelInImage = ds.BurnedInAnnotation = ds.ExtendedDepthOfField = "NO"
        ds.FocusMethod, ds.VolumetricProperties, ds.ContainerIdentifier = "AUTO", "VOLUME", "s1"
        ds.LossyImageCompression = "01" if jpeg else "00"
        ds.AcquisitionDateTime, ds.ContentDate, ds.ContentTime = (
            "20260101000000",
            "20260101",
            "000000",
        )
        op, colour, kind = Dataset(), Dataset(), Dataset()
        colour.CodeValue, colour.CodingSchemeDesignator = "414298005", "SCT"
        colour.CodeMeaning = "Full Spectrum"
        kind.CodeValue, kind.CodingSchemeDesignator = "111744", "DCM"
        kind.CodeMeaning = "Brightfield illumination"
        op.OpticalPathIdentifier = "1"
        op.IlluminationColorCodeSequence = Sequence([colour])
        op.IlluminationTypeCodeSequence = Sequence([kind])
        ds.OpticalPathSequence = Sequence([op])
        pm, shared, origin = Dataset(), Dataset(), Dataset()
        pm.PixelSpacing, pm.SliceThickness = [lmpp / 1000, lmpp / 1000], 0.001
        shared.PixelMeasuresSequence = Sequence([pm])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        origin.XOffsetInSlideCoordinateSystem = origin.YOffsetInSlideCoordinateSystem = 0
        ds.TotalPixelMatrixOriginSequence = Sequence([origin])
        ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
        if jpeg:
            frames = []
            for t in tiles:
                buf = io.BytesIO()
                Image.fromarray(t).save(buf, "JPEG", quality=90)
                frames.append(buf.getvalue())
            ds.PixelData = encapsulate(frames)
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = np.stack(tiles).tobytes()
            if syntax == "rle":
                ds.compress(RLELossless)
        pydicom.dcmwrite(folder / f"level{i}.dcm", ds, enforce_file_format=True)
    return folder / "level0.dcm"


def ome_zarr(path: Path, img: np.ndarray, mpp: float = 0.5) -> Path:
    """An OME-Zarr 0.4 image (axes c, y, x; two levels)."""
    import zarr

    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for i in range(2):
        lvl = np.ascontiguousarray(np.moveaxis(img[:: 2**i, :: 2**i], 2, 0))
        g.create_array(str(i), data=lvl, chunks=(3, 256, 256))
        s = mpp * 2**i
        scale = [{"type": "scale", "scale": [1, s, s]}]
        datasets.append({"path": str(i), "coordinateTransformations": scale})
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "yx"
    ]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path


def cfg_for(tmp_path: Path, *sources: Path, metadata: str = "null"):
    srcs = ",".join(str(s) for s in sources)
    ws = tmp_path / "ws"
    over = [f"paths.workspace={ws}", f"slides.sources=[{srcs}]", f"slides.metadata={metadata}"]
    return compose("demo", over)


def rows(cfg) -> dict[str, dict]:
    return {r["name"]: r for r in load_registry(stores_spec(cfg)).to_dict("records")}


def test_symlink_loops_are_skipped_with_one_line_and_the_batch_goes_on(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    tiled_tiff(src / "good.tif", _tissue_image(512, 512), 0.5)
    os.symlink("loop_b.svs", src / "loop_a.svs")  # a file link loop
    os.symlink("loop_a.svs", src / "loop_b.svs")
    os.symlink("..", src / "sub" / "up")  # a folder link back up
    os.symlink(tmp_path / "gone" / "x.svs", src / "broken.svs")  # a dangling link: recorded
    cfg = cfg_for(tmp_path, src)
    ingest(cfg)
    out = capsys.readouterr().out
    assert f"skipped {src / 'loop_a.svs'}: a symbolic link loop (loop_a.svs -> loop_b.svs)" in out
    assert f"skipped {src / 'sub' / 'up'}: a symbolic link loop" in out
    got = rows(cfg)
    assert set(got) == {"good", "broken"} and got["good"]["status"] == "ok"
    assert got["broken"]["status"] == "failed"
    assert got["broken"]["error"].startswith("cannot read: a broken symbolic link (broken.svs ->")


def test_a_source_that_matches_nothing_says_so(tmp_path, capsys):
    empty, src = tmp_path / "empty", tmp_path / "src"
    empty.mkdir()
    src.mkdir()
    tiled_tiff(src / "good.tif", _tissue_image(512, 512), 0.5)
    cfg = cfg_for(tmp_path, src, empty, tmp_path / "nothing*.svs")
    ingest(cfg)
    out = capsys.readouterr().out
    assert f"folder '{empty}' matches no slide file" in out
    assert f"glob '{tmp_path / 'nothing*.svs'}' matches no slide file" in out
    assert rows(cfg)["good"]["status"] == "ok"


def test_a_slide_coarser_than_the_mask_is_ingested_at_its_own_resolution(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    tiled_tiff(src / "coarse.tif", _tissue_image(512, 384), COARSE_MPP)
    dicom_wsi(src / "coarse_dicom")
    cfg = cfg_for(tmp_path, src)
    ingest(cfg)
    got = rows(cfg)
    assert set(got) == {"coarse", "coarse_dicom"}  # one row, the folder, for the DICOM series
    for r in got.values():
        assert r["status"] == "ok", r["error"]
        assert r["mpp_x"] == pytest.approx(COARSE_MPP, rel=1e-3)
        assert r["mask_mpp"] == pytest.approx(COARSE_MPP, rel=1e-3)  # the slide's own, not 16
        assert 0.15 < r["tissue_fraction"] < 0.4  # the middle quarter is tissue
    dcm = got["coarse_dicom"]
    assert dcm["vendor"] == "dicom" and dcm["level_count"] == 2  # OpenSlide opened it
    assert dcm["path"] == str(src / "coarse_dicom")
    assert dcm["file_bytes"] == sum(f.stat().st_size for f in (src / "coarse_dicom").iterdir())


def test_dicom_openslide_refuses_is_read_through_wsidicom(tmp_path):
    src = tmp_path / "src"
    first = dicom_wsi(src / "rle", syntax="rle", mpp=0.5, w=512, h=512)
    (src / "junk").mkdir()
    (src / "junk" / "junk.dcm").write_bytes(b"not a dicom file at all")
    cfg = cfg_for(tmp_path, src)
    ingest(cfg)
    got = rows(cfg)
    wsi = got["rle"]
    assert wsi["status"] == "ok" and wsi["vendor"] == "dicom (wsidicom)" and wsi["format"] == "dcm"
    assert wsi["mpp_x"] == pytest.approx(0.5) and 0.15 < wsi["tissue_fraction"] < 0.4
    assert got["junk"]["status"] == "failed"
    assert got["junk"]["error"].startswith("corrupt: not a readable DICOM file")
    with open_reader(first) as r:  # the one reader API, pixels exact (lossless RLE)
        assert r.level_dimensions == ((512, 512), (256, 256))
        assert np.array_equal(r.read_region(0, 0, 0, 512, 512), _tissue_image(512, 512))
        assert r.read_patch(128, 128, 1.0, 64).shape == (64, 64, 3)


def test_ome_tiff_and_ome_zarr_are_read_or_named_unsupported(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    img = _tissue_image(640, 512)
    meta = {"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    with tifffile.TiffWriter(src / "brightfield.ome.tif", ome=True) as tw:  # stripped + SubIFD
        tw.write(img, photometric="rgb", subifds=1, metadata=meta)
        tw.write(img[::2, ::2].copy(), photometric="rgb", subfiletype=1)
    rng = np.random.default_rng(0)
    fluo = rng.integers(0, 4000, (2, 256, 256), dtype=np.uint16)
    tifffile.imwrite(src / "fluo.ome.tif", fluo, ome=True, metadata={"axes": "CYX"})
    ome_zarr(src / "zslide.ome.zarr", img)
    (src / "plain.zarr").mkdir()
    (src / "plain.zarr" / ".zgroup").write_text('{"zarr_format": 2}')
    cfg = cfg_for(tmp_path, src)
    ingest(cfg)
    got = rows(cfg)
    for name, vendor in (("brightfield.ome", "ome-tiff"), ("zslide.ome", "ome-zarr")):
        r = got[name]
        assert r["status"] == "ok" and r["vendor"] == vendor, r["error"]
        assert r["mpp_x"] == pytest.approx(0.5) and r["level_count"] == 2
        assert (r["width_px"], r["height_px"]) == (640, 512)
        assert 0.15 < r["tissue_fraction"] < 0.4 and Path(r["thumbnail"]).is_file()
        with open_reader(r["path"]) as rd:
            assert np.array_equal(rd.read_region(100, 60, 0, 300, 200), img[60:260, 100:400])
    alone = cfg_for(tmp_path / "alone", src / "zslide.ome.zarr")  # the folder as the source
    ingest(alone)
    assert rows(alone)["zslide.ome"]["status"] == "ok"
    assert got["fluo.ome"]["status"] == "failed"
    assert "unsupported: an OME-TIFF with axes CYX" in got["fluo.ome"]["error"]
    assert got["plain"]["error"] == (
        "unsupported: a zarr folder without OME-Zarr 'multiscales' metadata"
    )


def test_truncated_tiff_is_called_truncated(tmp_path, fixtures_dir):
    src = tmp_path / "src"
    src.mkdir()
    whole = (fixtures_dir / "cmu-1-small-region.svs").read_bytes()
    (src / "cut.svs").write_bytes(whole[: len(whole) // 2])  # OpenSlide: "unsupported"
    t = tiled_tiff(tmp_path / "t.tif", _tissue_image(512, 512), 0.5).read_bytes()
    (src / "cut2.tif").write_bytes(t[: len(t) // 2])  # OpenSlide: "short read"
    cfg = cfg_for(tmp_path, src)
    ingest(cfg)
    for name in ("cut", "cut2"):
        r = rows(cfg)[name]
        assert r["status"] == "failed" and r["error"].startswith("corrupt: truncated"), r["error"]


def test_a_slide_without_tissue_is_warned_about(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    dark = np.zeros((512, 512, 3), np.uint8)  # fluorescence-like: dark background
    dark[100:400, 100:400, 1] = 60
    tiled_tiff(src / "dark.tif", dark, 0.5)
    cfg = cfg_for(tmp_path, src)
    with caplog.at_level(logging.WARNING, logger="autoscope.slides.tissue"):
        ingest(cfg)
    assert rows(cfg)["dark"]["tissue_fraction"] == 0.0
    lines = [r.getMessage() for r in caplog.records if "no tissue detected" in r.getMessage()]
    assert len(lines) == 1 and str(src / "dark.tif") in lines[0]


def test_a_bad_mpp_in_the_metadata_csv_names_line_column_and_value(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    tiled_tiff(src / "a.tif", _tissue_image(512, 512), None)
    tiled_tiff(src / "b.tif", _tissue_image(512, 512, seed=1), None)
    meta = tmp_path / "meta.csv"
    meta.write_text("slide,mpp\na.tif,0.5\nb.tif,abc\n")
    proc = subprocess.run(
        [sys.executable, "-m", "autoscope.cli", "slides", "ingest", "demo",
         f"paths.workspace={tmp_path / 'ws'}", f"slides.sources=[{src}]",
         f"slides.metadata={meta}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert err[-1] == (
        f"autoscope: error: slides.metadata: '{meta}' line 3 (slide 'b.tif'), column mpp: "
        "'abc' is not a positive number of um/px"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "joined"),
    [
        (["slides.sources=[/data/my", "slides]"], "slides.sources=[/data/my slides]"),
        (
            ["slides.metadata=/data/my", "meta", "data.csv"],
            "slides.metadata=/data/my meta data.csv",
        ),
    ],
)
def test_an_override_the_shell_split_at_spaces_gets_a_quoting_hint(argv, joined, capsys):
    from autoscope.cli import main

    assert main(["slides", "ingest", "demo", "slides.metadata=null", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autoscope: error: the shell split an override")
    assert err[0].endswith(f'quote the whole override, e.g. "{joined}"')


def test_two_dicom_series_in_one_folder_are_two_slides(tmp_path):
    src = tmp_path / "src"
    dicom_wsi(src)  # level0.dcm, level1.dcm
    dicom_wsi(tmp_path / "other")
    for f in (tmp_path / "other").iterdir():
        f.rename(src / f"b_{f.name}")
    cfg = cfg_for(tmp_path, src)
    ingest(cfg)
    got = rows(cfg)
    assert set(got) == {"b_level0", "level0"}  # the first file of each series
    assert {r["status"] for r in got.values()} == {"ok"}
