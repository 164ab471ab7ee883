"""Finding slide files from folders, globs and files, and reading the metadata CSV.

A folder is searched recursively (symbolic links to folders are followed once: a link loop is
skipped with one line); an OME-Zarr folder (`*.zarr`) is one slide, not searched inside; the
`.dcm` files of one DICOM series are one slide (OpenSlide and wsidicom open a series from any
of its files): its folder when the folder holds that series only, else its first file. A
source that yields no slide file says so in one line.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from autoscope.errors import UserError

MPP_COLUMNS = ("mpp", "mpp_x", "mpp_y")
ZARR_SUFFIX = ".zarr"  # an OME-Zarr folder (`x.ome.zarr`, `x.zarr`) is one slide


def _is_slide(p: Path, exts: set[str]) -> bool:
    return p.suffix.lower() in exts or (p.suffix.lower() == ZARR_SUFFIX and p.is_dir())


def _walk(root: Path, exts: set[str], say: Callable[[str], None]) -> list[Path]:
    """Slide files under a folder; symbolic-link loops are skipped, each with one line."""
    found: list[Path] = []
    seen = {os.path.realpath(root)}

    def onerror(err: OSError) -> None:
        say(f"slides.sources: skipped {err.filename}: {err.strerror or err}")

    for top, dirs, files in os.walk(root, followlinks=True, onerror=onerror):
        keep = []
        for d in sorted(dirs):
            p = Path(top) / d
            if p.suffix.lower() == ZARR_SUFFIX:  # one slide: do not search inside
                found.append(p)
                continue
            if _is_slide(p, exts):  # a folder named like a slide: recorded as such
                found.append(p)
            real = os.path.realpath(p)
            if real in seen:
                say(f"slides.sources: skipped {p}: a symbolic link loop (back to {real})")
                continue
            seen.add(real)
            keep.append(d)
        dirs[:] = keep
        found += [Path(top) / f for f in sorted(files) if Path(f).suffix.lower() in exts]
    return found


def _resolved(p: Path) -> Path | None:
    """The absolute path with links resolved; None for a symbolic link loop."""
    try:
        return p.resolve(strict=p.is_symlink() and not p.exists())
    except FileNotFoundError:  # a broken link: ingest records it ("cannot read")
        return p.absolute()
    except (RuntimeError, OSError):  # "Symlink loop" (Python < 3.13) or ELOOP
        return None


def _series_key(p: Path) -> str:
    """One key per DICOM series: its folder and SeriesInstanceUID (the file itself otherwise)."""
    try:
        import pydicom

        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        return f"{p.parent}::{ds.SeriesInstanceUID}"
    except Exception:  # noqa: BLE001 - not readable as DICOM: ingest says why, file by file
        return str(p)


def _one_per_series(files: list[Path]) -> list[Path]:
    """One entry per DICOM series (the other files are its levels): the folder when it holds
    that one series only (the slide is named after it), else the series' first `.dcm` file."""
    dcm = [f for f in files if f.suffix.lower() == ".dcm" and f.is_file()]
    keys = {f: _series_key(f) for f in dcm}
    per_folder: dict[Path, set[str]] = {}
    for f, k in keys.items():
        per_folder.setdefault(f.parent, set()).add(k)
    out: list[Path] = []
    done: set[str] = set()
    for f in files:
        if f not in keys:
            out.append(f)
            continue
        if keys[f] in done:
            continue
        done.add(keys[f])
        alone = len(per_folder[f.parent]) == 1 and "::" in keys[f]
        out.append(f.parent if alone else f)
    return out


def discover(
    sources: list[str], extensions: list[str], say: Callable[[str], None] | None = None
) -> list[Path]:
    """Slide files named by `sources` (folders, searched recursively; globs; files), unique.

    Args:
        sources: Folders, globs or slide files.
        extensions: Suffixes a folder or glob contributes (OME-Zarr folders always count).
        say: Where the one-line notes go (skipped link loops, sources matching nothing);
            default: printed.

    Raises:
        UserError: a source does not exist on disk.
    """
    say = say or (lambda line: print(line, flush=True))
    exts = {e.lower() for e in extensions}
    found: list[Path] = []
    for src in sources:
        p = Path(str(src)).expanduser()
        if p.is_dir() and p.suffix.lower() == ZARR_SUFFIX:  # an OME-Zarr slide named itself
            got, what = [p], "folder"
        elif p.is_dir():
            got = _walk(p, exts, say)
            what = "folder"
        elif p.exists():
            got, what = [p], "file"
        elif p.is_symlink():
            raise UserError(f"slides.sources: '{src}' is a broken symbolic link or a link loop")
        elif any(ch in str(src) for ch in "*?["):
            got = [Path(f) for f in sorted(glob.glob(str(p), recursive=True))]
            what = "glob"
        else:
            raise UserError(
                f"slides.sources: '{src}' does not exist (a folder, a glob or a slide file)"
            )
        if not got:
            say(
                f"slides.sources: {what} '{src}' matches no slide file "
                f"(extensions {', '.join(sorted(exts))}, or an OME-Zarr folder)"
            )
        found += got
    seen: dict[str, Path] = {}
    for f in found:
        r = _resolved(f)
        if r is None:
            say(f"slides.sources: skipped {f}: a symbolic link loop ({f.name} -> {os.readlink(f)})")
            continue
        seen.setdefault(str(r), r)
    return _one_per_series(list(seen.values()))


def _mpp_problem(v: object) -> bool:
    """Whether a metadata MPP cell is given but is not a positive number."""
    if v is None or (isinstance(v, float) and pd.isna(v)) or str(v).strip() == "":
        return False
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    return not f > 0


def _check_mpp(df: pd.DataFrame, csv: str, key: str) -> None:
    """Refuse an MPP cell that is not a positive number, naming the row, column and value."""
    for col in MPP_COLUMNS:
        if col not in df.columns:
            continue
        for i, v in df[col].items():
            if _mpp_problem(v):
                raise UserError(
                    f"slides.metadata: '{csv}' line {int(i) + 2} ({key} '{df.at[i, key]}'), "  # type: ignore[call-overload]
                    f"column {col}: {str(v)!r} is not a positive number of um/px"
                )


def read_metadata(csv: str | None) -> pd.DataFrame:
    """Read the metadata CSV: a `path` (relative to the CSV) or `slide` (file name or stem) column.

    Returns a frame with `_key` (resolved path or slide name) and the user's columns.

    Raises:
        UserError: the file is missing, unreadable, has neither key column, or an MPP cell
            (`mpp`, `mpp_x`, `mpp_y`) that is not a positive number (line, column and value named).
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
        _check_mpp(df, str(csv), "path")
        df["_key"] = [str((p.parent / str(v)).resolve()) for v in df["path"]]
        df["_by"] = "path"
        df = df.drop(columns=["path"])
    elif "slide" in df.columns:
        _check_mpp(df, str(csv), "slide")
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
