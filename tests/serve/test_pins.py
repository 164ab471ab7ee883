"""Pins of a bento's packages: the dependency closure, torch's build by the GPU choice."""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest

from autoscope.errors import UserError
from autoscope.serve.pins import closure, requirements

CPU = "https://download.pytorch.org/whl/cpu"


def test_closure_follows_markers_extras_and_the_torch_build() -> None:
    cuda = closure(["torch"], "3.11")
    cpu = closure(["torch"], "3.11", cpu_torch=True)
    assert cpu["sympy"] == md.version("sympy") and "mpmath" in cpu  # two levels down
    assert "triton" in cuda and "nvidia-cublas" in cuda  # via cuda-toolkit[cublas]
    assert not [n for n in cpu if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert "pyyaml" not in closure(["torch"], "3.11")  # only torch[pyyaml] asks for it


def test_requirements_pin_from_constraints_else_installed(tmp_path: Path) -> None:
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pins\nnumpy==9.9.9\nPydantic_Core==1.0 ; python_version >= '3'\n")
    with_file = requirements(
        ["torchvision", "pydantic"],
        gpu=False,
        cpu_index=CPU,
        python_version="3.11",
        constraints=constraints,
        implicit=(),
    )
    pins = dict(p.split("==") for p in with_file.packages)
    assert with_file.packages[:2] == (
        f"torchvision=={md.version('torchvision')}+cpu",
        f"pydantic=={md.version('pydantic')}",
    )
    assert pins["numpy"] == "9.9.9" and pins["pydantic-core"] == "1.0"
    assert pins["torch"].endswith("+cpu") and with_file.extra_index_url == (CPU,)
    without = requirements(
        ["pydantic"],
        gpu=False,
        cpu_index=CPU,
        python_version="3.11",
        constraints=tmp_path / "missing.txt",
    )
    pins = dict(p.split("==") for p in without.packages)
    assert pins["pydantic-core"] == md.version("pydantic-core") and "bentoml" not in pins
    assert pins["starlette"] == md.version("starlette")  # bentoml's closure, pinned too
    assert without.extra_index_url == ()  # no torch, no extra index


def test_unknown_package_is_a_user_error() -> None:
    with pytest.raises(UserError, match="cannot pin 'no-such-package-x'"):
        requirements(["no-such-package-x"], gpu=True, cpu_index=CPU, python_version="3.11")
