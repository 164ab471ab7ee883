"""Annotation readers: QuPath GeoJSON, ASAP / ImageScope XML, point CSV, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscope.datasets.annotations import read_annotations
from autoscope.errors import UserError

SQUARE = [[[10, 10], [110, 10], [110, 110], [10, 110], [10, 10]]]
BOWTIE = [[[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]]


def feature(geometry: dict, name: str | None = "tumor", fid: str | None = None) -> dict:
    props = {"objectType": "annotation"}
    if name:
        props["classification"] = {"name": name, "color": [200, 0, 0]}
    out = {"type": "Feature", "geometry": geometry, "properties": props}
    if fid:
        out["id"] = fid
    return out


def write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_geojson_regions_points_and_multipolygon(tmp_path: Path) -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            feature({"type": "Polygon", "coordinates": SQUARE}),
            feature(
                {
                    "type": "MultiPolygon",
                    "coordinates": [SQUARE, [[[200, 200], [300, 200], [300, 300], [200, 200]]]],
                },
                "stroma",
            ),
            feature({"type": "Point", "coordinates": [50, 60]}, "lymphocyte"),
            feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, None),
        ],
    }
    ann = read_annotations(write(tmp_path / "a.geojson", doc))
    assert [r.label for r in ann.regions] == ["tumor", "stroma", "stroma"]
    assert ann.regions[0].geometry.area == 100 * 100
    assert [(p.label, p.x, p.y) for p in ann.points] == [
        ("lymphocyte", 50, 60),
        ("Unclassified", 1, 2),
        ("Unclassified", 3, 4),
    ]


def test_geojson_list_of_features_as_qupath_exports(tmp_path: Path) -> None:
    ann = read_annotations(
        write(tmp_path / "a.json", [feature({"type": "Polygon", "coordinates": SQUARE})])
    )
    assert len(ann.regions) == 1


def test_polygon_holes_are_kept(tmp_path: Path) -> None:
    hole = [[40, 40], [60, 40], [60, 60], [40, 60], [40, 40]]
    ann = read_annotations(
        write(
            tmp_path / "h.geojson", [feature({"type": "Polygon", "coordinates": [SQUARE[0], hole]})]
        )
    )
    assert ann.regions[0].geometry.area == 100 * 100 - 20 * 20


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (
            [feature({"type": "Polygon", "coordinates": BOWTIE}, fid="abc")],
            r"feature 0 \(id abc\).*Self-intersection",
        ),
        ([feature({"type": "Polygon", "coordinates": BOWTIE})], "invalid polygon"),
        (
            [feature({"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [0, 0]]]})],
            "2 distinct vertices",
        ),
        (
            [feature({"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [9, 9], [0, 0]]]})],
            "invalid polygon|empty polygon",
        ),
        ([feature({"type": "Polygon", "coordinates": []})], "empty polygon"),
        ([feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]})], "unsupported"),
        ([feature({"type": "Polygon", "coordinates": [[["a", 0], [1, 1], [2, 0]]]})], "malformed"),
        ({"type": "FeatureCollection", "features": 3}, "malformed GeoJSON"),
        ({"type": "Nope"}, "malformed GeoJSON"),
        ([{"type": "Feature", "properties": {}}], "feature 0 is malformed"),
    ],
)
def test_bad_geojson_names_file_and_feature(tmp_path: Path, doc, needle: str) -> None:
    path = write(tmp_path / "bad.geojson", doc)
    with pytest.raises(UserError, match=needle) as e:
        read_annotations(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_truncated_json_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "cut.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(UserError, match="cut.geojson: malformed GeoJSON"):
        read_annotations(path)


def test_outside_the_slide(tmp_path: Path) -> None:
    ann = read_annotations(
        write(
            tmp_path / "o.geojson",
            [
                feature({"type": "Polygon", "coordinates": SQUARE}),
                feature(
                    {
                        "type": "Polygon",
                        "coordinates": [[[900, 10], [1100, 10], [1000, 50], [900, 10]]],
                    },
                    fid="far",
                ),
            ],
        )
    )
    ann.check_inside(2000, 2000)
    with pytest.raises(UserError, match=r"o.geojson: feature 1 \(id far\) lies outside"):
        ann.check_inside(1000, 1000)


ASAP = """<?xml version="1.0"?>
<ASAP_Annotations><Annotations>
 <Annotation Name="A1" Type="Polygon" PartOfGroup="tumor"><Coordinates>
  <Coordinate Order="0" X="10" Y="10"/><Coordinate Order="1" X="110" Y="10"/>
  <Coordinate Order="3" X="10" Y="110"/><Coordinate Order="2" X="110" Y="110"/>
 </Coordinates></Annotation>
 <Annotation Name="cells" Type="PointSet" PartOfGroup="stroma"><Coordinates>
  <Coordinate Order="0" X="5" Y="6"/><Coordinate Order="1" X="7" Y="8"/>
 </Coordinates></Annotation>
</Annotations><AnnotationGroups/></ASAP_Annotations>"""

IMAGESCOPE = """<Annotations MicronsPerPixel="0.25">
 <Annotation Id="1" Name="tumor"><Regions>
  <Region Id="1" Type="0" Text=""><Vertices><Vertex X="0" Y="0"/><Vertex X="100" Y="0"/>
   <Vertex X="100" Y="100"/><Vertex X="0" Y="100"/></Vertices></Region>
  <Region Id="2" Type="0" Text="" NegativeROA="1"><Vertices><Vertex X="40" Y="40"/>
   <Vertex X="60" Y="40"/><Vertex X="60" Y="60"/><Vertex X="40" Y="60"/></Vertices></Region>
  <Region Id="3" Type="0" Text="stroma"><Vertices><Vertex X="200" Y="0"/><Vertex X="300" Y="0"/>
   <Vertex X="300" Y="100"/></Vertices></Region>
 </Regions></Annotation>
</Annotations>"""


def test_asap_xml(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(ASAP)
    ann = read_annotations(tmp_path / "a.xml")
    assert [r.label for r in ann.regions] == ["tumor"]
    assert ann.regions[0].geometry.area == 100 * 100  # vertices sorted by Order
    assert [(p.label, p.x) for p in ann.points] == [("stroma", 5), ("stroma", 7)]


def test_imagescope_xml_with_negative_region(tmp_path: Path) -> None:
    (tmp_path / "i.xml").write_text(IMAGESCOPE)
    ann = read_annotations(tmp_path / "i.xml")
    assert [r.label for r in ann.regions] == ["tumor", "stroma"]
    assert ann.regions[0].geometry.area == 100 * 100 - 20 * 20


def test_malformed_and_unknown_xml(tmp_path: Path) -> None:
    (tmp_path / "m.xml").write_text(ASAP[:200])
    with pytest.raises(UserError, match="m.xml: malformed XML"):
        read_annotations(tmp_path / "m.xml")
    (tmp_path / "u.xml").write_text("<Other/>")
    with pytest.raises(UserError, match="unknown XML annotation format"):
        read_annotations(tmp_path / "u.xml")


def test_points_csv(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("x,y,class\n10,20,tumor\n30.5,40,stroma\n")
    ann = read_annotations(tmp_path / "p.csv")
    assert [(p.label, p.x, p.y) for p in ann.points] == [("tumor", 10, 20), ("stroma", 30.5, 40)]
    (tmp_path / "q.csv").write_text("x,y,class\n10,abc,tumor\n")
    with pytest.raises(UserError, match="q.csv: row 2"):
        read_annotations(tmp_path / "q.csv")
    (tmp_path / "r.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="needs columns x,y,class"):
        read_annotations(tmp_path / "r.csv")
