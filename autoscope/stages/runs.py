"""`autoscope runs list` (table of tracked runs) and `autoscope ui` (the MLflow UI on 127.0.0.1)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from autoscope.errors import UserError


def _parse(
    prog: str, flags: list[str], add: Callable[[argparse.ArgumentParser], None]
) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, exit_on_error=False)
    add(p)
    try:
        return p.parse_args(flags)
    except (argparse.ArgumentError, SystemExit) as e:
        raise UserError(f"{prog}: bad flags {flags} ({e})") from None


def list_view(cfg: Any, flags: list[str]) -> None:
    """Print the project's runs: `[--sort METRIC|start_time] [--limit N]`."""
    from autoscope.archive.select import mlflow_client
    from autoscope.archive.tables import format_runs, run_rows
    from autoscope.models.tracking import reap_dead_runs

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sort", default=None, help="metric to sort by (best first)")
        p.add_argument("--limit", type=int, default=50, help="rows shown")

    args = _parse("autoscope runs list", flags, add)
    project = str(cfg.project.name)
    client = mlflow_client(str(cfg.paths.mlflow_uri))
    exp = client.get_experiment_by_name(project)
    if exp is not None:  # runs of killed trainings end KILLED before the table is made
        reap_dead_runs(client, exp.experiment_id)
    rows, metrics = run_rows(
        client,
        project,
        str(cfg.metric),
        str(cfg.metric_mode),
        args.sort,
        args.limit,
    )
    if not rows:
        print(f"no runs in project '{project}' yet (run `autoscope train`)")
        return
    print(format_runs(rows, metrics))


def ui_view(cfg: Any, flags: list[str]) -> None:
    """Serve the MLflow UI on 127.0.0.1 until Ctrl-C: `[--port N] [--check]`.

    `--check` starts it, waits until it answers, prints the URL and stops it (a smoke test).
    """
    from autoscope.archive.ui import serve_ui
    from autoscope.config import stores_spec
    from autoscope.procs import port_holder

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
        p.add_argument("--check", action="store_true", help="start, check it answers, stop")

    args = _parse("autoscope ui", flags, add)
    holder = port_holder("127.0.0.1", args.port)
    if holder is not None:  # else the other server's answers would pass for the MLflow UI's
        raise UserError(
            f"autoscope ui: port {args.port} on 127.0.0.1 is held by {holder}: "
            "stop it or pick another port (--port N)"
        )
    serve_ui(stores_spec(cfg), str(cfg.project.name), args.port, check=args.check)


def export_view(cfg: Any, flags: list[str]) -> None:
    """Write the champion's metrics.json, curves.csv and confusion matrix: `--out DIR`.

    The champion is the run `autoscope archive` (run=best) would keep: the sweep's choice, else
    the best run on the recipe's dataset version. `--train-dir DIR` also records its id there.
    """
    from pathlib import Path

    from autoscope.archive.export import export_run
    from autoscope.archive.version import chosen_run
    from autoscope.stages.archive import archive_spec

    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="report folder")
        p.add_argument("--train-dir", default=None, help="also write run.json here")

    args = _parse("autoscope runs export", flags, add)
    spec = archive_spec(cfg)
    client, run = chosen_run(spec)
    out = export_run(
        client,
        run,
        Path(args.out),
        spec.train_runs,
        Path(args.train_dir) if args.train_dir else None,
    )
    print(f"runs export: run {out['run_id']}: {out['metrics']} metrics, curves -> {args.out}")
