"""Build a bento from `conf/package/`: resolve archived models, pin packages, `bentoml build`.

The bento is portable: it holds the container's folders and bind address (`ContainerSpec`),
never this machine's paths; local serving passes the project's folders at serve time
(`PackageSpec.serve_env`).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscope.atomic import write_text
from autoscope.errors import UserError
from autoscope.infer.spec import check_settings
from autoscope.serve.settings import JOBS_ENV, ROOTS_ENV, serve_env

if TYPE_CHECKING:
    from autoscope.serve.pins import Requirements

SERVICE = "autoscope.serve.service:PatchService"
PYTHON_VERSION = "3.11"  # the container's Python (and the markers the pins are resolved for)


@dataclass(frozen=True)
class ModelRef:
    """One packaged model: its archive `model_name` and a registry version or alias."""

    name: str
    version: int | str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """Serve-time defaults the bento holds (container paths, never this machine's)."""

    host: str = "0.0.0.0"  # bind address of the image's entrypoint (BENTOML_HOST)
    allowed_roots: tuple[str, ...] = ("/data",)  # slide folders; AUTOSCOPE_ALLOWED_ROOTS overrides
    jobs_dir: str = "/tmp/autoscope/jobs"  # slide job outputs; AUTOSCOPE_JOBS_DIR overrides

    def __post_init__(self) -> None:
        for path in (*self.allowed_roots, self.jobs_dir):
            if not posixpath.isabs(path):
                raise UserError(f"package.container: {path!r} is not an absolute container path")


@dataclass(frozen=True)
class PackageSpec:
    """What one bento serves and how it runs (`conf/package/`)."""

    project: str
    name: str  # bento and service name
    purpose: str
    models: tuple[ModelRef, ...]  # the first answers `predict`
    jobs_dir: str  # local serving: the project's jobs folder (passed at serve time)
    allowed_roots: tuple[str, ...]  # local serving: the project's slide folders
    container: ContainerSpec = field(default_factory=ContainerSpec)
    host: str = "127.0.0.1"  # the bento's bind address outside a container
    cpu_index: str = "https://download.pytorch.org/whl/cpu"  # torch's CPU builds (no GPU asked)
    resources: dict[str, Any] = field(default_factory=dict)
    max_batch_size: int = 64
    max_latency_ms: int = 30000
    workers: int = 2
    threads: int = 2
    torch_threads: int = 0
    queue_limit: int = 256
    concurrency: int = 32
    timeout_s: int = 3600
    infer: dict[str, Any] = field(default_factory=dict)  # engine settings of the slide job
    python_packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_settings(self.infer, "package.infer")

    @property
    def gpu(self) -> bool:
        """Whether a replica asks for a GPU (`resources.gpu` > 0): torch's CUDA build."""
        try:
            return float(self.resources.get("gpu") or 0) > 0
        except (TypeError, ValueError):
            gpu = self.resources["gpu"]
            raise UserError(f"package.resources.gpu: {gpu!r} is not a count") from None

    def serve_env(self) -> dict[str, str]:
        """The serve-time environment of local serving: the project's folders."""
        return serve_env(list(self.allowed_roots), self.jobs_dir)

    def settings(self, tags: list[str]) -> dict[str, Any]:
        """The service settings (`serve.settings.ServeSettings`) for the resolved model tags.

        The folders are the container's defaults: no path of this machine goes into a bento.
        """
        return {
            "name": self.name,
            "purpose": self.purpose,
            "models": list(tags),
            "max_batch_size": self.max_batch_size,
            "max_latency_ms": self.max_latency_ms,
            "workers": self.workers,
            "threads": self.threads,
            "torch_threads": self.torch_threads,
            "queue_limit": self.queue_limit,
            "concurrency": self.concurrency,
            "resources": dict(self.resources),
            "timeout_s": self.timeout_s,
            "host": self.host,
            "allowed_roots": list(self.container.allowed_roots),
            "jobs_dir": self.container.jobs_dir,
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


def description(spec: PackageSpec) -> str:
    """The bento's README: its purpose and the serve-time settings."""
    c = spec.container
    return f"""{spec.purpose}

Serve-time settings (environment variables; nothing of the build machine is inside):

- `{ROOTS_ENV}`: the folders the `slide` job may read, `:`-separated
  (default `{":".join(c.allowed_roots)}`: mount slides there).
- `{JOBS_ENV}`: where slide jobs write (default `{c.jobs_dir}`: mount a volume to keep them).
- `--host` / `BENTOML_HOST`: bind address; `{spec.host}` by default, `{c.host}` in the image
  built by `bentoml containerize` (publish the port with `docker run -p 3000:3000`).
"""


def bentofile(spec: PackageSpec, tags: list[str], reqs: Requirements) -> dict[str, Any]:
    """The `bentofile.yaml` content; the service settings ride along as the bento's arguments.

    `envs` become the image's `ENV` lines: the container's folders and bind address, and, with
    torch's CPU build, uv's index strategy (else uv takes every package the PyTorch index also
    hosts from there only, and misses the pinned versions it lacks).
    """
    c = spec.container
    envs = [
        {"name": ROOTS_ENV, "value": ":".join(c.allowed_roots)},
        {"name": JOBS_ENV, "value": c.jobs_dir},
        {"name": "BENTOML_HOST", "value": c.host},
    ]
    python: dict[str, Any] = {"packages": list(reqs.packages), "lock_packages": False}
    if reqs.extra_index_url:
        python["extra_index_url"] = list(reqs.extra_index_url)
        envs.append({"name": "UV_INDEX_STRATEGY", "value": "unsafe-best-match"})
    return {
        "service": SERVICE,
        "name": spec.name,
        "description": description(spec),
        "labels": {
            "project": spec.project,
            "models": ",".join(t.replace(":", "-") for t in tags)[:60],
            "torch": "cuda" if spec.gpu else "cpu",
        },
        "include": ["autoscope/**/*.py"],
        "exclude": ["**/__pycache__"],
        "python": python,
        "docker": {"distro": "debian", "python_version": PYTHON_VERSION},
        "envs": envs,
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
