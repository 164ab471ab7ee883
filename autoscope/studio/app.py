"""The Studio web app: `create_app(ctx)` gives the FastAPI app; data APIs are here, pages in
`autoscope.studio.pages`.

Tiles and files are served only for registered slides and for files under the project's
outputs and data folders (resolved first: a path outside is 403 and never opened).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from autoscope.errors import UserError
from autoscope.studio import layers, stores
from autoscope.studio.jobs import JobQueue
from autoscope.studio.overlays import FeatureLayer
from autoscope.studio.safety import check_csrf, inside
from autoscope.studio.settings import StudioContext
from autoscope.studio.tiles import SlideGeometry, TileServer, dzi_xml, encode, tile_box

HERE = Path(__file__).resolve().parent
CACHE = {"Cache-Control": "private, max-age=3600"}
# the tile route's path, as Starlette matches it (`{slide_id}` is `[^/]+`, an int `[0-9]+`)
TILE_PATH = re.compile(r"/api/slides/([^/]+)_files/([0-9]+)/([0-9]+)_([0-9]+)\.jpeg")


class Studio:
    """What one app holds: the context, the job queue and the tile server (no state of its own:
    everything shown is read back from the stores)."""

    def __init__(self, ctx: StudioContext) -> None:
        self.ctx = ctx
        spec = ctx.spec
        self.jobs = JobQueue(ctx.jobs_dir, ctx.stores.workspace, spec.max_jobs, ctx.command or None)
        self.tiles = TileServer(
            self._open, spec.tile_px, spec.jpeg_quality, spec.tile_cache_mb, spec.readers
        )
        self.roots = [ctx.stores.outputs, ctx.stores.data]

    def row(self, slide_id: str) -> Any:
        """A registered slide's registry row, else 404."""
        row = stores.slide_row(self.ctx, slide_id)
        if row is None:
            raise HTTPException(404, f"no registered slide {slide_id!r}")
        return row

    def _open(self, slide_id: str) -> Any:
        from autoscope.slides.reader import open_reader

        row = self.row(slide_id)
        mpp = row.get("mpp_x")
        return open_reader(str(row["path"]), float(mpp) if mpp == mpp and mpp else None)

    def geometry(self, row: Any) -> SlideGeometry:
        """Level-0 size and mpp of a registry row."""
        mpp = row.get("mpp_x")
        mpp = float(mpp) if mpp is not None and mpp == mpp else None
        return SlideGeometry(int(row["width_px"]), int(row["height_px"]), mpp)

    def launch(self, words: list[str], label: str = "") -> dict[str, Any]:
        """Queue the CLI command `autoscope <words>`."""
        return self.jobs.submit(words, label).to_json()


class CachedTiles:
    """ASGI fast path of warm tiles, before FastAPI's routing: a GET of a tile whose JPEG bytes
    the tile cache holds, of a slide still registered, is answered straight from the cache
    (the same status, type and cache headers as the tile route). Anything else (a miss, a slide
    no longer registered, another path or method) goes on to the app, which checks everything.
    """

    def __init__(self, app: Any, studio: Studio) -> None:
        self.app = app
        self.studio = studio
        self.headers = [(k.lower().encode(), v.encode()) for k, v in CACHE.items()]
        self.headers.append((b"content-type", b"image/jpeg"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            m = TILE_PATH.fullmatch(scope["path"])
            if m is not None:
                sid, level, col, row = m.groups()
                data = self.studio.tiles.cached(sid, int(level), int(col), int(row))
                if data is not None and stores.slide_row(self.studio.ctx, sid) is not None:
                    length = (b"content-length", str(len(data)).encode())
                    start = {"status": 200, "headers": [*self.headers, length]}
                    await send({"type": "http.response.start", **start})
                    await send({"type": "http.response.body", "body": data})
                    return
        await self.app(scope, receive, send)


def _layer(studio: Studio, row: Any, layer: str) -> FeatureLayer:
    try:
        return layers.object_layer(studio.ctx, row, layer)
    except (KeyError, ValueError, UserError) as e:
        raise HTTPException(404, f"no overlay {layer!r}") from e


def add_api(app: FastAPI, studio: Studio) -> None:
    """Slide tiles, overlays, files and job APIs."""

    @app.get("/api/slides/{slide_id}.dzi")
    def dzi(slide_id: str) -> Response:
        geo = studio.geometry(studio.row(slide_id))
        return Response(dzi_xml(geo, studio.tiles.tile_px), media_type="application/xml")

    @app.get("/api/slides/{slide_id}_files/{level}/{col}_{row}.jpeg")
    async def tile(slide_id: str, level: int, col: int, row: int) -> Response:
        geo = studio.geometry(studio.row(slide_id))  # registered slides only
        data = studio.tiles.cached(slide_id, level, col, row)
        if data is None:  # read and encode in a worker thread
            try:
                data = await run_in_threadpool(studio.tiles.tile, slide_id, geo, level, col, row)
            except KeyError as e:
                raise HTTPException(404, str(e)) from None
        return Response(data, media_type="image/jpeg", headers=CACHE)

    @app.get("/api/slides/{slide_id}/thumbnail")
    def thumbnail(slide_id: str) -> FileResponse:
        thumb = studio.row(slide_id).get("thumbnail")
        if not isinstance(thumb, str) or not Path(thumb).is_file():
            raise HTTPException(404, "no thumbnail")
        return FileResponse(thumb)

    @app.get("/api/slides/{slide_id}/overlays")
    def overlays(slide_id: str) -> dict[str, Any]:
        row = studio.row(slide_id)
        geo = studio.geometry(row)
        return {
            "width_px": geo.width_px,
            "height_px": geo.height_px,
            "mpp": geo.mpp,
            "tile_px": studio.tiles.tile_px,
            "layers": layers.available(studio.ctx, row),
        }

    @app.get("/api/slides/{slide_id}/overlay.png")
    def overlay_image(slide_id: str, layer: str) -> Response:
        row = studio.row(slide_id)
        try:
            rgba, width0 = layers.image_overlay(studio.ctx, row, layer)
        except (KeyError, OSError) as e:
            raise HTTPException(404, f"no overlay {layer!r}") from e
        return Response(
            encode(rgba, "PNG"),
            media_type="image/png",
            headers={"X-Overlay-Width": f"{width0:.1f}"},
        )

    @app.get("/api/slides/{slide_id}/otiles/{level}/{col}_{row}.png")
    def overlay_tile(slide_id: str, layer: str, level: int, col: int, row: int) -> Response:
        srow = studio.row(slide_id)
        geo = studio.geometry(srow)
        feats = _layer(studio, srow, layer)
        box = tile_box(geo, level, col, row, studio.tiles.tile_px)
        if box is None:
            raise HTTPException(404, "no such tile")
        x0, y0, w0, h0, s = box

        def make() -> bytes:
            rgba = feats.render(x0, y0, s, max(1, math.ceil(w0 / s)), max(1, math.ceil(h0 / s)))
            return encode(rgba, "PNG")

        key = ("overlay", slide_id, layer, id(feats), level, col, row)
        return Response(studio.tiles.cache.get_or_make(key, make), media_type="image/png")

    @app.get("/api/slides/{slide_id}/vectors")
    def vectors(slide_id: str, layer: str, x0: float, y0: float, x1: float, y1: float) -> Any:
        if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 < x0 or y1 < y0:
            raise HTTPException(422, "x0 <= x1 and y0 <= y1, finite numbers")
        feats = _layer(studio, studio.row(slide_id), layer)
        return feats.vectors(x0, y0, x1, y1, studio.ctx.spec.vector_max_features)

    @app.get("/files/{path:path}")
    def files(path: str) -> FileResponse:
        base = studio.ctx.stores.workspace
        real = inside(base / path if not Path(path).is_absolute() else path, studio.roots)
        if not real.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(real)

    @app.get("/api/runs/{run_id}/artifacts/{name:path}")
    def artifact(run_id: str, name: str) -> FileResponse:
        try:
            p = stores.artifact_path(studio.ctx, run_id, name)
        except Exception as e:  # noqa: BLE001 - an unknown run id is MLflow's own exception
            raise HTTPException(404, "no such run") from e
        real = inside(p, [p.parents[len(Path(name).parts) - 1]])
        if not real.is_file():
            raise HTTPException(404, "no such artefact")
        return FileResponse(real)

    @app.get("/api/jobs")
    def jobs() -> list[dict[str, Any]]:
        return [j.to_json() for j in studio.jobs.list()]

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        j = studio.jobs.get(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return {**j.to_json(), "log": studio.jobs.tail(job_id, studio.ctx.spec.log_tail_lines)}

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(request: Request, job_id: str) -> dict[str, Any]:
        check_csrf(request, None)
        j = studio.jobs.cancel(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return j.to_json()

    @app.post("/api/jobs/{job_id}/rerun")
    def rerun(request: Request, job_id: str) -> dict[str, Any]:
        check_csrf(request, None)
        j = studio.jobs.get(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return studio.launch(j.words, j.label)


def create_app(ctx: StudioContext) -> FastAPI:
    """The Studio app over one recipe's project (jobs stop when the app shuts down)."""
    from contextlib import asynccontextmanager

    from autoscope.studio.pages import add_pages

    studio = Studio(ctx)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        studio.jobs.shutdown()
        studio.tiles.pool.close()

    app = FastAPI(
        title="AutoSCOPE Studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(UserError)
    async def user_error(_: Request, e: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    add_api(app, studio)
    add_pages(app, studio)
    app.add_middleware(CachedTiles, studio=studio)  # warm tiles before the routing
    return app
