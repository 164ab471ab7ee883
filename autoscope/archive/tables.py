"""Text tables of the tracking store: `autoscope runs list` and `autoscope models list`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoscope.archive.card import ModelCard
from autoscope.models.tracking import kept_metrics


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width text table (columns two spaces apart, no trailing blanks)."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table)
    return "\n".join(line.rstrip() for line in lines)


def run_rows(
    client: Any, project: str, metric: str, metric_mode: str, sort: str | None, limit: int
) -> tuple[list[dict], list[str]]:
    """The project's runs as rows (newest first, or best first by `sort`) and the metric names.

    Sorted by a metric, only FINISHED runs that logged it are ranked; every other run (running,
    killed, failed, or without the metric) follows them, newest first, with its status.

    Args:
        client: an MLflow client on the tracking store.
        project: the experiment name.
        metric: the project's selection metric (`metric_mode` max or min says which is best).
        sort: a metric name or `start_time` (None: newest first).
        limit: most rows returned.
    """
    exp = client.get_experiment_by_name(project)
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    key = sort or "start_time"
    desc = metric_mode == "max" if key == metric else not key.endswith("loss")
    shown = [metric, "val/loss", "test/acc", "test/bal_acc", "test/f1"]
    if sort and sort not in shown and sort != "start_time":
        shown.insert(0, sort)
    rows = []
    for r in runs:
        row = {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "dataset_version": r.data.tags.get("dataset_version", ""),
            "start_time": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.info.start_time / 1e3)),
            "_start": r.info.start_time,
        }
        summary = kept_metrics(r.data.metrics)
        row.update({m: summary.get(m) for m in shown})
        rows.append(row)
    if key == "start_time":
        rows.sort(key=lambda r: r["_start"], reverse=True)
    else:
        ranks = [r["status"] == "FINISHED" and r.get(key) is not None for r in rows]
        ranked = [r for r, ok in zip(rows, ranks, strict=True) if ok]
        rest = [r for r, ok in zip(rows, ranks, strict=True) if not ok]
        rest.sort(key=lambda r: r["_start"], reverse=True)
        rows = sorted(ranked, key=lambda r: r[key], reverse=desc) + rest
    return rows[:limit], shown


def format_runs(rows: list[dict], metrics: list[str]) -> str:
    """Text table of run rows: id, name, status, metrics, dataset version, start time."""
    cols = ["run_id", "name", "status", *metrics, "dataset_version", "start_time"]

    def cell(row: dict, c: str) -> str:
        v = row.get(c)
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)[:32] if c == "dataset_version" else str(v)

    return text_table(cols, [[cell(r, c) for c in cols] for r in rows])


def format_models(
    cards: list[tuple[Path, ModelCard]], aliases: dict[str, dict[int, list[str]]], metric: str
) -> str:
    """Text table of archived model versions with their registry aliases and `metric`."""
    cols = ["model", "version", "aliases", metric, "run", "dataset", "bentoml_tag", "date"]
    rows = []
    for _, c in cards:
        value = c.metrics.get(metric)
        rows.append(
            [
                c.name,
                f"v{c.version}",
                ",".join(aliases.get(c.name, {}).get(c.version, [])),
                "" if value is None else f"{value:.4f}",
                (c.run_id or "")[:12],
                str(c.dataset_version or "")[:12],
                str(c.bentoml_tag or ""),
                str(c.created or ""),
            ]
        )
    return text_table(cols, rows)
