"""The command table of `autoscope`: every (stage, verb), what runs it and its one-line help.

Plain data (no imports), so `autoscope --help` stays instant.
"""

from __future__ import annotations

# (stage, verb) -> (module:function, kind, one-line help). kind: "action" gets `run(cfg) -> dict`,
# "view" gets `view(cfg, flags: list[str]) -> None`, "command" (no recipe) gets `fn(argv) -> int`.
STAGES: dict[tuple[str, str], tuple[str, str, str]] = {
    ("init", ""): (
        "autoscope.stages.workspace:init_command",
        "command",
        "make a workspace: <dir> [--remote URL] [--demo] (git + DVC, recipes/, dvc.yaml)",
    ),
    ("pipeline", "add"): (
        "autoscope.stages.workspace:add_command",
        "command",
        "put recipes/<recipe>.yaml on the workspace's dvc.yaml pipeline",
    ),
    ("pipeline", "list"): (
        "autoscope.stages.workspace:list_command",
        "command",
        "the recipes on the pipeline and their stages",
    ),
    ("pipeline", "fingerprint"): (
        "autoscope.stages.workspace:fingerprint_command",
        "command",
        "write what each stage depends on (dvc.yaml's first stage)",
    ),
    ("demo", "generate"): (
        "autoscope.stages.workspace:demo_data_command",
        "command",
        "write the embedded demo's raw slides into data/demo/raw",
    ),
    ("project", "create"): (
        "autoscope.stages.project:create",
        "action",
        "make the workspace and MLflow experiment",
    ),
    ("slides", "ingest"): (
        "autoscope.stages.slides:ingest",
        "action",
        "register WSIs: metadata, thumbnails, tissue masks",
    ),
    ("slides", "list"): (
        "autoscope.stages.slides:list_view",
        "view",
        "table of slides [--where EXPR] [--sort COL]",
    ),
    ("slides", "show"): (
        "autoscope.stages.slides:show_view",
        "view",
        "one slide: properties, thumbnail, datasets",
    ),
    ("dataset", "build"): (
        "autoscope.stages.dataset:build",
        "action",
        "cut annotated patches into a versioned dataset",
    ),
    ("dataset", "list"): ("autoscope.stages.dataset:list_view", "view", "datasets of the project"),
    ("dataset", "show"): (
        "autoscope.stages.dataset:show_view",
        "view",
        "one dataset: stats, splits, report",
    ),
    ("dataset", "diff"): (
        "autoscope.stages.dataset:diff_view",
        "view",
        "patches and class counts changed between two",
    ),
    ("train", ""): (
        "autoscope.stages.train:run",
        "action",
        "train a model; -m sweeps a grid, or an Optuna study with hpo=<space>",
    ),
    ("runs", "list"): ("autoscope.stages.runs:list_view", "view", "tracked runs [--sort val/acc]"),
    ("runs", "export"): (
        "autoscope.stages.runs:export_view",
        "view",
        "the champion's metrics.json, curves.csv, confusion matrix --out DIR",
    ),
    ("zoo", "list"): (
        "autoscope.stages.zoo:list_view",
        "view",
        "pretrained weights available locally",
    ),
    ("archive", ""): (
        "autoscope.stages.archive:run",
        "action",
        "review a run and store it with a model card",
    ),
    ("models", "list"): ("autoscope.stages.archive:models_view", "view", "archived models"),
    ("package", ""): (
        "autoscope.stages.package:run",
        "action",
        "bundle archived models as a BentoML bento",
    ),
    ("infer", ""): (
        "autoscope.stages.infer:run",
        "action",
        "run a package over slides: heatmaps, GeoJSON, summaries",
    ),
    ("ui", ""): ("autoscope.stages.runs:ui_view", "view", "MLflow UI on 127.0.0.1"),
    ("refine", ""): (
        "autoscope.stages.loop:refine",
        "action",
        "review queue of likely mislabelled patches (table, sheet, QuPath GeoJSON)",
    ),
    ("select", ""): (
        "autoscope.stages.loop:select",
        "action",
        "regions to annotate on unlabelled tissue [select.budget=N] (QuPath GeoJSON)",
    ),
    ("loop", "correct"): (
        "autoscope.stages.loop:correct",
        "action",
        "edited QuPath files -> the next dataset version 'corrections.files=[...]'",
    ),
    ("loop", "run"): (
        "autoscope.stages.loop:run_round",
        "action",
        "corrections -> next dataset version -> train -> archive, in one command",
    ),
    ("studio", ""): (
        "autoscope.stages.studio:run",
        "action",
        "the web app over every stage on 127.0.0.1 [studio.port=N]",
    ),
}
