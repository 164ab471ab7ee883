"""The Studio's pages, tile and overlay APIs and guards, through FastAPI's test client."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from autoscope.studio import stores


def token(client) -> str:
    """The session's CSRF token (the cookie the pages set)."""
    return client.cookies["autoscope_csrf"]


def _slide(ctx) -> dict:
    return stores.slides_table(ctx)[0]


def test_every_page_renders(client, ctx):
    sid = _slide(ctx)["slide_id"]
    for page in (
        "/",
        "/projects",
        "/slides",
        "/datasets",
        "/experiments",
        "/models",
        "/packages",
        "/inference",
        "/loop",
        "/jobs",
        f"/viewer/{sid}",
    ):
        r = client.get(page)
        assert r.status_code == 200, page
        assert "AutoSCOPE Studio" in r.text
    assert "s0" in client.get("/slides?q=s0&sort=mpp_x&desc=true").text
    table = client.get("/slides?q=nomatch").text.split("<table")[1].split("</table>")[0]
    assert "s0" not in table  # (the page's random CSRF token may hold any two characters)
    assert "openseadragon.min.js" in client.get(f"/viewer/{sid}").text


def test_dzi_tiles_match_the_reader(client, ctx):
    from autoscope.slides.reader import open_reader

    row = _slide(ctx)
    sid = row["slide_id"]
    xml = client.get(f"/api/slides/{sid}.dzi").text
    assert 'Width="2048"' in xml and 'Height="1536"' in xml and 'TileSize="256"' in xml
    r = client.get(f"/api/slides/{sid}_files/11/2_1.jpeg")  # level 11 = full resolution
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    tile = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    path = stores.slide_row(ctx, sid)["path"]
    with open_reader(path) as reader:
        ref = reader.read_region(512, 256, 0, 256, 256).astype(int)
    assert tile.shape == ref.shape and np.abs(tile - ref).mean() < 6
    small = Image.open(io.BytesIO(client.get(f"/api/slides/{sid}_files/8/0_0.jpeg").content))
    assert small.size == (256, 192)  # 2048 x 1536 / 8
    assert client.get(f"/api/slides/{sid}_files/11/99_0.jpeg").status_code == 404
    assert client.get(f"/api/slides/{sid}_files/12/0_0.jpeg").status_code == 404
    assert client.get("/api/slides/notaslide.dzi").status_code == 404
    assert client.get(f"/api/slides/{sid}_files/x/0_0.jpeg").status_code == 422


def test_warm_tiles_fast_path(client, ctx):
    """A cached tile comes back as it first did; a cached tile of an unregistered slide does not."""
    sid = _slide(ctx)["slide_id"]
    url = f"/api/slides/{sid}_files/10/1_1.jpeg"
    cold, warm = client.get(url), client.get(url)
    assert warm.status_code == 200 and warm.content == cold.content
    for h in ("content-type", "content-length", "cache-control"):
        assert warm.headers[h] == cold.headers[h]
    client.app.state.studio.tiles.cache.get_or_make(("slide", "ghost", 10, 0, 0), lambda: b"x")
    assert client.get("/api/slides/ghost_files/10/0_0.jpeg").status_code == 404


def test_overlays_tiles_and_vectors(client, ctx):
    sid = _slide(ctx)["slide_id"]
    info = client.get(f"/api/slides/{sid}/overlays").json()
    assert info["mpp"] == 0.5
    ids = {layer["id"]: layer["kind"] for layer in info["layers"]}
    assert ids["tissue"] == "image"
    cells = "geojson:cells_model/v1:cells.geojson"
    assert ids[cells] == "objects"
    mask = client.get(f"/api/slides/{sid}/overlay.png", params={"layer": "tissue"})
    assert mask.status_code == 200 and float(mask.headers["x-overlay-width"]) == 2048
    alpha = np.asarray(Image.open(io.BytesIO(mask.content)))[..., 3]
    assert 0 < (alpha > 0).mean() < 1
    t = client.get(f"/api/slides/{sid}/otiles/8/0_0.png", params={"layer": cells})
    rgba = np.asarray(Image.open(io.BytesIO(t.content)))
    assert rgba.shape == (192, 256, 4) and (rgba[..., 3] > 0).sum() > 400  # 500 cells as dots
    v = client.get(
        f"/api/slides/{sid}/vectors",
        params={"layer": cells, "x0": 0, "y0": 0, "x1": 500, "y1": 500},
    ).json()
    assert 0 < v["count"] < 100 and not v["truncated"] and len(v["features"]) == v["count"]
    assert all(f["geometry"]["coordinates"][0] <= 500 for f in v["features"])
    ctx.spec = type(ctx.spec)(vector_max_features=10)
    many = client.get(
        f"/api/slides/{sid}/vectors",
        params={"layer": cells, "x0": 0, "y0": 0, "x1": 2048, "y1": 1536},
    ).json()
    assert many["truncated"] and many["features"] == [] and many["count"] == 500
    bad = client.get(
        f"/api/slides/{sid}/vectors", params={"layer": cells, "x0": 5, "y0": 0, "x1": 1, "y1": 1}
    )
    assert bad.status_code == 422
    assert (
        client.get(
            f"/api/slides/{sid}/otiles/8/0_0.png",
            params={"layer": "geojson:cells_model/v1:../../x.geojson"},
        ).status_code
        == 404
    )


def test_files_only_under_the_project(client, ctx, tmp_path):
    ws = ctx.stores.workspace
    ok = client.get(
        "/files/" + os.path.relpath(ctx.infer_dir / "cells_model/v1/s0/summary.json", ws)
    )
    assert ok.status_code == 200
    for bad in ("/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/files//etc/passwd"):
        assert client.get(bad).status_code == 403
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    link = ctx.stores.outputs / "link.txt"
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    assert client.get("/files/outputs/demo/link.txt").status_code == 403
    link.unlink()


def test_state_changes_need_the_session_token(client):
    assert client.post("/experiments/launch", data={"model": "tiny_cnn"}).status_code == 403
    r = client.post("/experiments/launch", data={"model": "tiny_cnn", "csrf_token": "forged"})
    assert r.status_code == 403
    assert client.post("/api/jobs/x/cancel").status_code == 403


def test_launch_form_validates_by_composing(client, ctx):
    t = token(client)
    r = client.post("/experiments/launch", data={"csrf_token": t, "trainer.max_epochs": "abc"})
    assert r.status_code == 400 and "trainer.max_epochs=abc" in r.json()["detail"]
    r = client.post("/experiments/launch", data={"csrf_token": t, "model": "no_such_model"})
    assert r.status_code == 400 and "not a choice" in r.json()["detail"]
    r = client.post("/experiments/launch", data={"csrf_token": t, "overrides": "nokey"})
    assert r.status_code == 400
    r = client.post(
        "/experiments/launch",
        follow_redirects=False,
        data={
            "csrf_token": t,
            "model": "tiny_cnn",
            "trainer.max_epochs": "1",
            "sweep": "1",
            "hpo": "small",
        },
    )
    assert r.status_code == 303
    job = client.get("/api" + r.headers["location"]).json()
    assert job["words"] == [
        "train",
        "demo",
        "-m",
        "model=tiny_cnn",
        "hpo=small",
        "trainer.max_epochs=1",
    ]


def test_mpp_form_writes_the_metadata_csv(client, ctx, studio_ws):
    sid = _slide(ctx)["slide_id"]
    r = client.post(
        "/slides/mpp",
        follow_redirects=False,
        data={"csrf_token": token(client), "slide_id": sid, "mpp": "0.25"},
    )
    assert r.status_code == 303
    text = (studio_ws / "meta.csv").read_text()
    assert "raw/s0.tif" in text and "0.25" in text
    job = client.get("/api" + r.headers["location"]).json()
    assert job["words"] == ["slides", "ingest", "demo"]
    bad = client.post(
        "/slides/mpp", data={"csrf_token": token(client), "slide_id": sid, "mpp": "big"}
    )
    assert bad.status_code == 400
    (studio_ws / "meta.csv").write_text("path,scanner\n")


def test_ingest_form_queues_the_cli(client, studio_ws):
    t = token(client)
    bad = client.post("/slides/ingest", data={"csrf_token": t, "folder": "/no/such/folder"})
    assert bad.status_code == 400 and "does not exist" in bad.json()["detail"]
    r = client.post(
        "/slides/ingest",
        follow_redirects=False,
        data={"csrf_token": t, "folder": str(studio_ws / "raw")},
    )
    job = client.get("/api" + r.headers["location"]).json()
    assert job["words"] == ["slides", "ingest", "demo", f"slides.sources=['{studio_ws}/raw']"]
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "autoscope slides ingest demo" in page.text


def test_project_form_writes_a_recipe_that_composes(client, ctx):
    from autoscope.config import compose

    data = {
        "csrf_token": token(client),
        "name": "lung_poc",
        "organ": "lung",
        "task": "tissue_classification",
        "classes": "tumor:#d62728,normal:#2ca02c",
        "target_mpp": "0.5",
    }
    r = client.post("/projects/create", follow_redirects=False, data=data)
    assert r.status_code == 303
    path = ctx.stores.workspace / "recipes" / "lung_poc.yaml"
    cfg = compose(str(path), [f"paths.workspace={ctx.stores.workspace}"])
    assert cfg.project.name == "lung_poc" and cfg.project.target_mpp == 0.5
    assert [c.name for c in cfg.project.classes] == ["tumor", "normal"]
    job = client.get("/api" + r.headers["location"]).json()
    assert job["words"] == ["project", "create", str(path)]
    again = client.post("/projects/create", data=data)
    assert again.status_code == 400 and "exists" in again.json()["detail"]
    bad = client.post("/projects/create", data={**data, "name": "x", "classes": "a:red"})
    assert bad.status_code == 400 and "#rrggbb" in bad.json()["detail"]
    path.unlink()


def test_loop_queues_are_viewer_overlays(client, ctx):
    """A review queue and a selection of the loop show on the slide as object overlays."""
    import pandas as pd

    from autoscope.loop.qupath import queue_collection, write_collection

    row = _slide(ctx)
    sid, name = row["slide_id"], row["name"]
    info = {"slide": name, "slide_id": sid, "width": 2048, "height": 1536}
    rows = pd.DataFrame(
        {"patch_id": ["a1", "b2"], "x": [256, 1024], "y": [256, 512], "score": [0.9, 0.4]}
    )
    classes = ctx.project.class_dicts()
    root = ctx.stores.outputs / "loop"
    review = rows.assign(given="tumor", suggested="stroma", p_suggested=[0.95, 0.7])
    for kind, table, rnd in (("refine", review, 2), ("select", rows, 1)):
        doc = queue_collection(
            table,
            kind="review" if kind == "refine" else "select",
            slide=info,
            side_px0=128,
            classes=classes,
            round_no=rnd,
            dataset="ds",
        )
        write_collection(root / kind / "ds" / f"round_{rnd}" / f"{name}.geojson", doc)
    layers = {x["id"]: x for x in client.get(f"/api/slides/{sid}/overlays").json()["layers"]}
    assert layers["loop:refine/ds/round_2"]["label"] == "review queue ds round 2"
    assert layers["loop:select/ds/round_1"]["kind"] == "objects"
    v = client.get(
        f"/api/slides/{sid}/vectors",
        params={"layer": "loop:refine/ds/round_2", "x0": 0, "y0": 0, "x1": 2048, "y1": 1536},
    ).json()
    names = sorted(f["properties"]["name"] for f in v["features"])
    assert v["count"] == 2 and names == ["tumor", "tumor"]  # the given label, to review
    t = client.get(
        f"/api/slides/{sid}/otiles/8/0_0.png", params={"layer": "loop:select/ds/round_1"}
    )
    assert t.status_code == 200
    bad = client.get(f"/api/slides/{sid}/otiles/8/0_0.png", params={"layer": "loop:../x/round_1"})
    assert bad.status_code == 404

    # the loop page: both rounds, their files, the corrections folder, and forms that queue jobs
    corr = ctx.stores.workspace / "corrections" / "ds" / "round_1"
    corr.mkdir(parents=True)
    (corr / f"{name}.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    page = client.get("/loop").text
    assert "review queue · ds · round 2" in page and "regions to label · ds · round 1" in page
    assert f"/viewer/{sid}" in page and f"round 1: {name}.geojson" in page
    t = token(client)
    bad = client.post("/loop/select", data={"csrf_token": t, "budget": "lots"})
    assert bad.status_code == 400 and "select.budget" in bad.json()["detail"]
    bad = client.post("/loop/refine", data={"csrf_token": t, "model": "ghost"})
    assert bad.status_code == 400 and "not an archived model" in bad.json()["detail"]
    r = client.post("/loop/select", follow_redirects=False, data={"csrf_token": t, "budget": "7"})
    assert r.status_code == 303
    assert client.get("/api" + r.headers["location"]).json()["words"] == [
        "select",
        "demo",
        "select.budget=7",
    ]
