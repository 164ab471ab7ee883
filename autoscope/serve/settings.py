"""What a packaged service needs to know: written by `autoscope package`, read by the service.

The settings travel inside the bento as its build arguments (`bento.yaml`), so a bento serves the
same way anywhere; `bentoml serve autoscope.serve.service:PatchService --arg config=<json file>`
serves from the source tree. Everything about a model itself comes from its card in the store.

A bento holds no host paths: its `allowed_roots` and `jobs_dir` are the container's defaults
(`package.container`), and the serve-time environment overrides them (`AUTOSCOPE_ALLOWED_ROOTS`,
an `os.pathsep` list; `AUTOSCOPE_JOBS_DIR`). Local serving passes the project's folders that way
(`serve_env`). (BentoML 1.4 replaces `--arg` values by the bento's own when it serves a built
bento, so serve-time arguments cannot carry them.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

ROOTS_ENV = "AUTOSCOPE_ALLOWED_ROOTS"  # serve-time slide folders (os.pathsep list)
JOBS_ENV = "AUTOSCOPE_JOBS_DIR"  # serve-time jobs folder


class PathRefused(ValueError):
    """A slide path outside the service's allowed roots."""


class ServeSettings(BaseModel):
    """Settings of one packaged service (see `conf/package/default.yaml` for each field)."""

    name: str
    purpose: str = ""
    models: list[str] = Field(min_length=1)  # BentoML tags; the first answers `predict`
    max_batch_size: int = Field(64, ge=1)  # most patches per model call (and per request)
    max_latency_ms: int = Field(30000, ge=1)  # how long a request may wait in the batching queue
    workers: int = Field(1, ge=1)  # worker processes (each loads the models)
    threads: int = Field(2, ge=1)  # threads per worker running the model (batches, slide jobs)
    torch_threads: int = Field(0, ge=0)  # torch's intra-op threads per worker; 0: cores / workers
    queue_limit: int = Field(256, ge=1)  # predict requests one worker holds; past it: 503 + why
    concurrency: int = 32
    resources: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int = 3600
    host: str = "127.0.0.1"  # bind address unless `--host`/`BENTOML_HOST` (BentoML: 0.0.0.0)
    allowed_roots: list[str] = Field(min_length=1)  # defaults; AUTOSCOPE_ALLOWED_ROOTS overrides
    jobs_dir: str  # default; AUTOSCOPE_JOBS_DIR overrides
    infer: dict[str, Any] = Field(default_factory=dict)


def serve_env(allowed_roots: list[str], jobs_dir: str) -> dict[str, str]:
    """The serve-time environment giving a service these folders (what `load_settings` reads)."""
    return {ROOTS_ENV: os.pathsep.join(allowed_roots), JOBS_ENV: jobs_dir}


def serve_paths(env: Mapping[str, str], roots: list[str], jobs_dir: str) -> tuple[list[str], str]:
    """`(allowed_roots, jobs_dir)`: the serve-time environment's, else the given defaults.

    Raises:
        ValueError: a folder given there is not an absolute path.
    """
    if env.get(ROOTS_ENV, "").strip():
        roots = [r for r in env[ROOTS_ENV].split(os.pathsep) if r.strip()]
    if env.get(JOBS_ENV, "").strip():
        jobs_dir = env[JOBS_ENV]
    if not roots:
        raise ValueError(f"autoscope service: {ROOTS_ENV} names no folder")
    for name, path in [*((ROOTS_ENV, r) for r in roots), (JOBS_ENV, jobs_dir)]:
        if not os.path.isabs(path):
            raise ValueError(f"autoscope service: {name} must hold absolute paths, got {path!r}")
    return roots, jobs_dir


def load_settings(args: Any, env: Mapping[str, str] | None = None) -> ServeSettings:
    """Settings from the bento arguments and the serve-time environment `env`.

    The `config` argument holds a dict, a JSON text or a JSON file path; `env` (e.g.
    `os.environ`) may override its folders (`AUTOSCOPE_ALLOWED_ROOTS`, `AUTOSCOPE_JOBS_DIR`).

    Raises:
        ValueError: no `config` argument, one that does not parse, or a relative folder.
    """
    raw = getattr(args, "config", None) if not isinstance(args, dict) else args.get("config")
    if raw is None:
        raise ValueError(
            "autoscope service: no `config` argument (build with `autoscope package`, or serve "
            "with --arg config=<service.json>)"
        )
    if isinstance(raw, str):
        text = Path(raw).read_text() if os.path.isfile(raw) else raw
        raw = json.loads(text)
    settings = ServeSettings.model_validate(raw)
    roots, jobs_dir = serve_paths(env or {}, settings.allowed_roots, settings.jobs_dir)
    return settings.model_copy(update={"allowed_roots": roots, "jobs_dir": jobs_dir})


def check_slide_path(path: str, roots: list[str]) -> str:
    """The real path of a slide file that lies inside one of `roots`.

    Symlinks and `..` are resolved before the check, so neither escapes a root.

    Raises:
        PathRefused: outside the allowed roots.
        ValueError: not an existing file, or not a path at all.
    """
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ValueError("path must be a non-empty slide file path")
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            if not real.is_file():
                raise ValueError(f"no slide file at {path}")
            return str(real)
    raise PathRefused(f"path {path} is outside the allowed roots of this service")
