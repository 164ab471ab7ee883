"""`autoscope slides ingest|list|show`: the slide registry."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from autoscope.errors import UserError

if TYPE_CHECKING:
    from autoscope.slides.spec import SlidesSpec

LIST_COLUMNS = [
    "slide_id",
    "name",
    "vendor",
    "width_px",
    "height_px",
    "level_count",
    "mpp_x",
    "mpp_source",
    "tissue_fraction",
    "status",
]


def detector_from(cfg: Any) -> Any:
    """The tissue detector named by `cfg.tissue` (its `_target_`, with the group's settings).

    Without Hydra (a bento slide job, the archive review), the same detector comes from the
    plain settings: `TissueDetector.from_params(params)` (a `_target_` key is ignored).
    """
    from hydra.utils import instantiate

    return instantiate(cfg.tissue)


def _in_workspace(path: Any, root: str) -> str:
    """A recipe's path: a relative one is under the workspace (`paths.workspace`), not the cwd."""
    from autoscope.portable import resolve_path

    return str(resolve_path(str(path), root))


def slides_spec(cfg: Any) -> SlidesSpec:
    """The typed `SlidesSpec` of `cfg.slides` (every default is in conf/slides/)."""
    from autoscope.config import to_dict
    from autoscope.slides.spec import SlidesSpec

    s = to_dict(cfg.slides)
    root = str(cfg.paths.workspace)
    return SlidesSpec(
        sources=tuple(_in_workspace(x, root) for x in s.get("sources") or ()),
        extensions=tuple(str(x) for x in s.get("extensions") or ()),
        metadata=None if s.get("metadata") is None else _in_workspace(s["metadata"], root),
        mpp=None if s.get("mpp") is None else float(s["mpp"]),
        thumbnail_px=int(s["thumbnail_px"]),
        mask_mpp=float(s["mask_mpp"]),
        hash_bytes=int(s["hash_bytes"]),
        checkpoint_slides=int(s["checkpoint_slides"]),
        checkpoint_s=float(s["checkpoint_s"]),
    )


def ingest(cfg: Any) -> dict:
    """Register the slides of `slides.sources` (+ `slides.metadata`) into the project registry."""
    from autoscope.config import stores_spec
    from autoscope.slides.ingest import Ingest

    spec = slides_spec(cfg)
    if not spec.sources and not spec.metadata:
        raise UserError(
            "slides.sources is empty: give folders or globs, e.g. 'slides.sources=[/data/wsi]'"
        )
    return Ingest(spec, stores_spec(cfg), detector_from(cfg)).run()


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, exit_on_error=False)
    return p


def list_view(cfg: Any, flags: list[str]) -> None:
    """Print the registry as a table, filtered by --where (pandas query) and sorted by --sort."""
    import pandas as pd

    from autoscope.config import stores_spec
    from autoscope.slides.registry import COLUMNS, load_registry

    p = _parser("autoscope slides list")
    p.add_argument("--where", help="pandas query over registry and metadata columns")
    p.add_argument("--sort", help="column to sort by; --sort=-COL for descending")
    p.add_argument("--columns", help="comma-separated columns to show (default: a summary set)")
    try:
        a = p.parse_args(flags)
    except (argparse.ArgumentError, SystemExit) as e:
        raise UserError(f"slides list: {e}") from None
    df = load_registry(stores_spec(cfg))
    if a.where:
        try:
            df = df.query(a.where)
        except Exception as e:  # noqa: BLE001 - pandas query raises many types
            raise UserError(
                f"--where '{a.where}': {str(e).splitlines()[0]} (columns: {', '.join(df.columns)})"
            ) from None
    if a.sort:
        col = a.sort.lstrip("-")
        if col not in df.columns:
            raise UserError(f"--sort: no column '{col}' (columns: {', '.join(df.columns)})")
        df = df.sort_values(col, ascending=not a.sort.startswith("-"), na_position="last")
    meta_cols = [c for c in df.columns if c not in COLUMNS]
    cols = a.columns.split(",") if a.columns else LIST_COLUMNS + meta_cols
    unknown = [c for c in cols if c not in df.columns]
    if unknown:
        raise UserError(f"--columns: no column '{unknown[0]}'")
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.max_rows", 500
    ):
        print(df[cols].to_string(index=False) if len(df) else "(no slides)")
    print(f"{len(df)} slide(s)")


def _shown(value: Any) -> Any:
    """A registry value as shown: JSON lists (level dimensions...) decoded, other text as it is.

    A slide name or path may start with `[` too (`[2019] case 1`): only valid JSON is decoded.
    """
    if isinstance(value, str) and value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def show_view(cfg: Any, flags: list[str]) -> None:
    """Print one slide: path, properties, thumbnail and mask, tissue fraction, datasets using it."""
    from autoscope.config import stores_spec
    from autoscope.datasets.store import datasets_using_slide
    from autoscope.slides.registry import resolve_slide

    if len(flags) != 1:
        raise UserError("slides show needs one slide (slide_id, name or path)")
    stores = stores_spec(cfg)
    row = resolve_slide(stores, flags[0])
    for k, v in row.items():
        print(f"{k:>18}: {_shown(v)}")
    used = datasets_using_slide(stores, row["slide_id"])
    print(f"{'datasets':>18}: {', '.join(used) if used else 'none'}")
