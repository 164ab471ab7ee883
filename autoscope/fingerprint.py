"""What each pipeline stage of a recipe depends on besides data: code, conf choices and values.

`autoscope pipeline fingerprint` (the `fingerprint` stage of a workspace's dvc.yaml, run on every
`dvc repro`) writes `.autoscope/fingerprint/<recipe>/<stage>.json` for every recipe of the
pipeline: the autoscope version, a hash of the source files the stage runs, the config group
choices the recipe composes and the composed values the stage reads. A stage's file changes only
when one of those does, so DVC re-runs exactly the stages an upgrade, a `conf/` edit or a
recipe's group choice touches. No absolute path is written: the workspace prefix is replaced by
`${paths.workspace}`, so the files are equal in every checkout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoscope.atomic import write_text

PACKAGE = Path(__file__).resolve().parent
COMMON = ("atomic.py", "config.py", "project.py", "errors.py", "tasks.py", "stages/app.py")
CODE: dict[str, tuple[str, ...]] = {  # what each stage runs (package-relative files and folders)
    "ingest": ("slides", "stages/slides.py", "stages/project.py"),
    "dataset": ("datasets", "slides", "loop/corrections.py", "loop/qupath.py", "stages/dataset.py"),
    "train": ("models", "hpo", "datasets/store.py", "stages/train.py", "../hydra_plugins"),
    "archive": ("archive", "infer", "stages/archive.py"),
    "package": ("serve", "infer", "stages/package.py"),
    "infer": ("infer", "slides", "stages/infer.py"),
    "refine": ("loop", "infer/models.py", "stages/loop.py"),
    "select": ("loop", "infer", "slides", "stages/loop.py"),
}
READS: dict[str, tuple[str, ...]] = {  # the composed config each stage reads
    "ingest": ("project", "slides", "tissue"),
    "dataset": ("project", "slides", "tissue", "dataset", "corrections", "seed"),
    "train": ("project", "dataset", "model", "trainer", "logger", "hpo", "seed", "metric"),
    "archive": ("project", "archive", "run", "metric", "metric_mode", "tissue"),
    "package": ("project", "package", "archive"),
    "infer": ("project", "infer", "tissue", "archive"),
    "refine": ("project", "dataset", "refine", "loop", "seed"),
    "select": ("project", "dataset", "select", "loop", "tissue", "seed"),
}


def code_hash(parts: tuple[str, ...]) -> str:
    """sha256 over the package-relative names and bytes of the `.py`/`.yaml` files of `parts`."""
    h = hashlib.sha256()
    files: list[Path] = []
    for part in (*COMMON, *parts):
        p = (PACKAGE / part).resolve()
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.suffix in (".py", ".yaml")]
        elif p.is_file():
            files.append(p)
    base = PACKAGE.parent
    for f in sorted(set(files)):
        if "__pycache__" in f.parts:
            continue
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def stage_prints(data: dict, choices: dict[str, Any], workspace: Path) -> dict[str, dict]:
    """The fingerprint of every stage of one composed recipe (paths relative to the workspace).

    Args:
        data: the recipe composed and resolved, as plain data.
        choices: its config group choices (`model: tiny_cnn` ...).
        workspace: the workspace root (its prefix is written as `${paths.workspace}`).
    """
    from autoscope import __version__

    ws = str(workspace.resolve())
    out = {}
    for stage, keys in READS.items():
        values = {k: data.get(k) for k in keys if k in data}
        text = json.dumps(values, sort_keys=True, default=str).replace(ws, "${paths.workspace}")
        out[stage] = {
            "autoscope": __version__,
            "code": code_hash(CODE[stage]),
            "choices": {k: v for k, v in sorted(choices.items()) if k in keys},
            "values": json.loads(text),
        }
    return out


def write_all(
    workspace: Path, recipes: list[str], compose: Callable[[Path, Path], tuple[dict, dict]]
) -> list[str]:
    """Write the fingerprints of `recipes`; return the files that changed.

    Args:
        workspace: the workspace root.
        recipes: names of `recipes/<name>.yaml` on the pipeline.
        compose: (recipe file, workspace) -> (composed data, group choices), i.e.
            `autoscope.config.compose_with_choices`.
    """
    changed = []
    root = workspace / ".autoscope" / "fingerprint"
    for recipe in recipes:
        data, choices = compose(workspace / "recipes" / f"{recipe}.yaml", workspace)
        for stage, fp in stage_prints(data, choices, workspace).items():
            path = root / recipe / f"{stage}.json"
            text = json.dumps(fp, indent=1, sort_keys=True) + "\n"
            if not path.is_file() or path.read_text() != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, text)
                changed.append(str(path.relative_to(workspace)))
    return changed
