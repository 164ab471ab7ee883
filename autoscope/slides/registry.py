"""The slide registry: one parquet row per slide, keyed by content hash, written atomically.

Functions that locate the registry take `where`: the project's `Stores`, its data folder
(`Stores.data`, `data/<project>`), or (`load_registry`, `resolve_slide`) the registry parquet
file itself. The registry, thumbnails and tissue masks live in `<data>/slides/`.

The parquet stores the files it names (`path`, `thumbnail`, `tissue_mask`) relative to its own
folder when they lie inside the workspace (the git/DVC repository holding it), so a colleague's
clone at another place reads the same registry; slides outside the workspace keep their absolute
path. `load_registry` gives every path absolute again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from autoscope.atomic import atomic_file
from autoscope.errors import UserError
from autoscope.project import Stores

REGISTRY = "registry.parquet"

# Registry columns in display order; metadata CSV columns follow them.
COLUMNS: list[str] = [
    "slide_id",
    "name",
    "path",
    "vendor",
    "format",
    "level_count",
    "level_dimensions",
    "level_downsamples",
    "width_px",
    "height_px",
    "mpp_x",
    "mpp_y",
    "mpp_source",
    "file_mpp_x",
    "file_mpp_y",
    "objective_power",
    "associated_images",
    "file_bytes",
    "file_mtime",
    "status",
    "error",
    "thumbnail",
    "tissue_mask",
    "mask_mpp",
    "tissue_fraction",
]
USABLE = "ok"  # the one status with which a slide feeds datasets and inference
FILE_COLUMNS = ("path", "thumbnail", "tissue_mask")  # stored relative inside the workspace


def _workspace_of(folder: Path) -> Path | None:
    """The git/DVC repository holding `folder` (its nearest ancestor with `.dvc` or `.git`)."""
    for d in (folder, *folder.parents):
        if (d / ".dvc").is_dir() or (d / ".git").exists():
            return d
    return None


def _stored(value: object, folder: Path, root: Path | None) -> object:
    """What the parquet records for a file path (relative to `folder` when inside `root`)."""
    if not isinstance(value, str) or not value or not os.path.isabs(value):
        return value
    real = Path(os.path.realpath(value))  # never raises, a symbolic link loop included
    inside = root is not None and real.is_relative_to(root.resolve())
    if not inside and not real.is_relative_to(folder.resolve()):
        return value
    return Path(os.path.relpath(real, folder.resolve())).as_posix()


def _absolute(value: object, folder: Path) -> object:
    if not isinstance(value, str) or not value or os.path.isabs(value):
        return value
    return os.path.normpath(folder.resolve() / value)


def slides_dir(where: Stores | str | Path) -> Path:
    """Folder of the project's registry, thumbnails and tissue masks (`<data>/slides`)."""
    if isinstance(where, Stores):
        return where.data / "slides"
    p = Path(where)
    return p.parent if p.suffix == ".parquet" else p / "slides"


def registry_path(where: Stores | str | Path) -> Path:
    """Path of the project's registry parquet (`<data>/slides/registry.parquet`)."""
    p = Path(where) if not isinstance(where, Stores) else None
    if p is not None and p.suffix == ".parquet":
        return p
    return slides_dir(where) / REGISTRY


def empty_registry() -> pd.DataFrame:
    """A registry with the columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})


def load_registry(where: Stores | str | Path) -> pd.DataFrame:
    """Read a project's registry (an empty frame with the columns when there is none yet).

    Args:
        where: The project's `Stores`, its data folder, or the registry parquet file.
    """
    p = registry_path(where)
    if not p.is_file():
        return empty_registry()
    df = pd.read_parquet(p)
    for c in FILE_COLUMNS:
        if c in df.columns:
            df[c] = [_absolute(v, p.parent) for v in df[c]]
    return df


def save_registry(df: pd.DataFrame, path: Path) -> None:
    """Write the registry to `path` atomically (`autoscope.atomic`), columns in contract order."""
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df.reindex(columns=COLUMNS + extra)
    folder, root = Path(path).parent, _workspace_of(Path(path).parent)
    for c in FILE_COLUMNS:
        df[c] = [_stored(v, folder, root) for v in df[c]]
    with atomic_file(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)


def resolve_slide(where: Stores | str | Path, ref: str) -> pd.Series:
    """Find one registered slide by slide_id (or a unique prefix), name, or path.

    Args:
        where: The project's `Stores`, its data folder, or the registry parquet file.
        ref: slide_id, a unique slide_id prefix, the slide name or its file path.

    Raises:
        UserError: no slide or more than one slide matches.
    """
    df = load_registry(where)
    if df.empty:
        raise UserError(
            f"no slides registered in {registry_path(where)}: run `autoscope slides ingest` first"
        )
    ref_path = str(Path(ref).expanduser().resolve()) if ("/" in ref or Path(ref).exists()) else None
    hits = df[
        (df["slide_id"] == ref)
        | (df["name"] == ref)
        | (df["path"] == ref_path)
        | df["slide_id"].astype(str).str.startswith(ref)
    ]
    if len(hits) == 0:
        raise UserError(
            f"unknown slide '{ref}' in {registry_path(where)} (see `autoscope slides list`)"
        )
    if len(hits) > 1 and not (hits["slide_id"] == ref).any():
        names = ", ".join(hits["name"].astype(str).head(5))
        raise UserError(f"slide '{ref}' is ambiguous: matches {len(hits)} slides ({names})")
    return (
        hits[hits["slide_id"] == ref].iloc[0] if (hits["slide_id"] == ref).any() else hits.iloc[0]
    )
