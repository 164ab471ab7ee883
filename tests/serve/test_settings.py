"""Service settings and the allowed-roots check (no server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoscope.serve.settings import PathRefused, check_slide_path, load_settings

BASE = {"name": "s", "models": ["m:v1"], "allowed_roots": ["/data"], "jobs_dir": "/jobs"}


def test_paths_inside_roots_only(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.tif").write_bytes(b"x")
    (outside / "b.tif").write_bytes(b"x")
    os.symlink(outside / "b.tif", root / "link.tif")
    os.symlink(outside, root / "dirlink")
    roots = [str(root)]
    assert check_slide_path(str(root / "a.tif"), roots) == str((root / "a.tif").resolve())
    for bad in (
        outside / "b.tif",
        root / "link.tif",
        root / "dirlink" / "b.tif",
        root / ".." / "outside" / "b.tif",
        Path("/etc/passwd"),
    ):
        with pytest.raises(PathRefused):
            check_slide_path(str(bad), roots)
    with pytest.raises(ValueError, match="no slide file"):
        check_slide_path(str(root / "missing.tif"), roots)
    with pytest.raises(ValueError, match="no slide file"):
        check_slide_path(str(root), roots)
    for bad in ("", "  ", "a\x00b"):
        with pytest.raises(ValueError, match="non-empty"):
            check_slide_path(bad, roots)


def test_settings_from_dict_json_text_or_file(tmp_path: Path) -> None:
    f = tmp_path / "service.json"
    f.write_text(json.dumps(BASE))
    for raw in (BASE, json.dumps(BASE), str(f)):
        s = load_settings({"config": raw})
        assert s.models == ["m:v1"] and s.max_batch_size == 64
    with pytest.raises(ValueError, match="no `config` argument"):
        load_settings({})
    with pytest.raises(ValueError):
        load_settings({"config": {**BASE, "models": []}})


def test_serve_time_environment_overrides_the_bento_folders(tmp_path: Path) -> None:
    from autoscope.serve.settings import JOBS_ENV, ROOTS_ENV, serve_env

    s = load_settings({"config": BASE}, {})
    assert s.allowed_roots == ["/data"] and s.jobs_dir == "/jobs" and s.host == "127.0.0.1"
    env = serve_env([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "jobs"))
    assert env[ROOTS_ENV] == os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])
    s = load_settings({"config": BASE}, env)
    assert s.allowed_roots == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert s.jobs_dir == str(tmp_path / "jobs")
    assert load_settings({"config": BASE}, {ROOTS_ENV: " ", JOBS_ENV: ""}).jobs_dir == "/jobs"
    for bad in ({ROOTS_ENV: "relative/slides"}, {JOBS_ENV: "jobs"}, {ROOTS_ENV: os.pathsep}):
        with pytest.raises(ValueError, match=ROOTS_ENV if ROOTS_ENV in bad else JOBS_ENV):
            load_settings({"config": BASE}, bad)
