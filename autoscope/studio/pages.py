"""The Studio's pages (Jinja2, server-rendered) and the forms that queue CLI jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from autoscope.errors import UserError
from autoscope.studio import forms, stores
from autoscope.studio.safety import CSRF_COOKIE, CSRF_FIELD, check_csrf, session_token

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
PAGES = [
    "projects",
    "slides",
    "datasets",
    "experiments",
    "models",
    "packages",
    "inference",
    "loop",
    "jobs",
]


def _rel(studio: Any, path: str) -> str:
    """A file's `/files/...` URL (relative to the workspace)."""
    return "/files/" + os.path.relpath(path, studio.ctx.stores.workspace)


def _render(studio: Any, request: Request, name: str, **data: Any) -> HTMLResponse:
    token = session_token(request)
    ctx = studio.ctx
    resp = TEMPLATES.TemplateResponse(
        request,
        f"{name}.html",
        {
            "page": name,
            "pages": PAGES,
            "csrf": token,
            "project": ctx.project,
            "recipe": ctx.recipe,
            "rel": lambda p: _rel(studio, p),
            **data,
        },
    )
    resp.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
    return resp


async def _form(request: Request) -> dict[str, str]:
    """The posted form (CSRF checked): field -> text."""
    form = await request.form()
    data = {k: str(v) for k, v in form.items()}
    check_csrf(request, data.get(CSRF_FIELD))
    return data


def _queued(studio: Any, words: list[str], label: str = "") -> JSONResponse | RedirectResponse:
    job = studio.launch(words, label)
    return RedirectResponse(f"/jobs/{job['id']}", status_code=303)


def _write_mpp(studio: Any, slide_id: str, mpp_text: str) -> None:
    """Put a slide's MPP into the recipe's metadata CSV (`slides.metadata`), as a person would."""
    import pandas as pd

    from autoscope.atomic import write_text

    try:
        mpp = float(mpp_text)
    except ValueError:
        raise UserError(f"mpp '{mpp_text}' is not a number") from None
    if not 0.01 <= mpp <= 100:
        raise UserError(f"mpp {mpp}: expected micrometres per pixel between 0.01 and 100")
    row = studio.row(slide_id)
    meta = (studio.ctx.config.get("slides") or {}).get("metadata")
    if not meta:
        raise UserError("slides.metadata is null in the recipe: name a CSV there for MPP values")
    ws = studio.ctx.stores.workspace
    path = Path(meta) if Path(meta).is_absolute() else ws / meta
    table = pd.read_csv(path, dtype=str) if path.is_file() else pd.DataFrame({"path": []})
    slide_path = str(row["path"])
    shown = os.path.relpath(slide_path, ws) if Path(slide_path).is_relative_to(ws) else slide_path
    key = "path" if "path" in table.columns else "slide"
    hit = table[key].astype(str).isin([shown, slide_path, str(row["name"])])
    if not hit.any():
        table = pd.concat([table, pd.DataFrame({key: [shown]})], ignore_index=True)
        hit = table[key].astype(str) == shown
    table.loc[hit, "mpp"] = str(mpp)
    write_text(path, table.to_csv(index=False))


def add_pages(app: FastAPI, studio: Any) -> None:
    """Every page of the assembly line and its forms."""
    ctx = studio.ctx

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        counts = {
            "slides": len(stores.slides_table(ctx)),
            "datasets": len(stores.datasets(ctx)),
            "models": len(stores.models(ctx)),
            "bentos": len(stores.bentos(ctx)),
            "results": len(stores.infer_results(ctx)),
        }
        return _render(studio, request, "home", counts=counts, jobs=studio.jobs.list()[:10])

    @app.get("/projects", response_class=HTMLResponse)
    def projects(request: Request) -> HTMLResponse:
        from autoscope.project import TASKS

        return _render(studio, request, "projects", tasks=TASKS)

    @app.post("/projects/create")
    async def project_create(request: Request) -> Any:
        from autoscope.atomic import write_text

        name, text = forms.project_recipe(await _form(request))
        path = forms.recipe_file(ctx, name)
        if path.exists():
            raise UserError(f"recipe {path} exists: pick another project name")
        write_text(path, text)
        return _queued(studio, ["project", "create", str(path)], f"project create {name}")

    @app.get("/slides", response_class=HTMLResponse)
    def slides(
        request: Request, q: str = "", status: str = "", sort: str = "name", desc: bool = False
    ) -> HTMLResponse:
        rows = stores.slides_table(ctx, q, status, sort, desc)
        statuses = sorted({str(r["status"]) for r in stores.slides_table(ctx)})
        return _render(
            studio,
            request,
            "slides",
            rows=rows,
            statuses=statuses,
            q=q,
            status=status,
            sort=sort,
            desc=desc,
            columns=stores.SLIDE_COLUMNS,
        )

    @app.post("/slides/mpp")
    async def slides_mpp(request: Request) -> Any:
        form = await _form(request)
        _write_mpp(studio, form.get("slide_id", ""), form.get("mpp", ""))
        return _queued(studio, ["slides", "ingest", ctx.recipe], "slides ingest (mpp)")

    @app.post("/slides/ingest")
    async def slides_ingest(request: Request) -> Any:
        folder = (await _form(request)).get("folder", "").strip()
        words = ["slides", "ingest", ctx.recipe]
        if folder != "recipe":  # `recipe`: the recipe's own sources
            if not folder or "'" in folder or not (ctx.stores.workspace / folder).exists():
                raise UserError(f"folder '{folder}' does not exist")
            words.append(f"slides.sources=['{folder}']")
        return _queued(studio, words)

    @app.get("/viewer/{slide_id}", response_class=HTMLResponse)
    def viewer(request: Request, slide_id: str) -> HTMLResponse:
        row = studio.row(slide_id)
        return _render(studio, request, "viewer", slide=row.to_dict())

    @app.get("/datasets", response_class=HTMLResponse)
    def datasets(request: Request, a: str = "", b: str = "") -> HTMLResponse:
        diff = stores.dataset_diff(ctx, a, b) if a and b else None
        return _render(
            studio,
            request,
            "datasets",
            datasets=stores.datasets(ctx),
            diff=diff,
            a=a,
            b=b,
            choices=forms.choices("dataset"),
        )

    @app.post("/datasets/build")
    async def dataset_build(request: Request) -> Any:
        name = (await _form(request)).get("dataset", "")
        if name not in forms.choices("dataset"):
            raise UserError(f"dataset={name}: not a choice of conf/dataset/")
        ctx.compose([f"dataset={name}"])
        return _queued(studio, ["dataset", "build", ctx.recipe, f"dataset={name}"])

    @app.get("/experiments", response_class=HTMLResponse)
    def experiments(request: Request, sort: str = "") -> HTMLResponse:
        rows, metrics = stores.runs(ctx, sort or None)
        return _render(
            studio,
            request,
            "experiments",
            rows=rows,
            metrics=metrics,
            sort=sort,
            studies=stores.studies(ctx),
            groups=forms.group_choices(),
            current={g: forms.current(ctx, g) for g in forms.TRAIN_GROUPS},
        )

    @app.get("/experiments/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        try:
            detail = stores.run_detail(ctx, run_id)
        except Exception as e:  # noqa: BLE001 - MLflow's own "run not found"
            raise HTTPException(404, f"no run {run_id!r}") from e
        return _render(studio, request, "run", **detail)

    @app.post("/experiments/launch")
    async def launch(request: Request) -> Any:
        return _queued(studio, forms.train_words(ctx, await _form(request)))

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request) -> HTMLResponse:
        rows, metrics = stores.runs(ctx, str(ctx.config.get("metric", "val/acc")))
        arch = ctx.config.get("archive") or {}
        return _render(
            studio,
            request,
            "models",
            models=stores.models(ctx),
            runs=rows[:10],
            metrics=metrics,
            thresholds=arch.get("thresholds") or {},
        )

    @app.post("/models/approve")
    async def approve(request: Request) -> Any:
        run = (await _form(request)).get("run", "best").strip() or "best"
        if run != "best":
            forms.safe_name(run, "run id")
        return _queued(studio, ["archive", ctx.recipe, f"run={run}"])

    @app.get("/packages", response_class=HTMLResponse)
    def packages(request: Request) -> HTMLResponse:
        return _render(
            studio, request, "packages", bentos=stores.bentos(ctx), models=stores.models(ctx)
        )

    @app.post("/packages/build")
    async def package_build(request: Request) -> Any:
        await _form(request)
        return _queued(studio, ["package", ctx.recipe])

    @app.get("/inference", response_class=HTMLResponse)
    def inference(request: Request) -> HTMLResponse:
        return _render(
            studio,
            request,
            "inference",
            results=stores.infer_results(ctx),
            models=stores.models(ctx),
            bentos=stores.bentos(ctx),
            infer=ctx.config.get("infer") or {},
        )

    @app.post("/inference/run")
    async def inference_run(request: Request) -> Any:
        form = await _form(request)
        query = (form.get("slides") or "status == 'ok'").strip()
        if '"' in query:
            raise UserError("slides query: use single quotes inside it, e.g. status == 'ok'")
        words = [f'infer.slides="{query}"']
        for key in ("instances", "memory", "model.version"):
            v = (form.get(key) or "").strip()
            if v:
                words.append(f"infer.{key}={v}")
        ctx.compose(words)
        return _queued(studio, ["infer", ctx.recipe, *words])

    from autoscope.studio.loop_pages import add_loop_pages

    add_loop_pages(app, studio, _render, _form, _queued)

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request) -> HTMLResponse:
        return _render(studio, request, "jobs", jobs=studio.jobs.list())

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str) -> HTMLResponse:
        job = studio.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return _render(studio, request, "job", job=job.to_json())
