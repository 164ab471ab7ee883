"""What the pages show, read from the same stores through the same functions the CLI views use.

Nothing here writes: changes go through jobs (the CLI) or the MPP form (the metadata CSV).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from autoscope.studio.settings import StudioContext

SLIDE_COLUMNS = ["name", "vendor", "width_px", "height_px", "mpp_x", "mpp_source", "status"]


def slides_table(
    ctx: StudioContext, q: str = "", status: str = "", sort: str = "name", desc: bool = False
) -> list[dict[str, Any]]:
    """Registry rows filtered by a text search and a status, sorted by any column."""
    from autoscope.slides.registry import load_registry

    df = load_registry(ctx.stores)
    if q:
        text = df["name"].astype(str) + " " + df["path"].astype(str)
        df = df[text.str.contains(q, case=False, regex=False)]
    if status:
        df = df[df["status"].astype(str) == status]
    if sort in df.columns:
        df = df.sort_values(sort, ascending=not desc, na_position="last", kind="stable")
    keep = ["slide_id", *SLIDE_COLUMNS, "error", "thumbnail"]
    return df[[c for c in keep if c in df.columns]].to_dict("records")


_ROWS: dict[tuple, dict[str, pd.Series]] = {}  # the registry read last, by file and mtime


def slide_row(ctx: StudioContext, slide_id: str) -> pd.Series | None:
    """The registered slide with this exact id (None: not registered).

    The registry is read again whenever its file changes (size or modification time), so an
    ingest running beside the Studio shows at once; tile requests do not re-read it each time.
    """
    from autoscope.slides.registry import load_registry, registry_path

    path = registry_path(ctx.stores)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    rows = _ROWS.get(key)
    if rows is None:
        df = load_registry(ctx.stores)
        rows = {str(r["slide_id"]): r for _, r in df.iterrows()}
        _ROWS.clear()
        _ROWS[key] = rows
    return rows.get(slide_id)


def datasets(ctx: StudioContext) -> list[dict[str, Any]]:
    """The project's datasets with their stats and version (as `autoscope dataset list`)."""
    from autoscope.datasets.store import dataset_version, list_datasets

    rows = []
    for d in list_datasets(ctx.stores):
        p = d / "stats.json"
        stats = json.loads(p.read_text()) if p.is_file() else {}
        pics = sorted(str(x) for x in (d / "report").glob("*.png"))
        rows.append(
            {
                "name": d.name,
                "dir": str(d),
                "version": dataset_version(d),
                "stats": stats,
                "pictures": pics,
            }
        )
    return rows


def dataset_diff(ctx: StudioContext, a: str, b: str) -> dict[str, Any]:
    """`autoscope dataset diff a b` as data."""
    from autoscope.datasets.diff import diff_datasets
    from autoscope.datasets.store import dataset_dir

    return diff_datasets(dataset_dir(ctx.stores, a), dataset_dir(ctx.stores, b))


def client(ctx: StudioContext) -> Any:
    """The project's MLflow client."""
    from autoscope.archive.select import mlflow_client

    return mlflow_client(ctx.stores.mlflow_uri)


def runs(ctx: StudioContext, sort: str | None) -> tuple[list[dict], list[str]]:
    """The runs table of `autoscope runs list` (sorted by any metric)."""
    from autoscope.archive.tables import run_rows

    metric = str(ctx.config.get("metric", "val/acc"))
    mode = str(ctx.config.get("metric_mode", "max"))
    return run_rows(client(ctx), ctx.project.name, metric, mode, sort, 500)


def run_detail(ctx: StudioContext, run_id: str) -> dict[str, Any]:
    """A run's params, metrics, curves (metric histories) and picture artefacts."""
    from autoscope.archive.sources import artifact_files

    c = client(ctx)
    run = c.get_run(run_id)
    curves = {}
    for key in sorted(run.data.metrics):
        hist = c.get_metric_history(run_id, key)
        if len(hist) > 1:
            curves[key] = [(h.step, h.value) for h in sorted(hist, key=lambda h: h.step)]
    pics = [f for f in artifact_files(c, run_id) if f.endswith(".png")]
    return {"run": run, "curves": curves, "pictures": pics}


def artifact_path(ctx: StudioContext, run_id: str, name: str) -> Path:
    """Local path of a run's artefact (the artefact store is a local folder)."""
    from urllib.parse import urlparse

    uri = client(ctx).get_run(run_id).info.artifact_uri
    root = Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)
    return root / name


def studies(ctx: StudioContext) -> list[dict[str, Any]]:
    """Optuna studies of the storage: trials' history and parameter importances."""
    import optuna

    urls = [ctx.stores.optuna_storage]  # the shared storage, and each sweep folder's own
    urls += [f"sqlite:///{p}" for p in sorted((ctx.stores.outputs / "hpo").glob("*/study.db"))]
    urls = [
        u
        for u in dict.fromkeys(urls)
        if not u.startswith("sqlite:///") or Path(u[len("sqlite:///") :]).is_file()
    ]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found = [(u, s) for u in urls for s in optuna.get_all_study_summaries(u)]
    out = []
    for url, s in found:
        study = optuna.load_study(study_name=s.study_name, storage=url)
        trials = [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
            for t in study.trials
        ]
        try:
            imp = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError, ZeroDivisionError):
            imp = {}
        out.append({"name": s.study_name, "trials": trials, "importances": imp})
    return out


def models(ctx: StudioContext) -> list[dict[str, Any]]:
    """Archived model versions with their cards and review pictures."""
    from autoscope.archive.card import archived_cards

    if not ctx.models_dir.is_dir():
        return []
    out = []
    for folder, card in archived_cards(ctx.models_dir):
        pics = sorted(str(p) for p in folder.rglob("*.png"))
        out.append({"folder": str(folder), "card": card.to_json(), "pictures": pics})
    return out


def bentos(ctx: StudioContext) -> list[dict[str, Any]]:
    """Bentos in the project's BentoML home: tag, description, Dockerfile text."""
    root = ctx.stores.bentoml_home / "bentos"
    out = []
    for info in sorted(root.glob("*/*/bento.yaml")):
        folder = info.parent
        docker = next(iter(sorted(folder.glob("env/docker/Dockerfile"))), None)
        out.append(
            {
                "tag": f"{folder.parent.name}:{folder.name}",
                "dir": str(folder),
                "bento_yaml": info.read_text()[:4000],
                "dockerfile": docker.read_text()[:8000] if docker else "",
            }
        )
    return out


def infer_results(ctx: StudioContext) -> list[dict[str, Any]]:
    """Per-slide inference results (`summary.json`) with their GeoJSON files."""
    out = []
    for summary in sorted(ctx.infer_dir.glob("*/*/*/summary.json")):
        try:
            s = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        slide = s.get("slide") or {}
        out.append(
            {
                "dir": str(summary.parent),
                "model": f"{summary.parent.parent.parent.name} {summary.parent.parent.name}",
                "slide": slide.get("name", summary.parent.name),
                "slide_id": slide.get("slide_id"),
                "per_class": (s.get("tiles") or {}).get("per_class", {}),
                "files": sorted(str(p) for p in summary.parent.iterdir() if p.is_file()),
            }
        )
    return out


def infer_dirs(ctx: StudioContext, slide_name: str) -> list[Path]:
    """The result folders of one slide (every model version), newest version last."""
    return sorted(p.parent for p in ctx.infer_dir.glob(f"*/*/{slide_name}/summary.json"))
