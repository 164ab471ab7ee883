"""Finding slide files from folders, globs and files, and reading the metadata CSV."""

from __future__ import annotations

import glob
from pathlib import Path

import pandas as pd

from autoscope.errors import UserError

MPP_COLUMNS = ("mpp", "mpp_x", "mpp_y")


def discover(sources: list[str], extensions: list[str]) -> list[Path]:
    """Slide files named by `sources` (folders, searched recursively; globs; files), unique.

    Raises:
        UserError: a source matches nothing on disk.
    """
    exts = {e.lower() for e in extensions}
    found: list[Path] = []
    for src in sources:
        p = Path(str(src)).expanduser()
        if p.is_dir():
            found += [f for f in sorted(p.rglob("*")) if f.suffix.lower() in exts]
        elif p.exists():
            found.append(p)
        elif any(ch in str(src) for ch in "*?["):
            found += [Path(f) for f in sorted(glob.glob(str(p), recursive=True))]
        else:
            raise UserError(
                f"slides.sources: '{src}' does not exist (a folder, a glob or a slide file)"
            )
    seen: dict[str, Path] = {}
    for f in found:
        seen.setdefault(str(f.resolve()), f.resolve())
    return list(seen.values())


def read_metadata(csv: str | None) -> pd.DataFrame:
    """Read the metadata CSV: a `path` (relative to the CSV) or `slide` (file name or stem) column.

    Returns a frame with `_key` (resolved path or slide name) and the user's columns.

    Raises:
        UserError: the file is missing, unreadable or has neither key column.
    """
    if not csv:
        return pd.DataFrame(columns=["_key", "_by"])
    p = Path(str(csv)).expanduser()
    if not p.is_file():
        raise UserError(f"slides.metadata: '{csv}' does not exist")
    try:
        df = pd.read_csv(p)
    except Exception as e:  # noqa: BLE001 - pandas raises many types for bad CSV
        raise UserError(
            f"slides.metadata: cannot read '{csv}' as CSV ({str(e).splitlines()[0]})"
        ) from None
    if "path" in df.columns:
        df["_key"] = [str((p.parent / str(v)).resolve()) for v in df["path"]]
        df["_by"] = "path"
        df = df.drop(columns=["path"])
    elif "slide" in df.columns:
        df["_key"] = df["slide"].astype(str)
        df["_by"] = "slide"
        df = df.drop(columns=["slide"])
    else:
        raise UserError(f"slides.metadata: '{csv}' needs a 'path' or 'slide' column")
    dup = df["_key"][df["_key"].duplicated()]
    if len(dup):
        raise UserError(f"slides.metadata: '{csv}' lists '{dup.iloc[0]}' more than once")
    return df


def metadata_for(meta: pd.DataFrame, path: Path) -> dict:
    """The metadata row of a slide file (by resolved path, file name or stem), or {}."""
    if meta.empty:
        return {}
    keys = {str(path), path.name, path.stem}
    rows = meta[meta["_key"].isin(keys)]
    if rows.empty:
        return {}
    row = rows.iloc[0].drop(labels=["_key", "_by"]).to_dict()
    return {k: v for k, v in row.items() if not (isinstance(v, float) and pd.isna(v))}
