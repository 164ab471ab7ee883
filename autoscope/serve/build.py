"""Build a bento from `conf/package/`: resolve archived models, pin packages, `bentoml build`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscope.atomic import write_text
from autoscope.errors import UserError
from autoscope.infer.spec import check_settings

SERVICE = "autoscope.serve.service:PatchService"


def pinned(names: list[str], constraints: Path) -> list[str]:
    """`name==version` for each package, the version read from the constraints file.

    Raises:
        UserError: a package is not pinned there.
    """
    pins: dict[str, str] = {}
    for line in constraints.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    out = []
    for name in names:
        key = str(name).lower().replace("_", "-")
        if key not in pins:
            raise UserError(f"package.python_packages: '{name}' is not pinned in {constraints}")
        out.append(f"{name}=={pins[key]}")
    return out


@dataclass(frozen=True)
class ModelRef:
    """One packaged model: its archive `model_name` and a registry version or alias."""

    name: str
    version: int | str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class PackageSpec:
    """What one bento serves and how it runs (`conf/package/`)."""

    project: str
    name: str  # bento and service name
    purpose: str
    models: tuple[ModelRef, ...]  # the first answers `predict`
    jobs_dir: str
    allowed_roots: tuple[str, ...]
    resources: dict[str, Any] = field(default_factory=dict)
    max_batch_size: int = 64
    max_latency_ms: int = 1000
    workers: int = 1
    concurrency: int = 32
    timeout_s: int = 3600
    infer: dict[str, Any] = field(default_factory=dict)  # engine settings of the slide job
    python_packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_settings(self.infer, "package.infer")

    def settings(self, tags: list[str]) -> dict[str, Any]:
        """The service settings (`serve.settings.ServeSettings`) for the resolved model tags."""
        return {
            "name": self.name,
            "purpose": self.purpose,
            "models": list(tags),
            "max_batch_size": self.max_batch_size,
            "max_latency_ms": self.max_latency_ms,
            "workers": self.workers,
            "concurrency": self.concurrency,
            "resources": dict(self.resources),
            "timeout_s": self.timeout_s,
            "allowed_roots": list(self.allowed_roots),
            "jobs_dir": self.jobs_dir,
            "infer": dict(self.infer),
        }


def resolve_models(client: Any, project: str, models: Sequence[ModelRef]) -> list[str]:
    """BentoML tags of the packaged models, looked up in the MLflow registry (the index).

    Raises:
        UserError: unknown model, version or alias, or one missing from the BentoML store.
    """
    from autoscope.archive import bento_store, registry

    tags = []
    for i, m in enumerate(models):
        name = registry.registry_name(project, m.name)
        ref = m.version if m.version is not None else m.alias
        if ref is None:
            raise UserError(f"package.models[{i}]: give a version or an alias for '{m.name}'")
        try:
            version = registry.resolve_version(client, name, ref)
        except LookupError as e:
            raise UserError(f"package.models[{i}]: {e} (run `autoscope archive` first)") from None
        mv = client.get_model_version(name, str(version))
        tag = mv.tags.get("bentoml_tag")
        if not tag or not bento_store.has_model(tag):
            raise UserError(f"package.models[{i}]: {name} v{version} is not in the BentoML store")
        tags.append(tag)
    return tags


def bentofile(spec: PackageSpec, tags: list[str], packages: list[str]) -> dict[str, Any]:
    """The `bentofile.yaml` content; the service settings ride along as the bento's arguments."""
    return {
        "service": SERVICE,
        "name": spec.name,
        "description": spec.purpose,
        "labels": {
            "project": spec.project,
            "models": ",".join(t.replace(":", "-") for t in tags)[:60],
        },
        "include": ["autoscope/**/*.py"],
        "exclude": ["**/__pycache__"],
        "python": {"packages": packages, "lock_packages": False},
        "docker": {"distro": "debian", "python_version": "3.11"},
        "models": tags,
        "args": {"config": spec.settings(tags)},
    }


def content_version(spec: dict[str, Any], build_ctx: Path) -> str:
    """A bento version from what goes in: the bentofile and the shipped source files.

    The same models, settings and code give the same version, so packaging twice builds once.
    """
    import hashlib

    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for p in sorted(build_ctx.glob("autoscope/**/*.py")):
        h.update(str(p.relative_to(build_ctx)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_bento(
    bentofile_path: Path, build_ctx: Path, bentoml_home: Path, version: str | None = None
) -> str:
    """Run `bentoml build` (its own process, `BENTOML_HOME` from the config); return the tag.

    Raises:
        UserError: the build failed (the last line of BentoML's message).
    """
    env = dict(os.environ, BENTOML_HOME=str(bentoml_home), BENTOML_DO_NOT_TRACK="True")
    exe = Path(sys.executable).with_name("bentoml")
    cmd = [str(exe), "build", "-f", str(bentofile_path), "--output", "tag", str(build_ctx)]
    if version:
        cmd[2:2] = ["--version", version]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=build_ctx)
    m = re.search(r"__tag__:(\S+)", proc.stdout)
    if proc.returncode != 0 or not m:
        lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        raise UserError(f"bentoml build failed: {lines[-1] if lines else proc.returncode}")
    return m.group(1)


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Write YAML atomically (`autoscope.atomic`)."""
    import yaml

    return write_text(path, yaml.safe_dump(data, sort_keys=False))
