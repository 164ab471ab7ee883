"""The slide registry: one parquet row per slide, keyed by content hash, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from autoscope.errors import UserError

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


def slides_dir(cfg: Any) -> Path:
    """Folder of the project's registry, thumbnails and tissue masks."""
    return Path(cfg.paths.data) / "slides"


def registry_path(cfg: Any) -> Path:
    """Path of the project's registry parquet."""
    return slides_dir(cfg) / "registry.parquet"


def empty_registry() -> pd.DataFrame:
    """A registry with the columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})


def load_registry(cfg: Any) -> pd.DataFrame:
    """Read the project's registry (an empty frame with the columns when there is none yet)."""
    p = registry_path(cfg)
    return pd.read_parquet(p) if p.is_file() else empty_registry()


def save_registry(df: pd.DataFrame, path: Path) -> None:
    """Write the registry atomically: a temporary file renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df.reindex(columns=COLUMNS + extra)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def resolve_slide(cfg: Any, ref: str) -> pd.Series:
    """Find one registered slide by slide_id (or a unique prefix), name, or path.

    Raises:
        UserError: no slide or more than one slide matches.
    """
    df = load_registry(cfg)
    if df.empty:
        raise UserError(
            f"no slides registered in {registry_path(cfg)}: run `autoscope slides ingest` first"
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
            f"unknown slide '{ref}' in project '{cfg.project.name}' (see `autoscope slides list`)"
        )
    if len(hits) > 1 and not (hits["slide_id"] == ref).any():
        names = ", ".join(hits["name"].astype(str).head(5))
        raise UserError(f"slide '{ref}' is ambiguous: matches {len(hits)} slides ({names})")
    return (
        hits[hits["slide_id"] == ref].iloc[0] if (hits["slide_id"] == ref).any() else hits.iloc[0]
    )
