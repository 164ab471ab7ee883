"""`autoscope runs list` (table of tracked runs) and `autoscope ui` (the MLflow UI on 127.0.0.1)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from autoscope.errors import UserError

COLUMNS = ("run_id", "name", "status", "dataset_version", "start_time")


def _parse(prog: str, flags: list[str], add: Any) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, exit_on_error=False)
    add(p)
    try:
        return p.parse_args(flags)
    except (argparse.ArgumentError, SystemExit) as e:
        raise UserError(f"{prog}: bad flags {flags} ({e})") from None


def run_rows(cfg: Any, sort: str | None, limit: int) -> tuple[list[dict], list[str]]:
    """The project's runs as rows (newest first, or best first by `sort`) and the metric names."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.paths.mlflow_uri)
    exp = client.get_experiment_by_name(str(cfg.project.name))
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    metric = sort or "start_time"
    desc = str(cfg.metric_mode) == "max" if metric == cfg.metric else not metric.endswith("loss")
    shown = [cfg.metric, "val/loss", "test/acc", "test/bal_acc", "test/f1"]
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
        row.update({m: r.data.metrics.get(m) for m in shown})
        rows.append(row)
    if metric == "start_time":
        rows.sort(key=lambda r: r["_start"], reverse=True)
    else:
        known = [r for r in rows if r.get(metric) is not None]
        rest = [r for r in rows if r.get(metric) is None]
        rows = sorted(known, key=lambda r: r[metric], reverse=desc) + rest
    return rows[:limit], shown


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A fixed-width text table."""
    table = [header, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in table)
    return "\n".join(line.rstrip() for line in lines)


def format_table(rows: list[dict], metrics: list[str]) -> str:
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


def list_view(cfg: Any, flags: list[str]) -> None:
    """Print the project's runs: `[--sort METRIC|start_time] [--limit N]`."""

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sort", default=None, help="metric to sort by (best first)")
        p.add_argument("--limit", type=int, default=50, help="rows shown")

    args = _parse("autoscope runs list", flags, add)
    rows, metrics = run_rows(cfg, args.sort, args.limit)
    if not rows:
        print(f"no runs in project '{cfg.project.name}' yet (run `autoscope train`)")
        return
    print(format_table(rows, metrics))


def ui_command(cfg: Any, port: int) -> list[str]:
    """The `mlflow ui` command line on the project's store, bound to 127.0.0.1."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", str(cfg.paths.mlflow_uri),
        "--default-artifact-root", Path(cfg.paths.mlflow_artifacts).as_uri(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> bool:
    """Poll `url` until it answers 200, the process exits, or the timeout passes."""
    import urllib.request

    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def stop_group(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM the server's process group (then SIGKILL if it lingers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


def ui_view(cfg: Any, flags: list[str]) -> None:
    """Serve the MLflow UI on 127.0.0.1 until Ctrl-C: `[--port N] [--check]`.

    `--check` starts it, waits until it answers, prints the URL and stops it (a smoke test).
    """

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
        p.add_argument("--check", action="store_true", help="start, check it answers, stop")

    args = _parse("autoscope ui", flags, add)
    Path(cfg.paths.mlflow_artifacts).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        ui_command(cfg, args.port), env=env, start_new_session=True, cwd=cfg.paths.workspace
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        if not wait_http(f"{url}/health", 120.0, proc):
            raise UserError(f"MLflow UI did not start on {url} (is the port taken? use --port N)")
        print(f"MLflow UI for project '{cfg.project.name}': {url}  (Ctrl-C stops it)", flush=True)
        if not args.check:
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_group(proc)
