"""Paths as artefacts record them: relative to the workspace, never a host's absolute path.

A dataset version is the hash of its folder and a model card travels between machines, so what
they store about a file must not depend on where a checkout lies. `portable_path` writes a path
relative to the workspace (`paths.workspace`, `Stores.workspace`) when the file lies inside it,
and only its file name when it lies elsewhere (the slide id, a content hash, identifies slides
there). `resolve_path` turns a stored reference back into a path at read time.
"""

from __future__ import annotations

import os
from pathlib import Path


def _inside(path: str, root: str) -> str | None:
    """`path` relative to `root` (POSIX separators) when it lies inside it, else None."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:  # another drive (Windows)
        return None
    if rel == os.curdir:
        return "."
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return None
    return Path(rel).as_posix()


def portable_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str:
    """What an artefact records for `path`: relative to `root` inside it, else the file name.

    A relative `path` is taken as given (it names no host). Symbolic links are tried both as
    written and resolved, so a workspace reached through a link still gives relative paths.

    Args:
        path: A file or folder path.
        root: The workspace root (None: no workspace known, only the file name is kept).
    """
    text = os.fspath(path)
    if not text or not os.path.isabs(text):
        return Path(text).as_posix() if text else text
    if root is not None:
        r = os.fspath(root)
        for p, q in ((os.path.abspath(text), os.path.abspath(r)), (_real(text), _real(r))):
            rel = _inside(p, q)
            if rel is not None:
                return rel
    return Path(text).name


def resolve_path(ref: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """The path a stored reference names: a relative `ref` is under `root`, an absolute one kept."""
    p = Path(os.fspath(ref))
    return p if p.is_absolute() else Path(root) / p


def _real(p: str) -> str:
    return os.path.realpath(p)
