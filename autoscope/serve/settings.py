"""What a packaged service needs to know: written by `autoscope package`, read by the service.

The settings travel inside the bento as its build arguments (`bento.yaml`), so a bento serves the
same way anywhere; `bentoml serve autoscope.serve.service:PatchService --arg config=<json file>`
serves from the source tree. Everything about a model itself comes from its card in the store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class PathRefused(ValueError):
    """A slide path outside the service's allowed roots."""


class ServeSettings(BaseModel):
    """Settings of one packaged service (see `conf/package/default.yaml` for each field)."""

    name: str
    purpose: str = ""
    models: list[str] = Field(min_length=1)  # BentoML tags; the first answers `predict`
    max_batch_size: int = 64
    max_latency_ms: int = 200
    workers: int = 1
    concurrency: int = 32
    resources: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int = 3600
    allowed_roots: list[str] = Field(min_length=1)
    jobs_dir: str
    infer: dict[str, Any] = Field(default_factory=dict)


def load_settings(args: Any) -> ServeSettings:
    """Settings from the bento arguments: `config` holds a dict, a JSON text or a JSON file path.

    Raises:
        ValueError: no `config` argument, or one that does not parse.
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
    return ServeSettings.model_validate(raw)


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
