"""Exact pins of everything a bento installs: its packages and their whole dependency closure.

The closure is walked through the installed distributions (`importlib.metadata`), with markers
evaluated for the container (Linux x86_64, the bento's Python), so `pip`/`uv` in the image
resolves nothing new. A version comes from the constraints file where it lists the package (a
source checkout), else from the installed distribution (a user's workspace has no constraints
file). torch follows the GPU choice: without a GPU the CPU build (`+cpu`, from the PyTorch CPU
index, none of the CUDA wheels); with one, PyPI's default Linux build (CUDA).
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autoscope.errors import UserError

TORCH_BUILDS = frozenset({"torch", "torchvision", "torchaudio"})  # one wheel per CPU/CUDA build
CUDA_ONLY = re.compile(r"^(nvidia-.+|cuda-.+|triton)$")  # wheels only the CUDA build of torch needs


def canonical(name: str) -> str:
    """The PEP 503 name (`Scikit_Image` -> `scikit-image`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def constraint_pins(constraints: Path | None) -> dict[str, str]:
    """`{canonical name: version}` of the `name==version` lines of a constraints file (or {})."""
    if constraints is None or not constraints.is_file():
        return {}
    pins = {}
    for line in constraints.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def target_environment(python_version: str) -> dict[str, str]:
    """Marker variables of the container: Linux x86_64 CPython `python_version`."""
    from packaging.markers import default_environment

    env = dict(default_environment())
    here = platform.python_version()
    full = here if here.startswith(python_version + ".") else f"{python_version}.0"
    env.update(
        os_name="posix",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        python_version=python_version,
        python_full_version=full,
    )
    return env


@dataclass(frozen=True)
class Requirements:
    """What the bento's `python` section installs."""

    packages: tuple[str, ...]  # `name==version`: the direct packages first, then the closure
    extra_index_url: tuple[str, ...] = ()  # extra package index (the PyTorch CPU index)


def closure(
    names: Iterable[str], python_version: str, cpu_torch: bool = False
) -> dict[str, str | None]:
    """Every distribution `names` need, `{canonical name: installed version or None}`.

    Requirements are followed with their extras; those whose markers are false in the
    container are left out, and with `cpu_torch` the CUDA wheels torch's CUDA build asks for.
    None marks one that is not installed.
    """
    from packaging.requirements import Requirement

    env = target_environment(python_version)
    found: dict[str, str | None] = {}
    todo = [(canonical(n), frozenset[str]()) for n in names]
    seen: set[tuple[str, str]] = set()
    while todo:
        name, extras = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            found.setdefault(name, None)
            continue
        found[name] = dist.version
        for extra in ("", *sorted(extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for line in dist.requires or []:
                req = Requirement(line)
                dep = canonical(req.name)
                if cpu_torch and name in TORCH_BUILDS and CUDA_ONLY.match(dep):
                    continue
                if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
                    continue
                todo.append((dep, frozenset(req.extras)))
    return found


def requirements(
    names: Iterable[str],
    *,
    gpu: bool,
    cpu_index: str,
    python_version: str,
    constraints: Path | None = None,
    implicit: Iterable[str] = ("bentoml",),
) -> Requirements:
    """Exact pins of `names` and their closure (plus that of `implicit`, pinned by BentoML).

    Raises:
        UserError: a package is neither installed nor in the constraints file.
    """
    direct = [canonical(n) for n in names]
    implicit = {canonical(n) for n in implicit}
    pins = constraint_pins(constraints)
    found = closure([*direct, *implicit], python_version, cpu_torch=not gpu)
    order = direct + sorted(set(found) - set(direct) - implicit)
    out = []
    for name in order:
        version = pins.get(name) or found.get(name)
        if version is None:
            raise UserError(
                f"package.python_packages: cannot pin '{name}': not installed here "
                "and not in the constraints file"
            )
        if name in TORCH_BUILDS:
            from packaging.version import Version

            version = Version(version).public + ("" if gpu else "+cpu")
        out.append(f"{name}=={version}")
    uses_torch = any(n in TORCH_BUILDS for n in order)
    return Requirements(tuple(out), () if gpu or not uses_torch else (cpu_index,))
