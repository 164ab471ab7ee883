"""Real git + DVC workspaces for tests: commands run with the venv on PATH, one pipeline set-up.

Imported by the workspace tests (`sys.path` holds `tests/` through pytest's rootdir conftest).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    """The environment of a workspace command: the venv first, DVC quiet, a git identity."""
    out = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        out.setdefault(f"{key}_NAME", "test")
        out.setdefault(f"{key}_EMAIL", "test@localhost")
    return out


def sh(*cmd: str, cwd: Path) -> str:
    """Run a command in the workspace; fail the test with its output if it fails."""
    p = subprocess.run(list(cmd), cwd=cwd, env=env(), capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(cmd)}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout + p.stderr


def pipeline_workspace(
    base: Path, recipe: str, text: str, write_raw: Callable[[Path], None], *targets: str
) -> Path:
    """`autoscope init` a workspace under `base`, put `recipes/<recipe>.yaml` (`text`) on its
    pipeline, write the raw slides (`write_raw(root)`), `dvc add` them, commit, `dvc repro`
    (`targets`, default all), and return its root."""
    root = base / "ws"
    sh(str(BIN / "autoscope"), "init", str(root), cwd=base)
    (root / "recipes" / f"{recipe}.yaml").write_text(text)
    write_raw(root)
    out = sh("autoscope", "pipeline", "add", recipe, cwd=root)
    assert f"train@{recipe} (one training run)" in out
    sh("dvc", "add", "data/demo/raw", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", f"{recipe} recipe and its slides", cwd=root)
    sh("dvc", "repro", *targets, cwd=root)
    return root
