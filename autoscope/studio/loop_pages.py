"""The Studio's loop page: every round's review queue and regions to label (picture sheet, top
rows, QuPath files, links into the viewer), the corrections that came back, and forms that queue
`autoscope refine` / `autoscope select` as jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from autoscope.errors import UserError

TOP_ROWS = 20  # queue rows shown per round


def rounds(ctx: Any) -> list[dict[str, Any]]:
    """The loop's rounds under `outputs/<project>/loop/`, newest first, with their top rows."""
    import pandas as pd

    out = []
    for d in (ctx.stores.outputs / "loop").glob("*/*/round_*"):
        if not d.is_dir() or d.parts[-3] not in ("refine", "select"):
            continue
        summary = d / "summary.json"
        info = json.loads(summary.read_text()) if summary.is_file() else {}
        table = d / "queue.parquet"
        rows = pd.read_parquet(table).head(TOP_ROWS) if table.is_file() else pd.DataFrame()
        keep = [
            c for c in ("patch_id", "slide", "slide_id", "given", "suggested", "score") if c in rows
        ]
        out.append(
            {
                "kind": d.parts[-3],
                "dataset": d.parts[-2],
                "round": int(d.name.split("_")[1]),
                "queued": info.get("queued", len(rows)),
                "sheet": str(d / "sheet.png") if (d / "sheet.png").is_file() else None,
                "csv": str(d / "queue.csv"),
                "geojson": [(str(g), _slide_id(g)) for g in sorted(d.glob("*.geojson"))],
                "rows": rows[keep].to_dict("records"),
            }
        )
    return sorted(out, key=lambda r: (-r["round"], r["kind"], r["dataset"]))


def _slide_id(path: Path) -> str | None:
    """The slide a queue file is about (its `autoscope` block), for the viewer link."""
    try:
        return json.loads(path.read_text()).get("autoscope", {}).get("slide_id")
    except (OSError, ValueError, AttributeError):
        return None


def corrections(ctx: Any) -> list[dict[str, Any]]:
    """Correction rounds in `<workspace>/corrections/<dataset>/` and each dataset's lineage."""
    from autoscope.datasets.diff import LINEAGE
    from autoscope.loop.corrections import correction_rounds

    out = []
    for folder in sorted((Path(ctx.stores.workspace) / "corrections").glob("*")):
        if not folder.is_dir():
            continue
        lineage = Path(ctx.stores.data) / "datasets" / folder.name / LINEAGE
        lin = json.loads(lineage.read_text()) if lineage.is_file() else {}
        files = [[p.name for p in r] for r in correction_rounds(folder)]
        keep = ("round", "queues", "by_kind", "by_author")
        out.append(
            {"dataset": folder.name, "rounds": files, "lineage": {k: lin.get(k) for k in keep}}
        )
    return out


def add_loop_pages(app: FastAPI, studio: Any, render: Any, form: Any, queued: Any) -> None:
    """GET /loop, POST /loop/refine and /loop/select (the CLI as jobs)."""
    ctx = studio.ctx

    @app.get("/loop", response_class=HTMLResponse)
    def loop(request: Request) -> HTMLResponse:
        return render(
            studio,
            request,
            "loop",
            rounds=rounds(ctx),
            corrections=corrections(ctx),
            models=sorted(_models(ctx)),
        )

    @app.post("/loop/refine")
    async def loop_refine(request: Request) -> Any:
        data = await form(request)
        return queued(studio, ["refine", ctx.recipe, *_model_words(ctx, data)])

    @app.post("/loop/select")
    async def loop_select(request: Request) -> Any:
        data = await form(request)
        budget = (data.get("budget") or "").strip()
        if not budget.isdigit() or int(budget) < 1:
            raise UserError(f"select.budget: '{budget}' is not a positive whole number")
        return queued(
            studio, ["select", ctx.recipe, f"select.budget={budget}", *_model_words(ctx, data)]
        )


def _models(ctx: Any) -> set[str]:
    """Names of the archived models (`outputs/<project>/models/<name>/v<N>`), as `loop.model`."""
    from autoscope.studio import stores

    return {Path(m["folder"]).parent.name for m in stores.models(ctx)}


def _model_words(ctx: Any, data: dict[str, str]) -> list[str]:
    """`loop.model=<name>` for a chosen archived model (none: colour/texture, the cold start)."""
    name = (data.get("model") or "").strip()
    if not name:
        return []
    if name not in _models(ctx):
        raise UserError(f"loop.model: '{name}' is not an archived model of this project")
    return [f"loop.model={name}"]
