"""Slide ingestion: files -> registry rows, idempotent, atomic, going on past bad slides.

Concurrent ingests into one project (different folders, or the same one twice) lose no row:
every save of the registry is a locked read-merge-write (`autoscope.locks.store_lock`): the
registry is read again under the lock, this run's rows are upserted by `slide_id`, and only the
rows this run decided to drop are removed. Saves happen every `checkpoint_slides` slides or
`checkpoint_s` seconds, so a killed run loses seconds of work; a rerun skips registered slides.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from autoscope.atomic import sweep_stale
from autoscope.locks import in_stores, store_lock
from autoscope.project import Stores
from autoscope.slides.inspect import SlideProblem, content_hash, read_slide_facts
from autoscope.slides.overview import write_overview
from autoscope.slides.registry import load_registry, registry_path, save_registry, slides_dir
from autoscope.slides.sources import MPP_COLUMNS, discover, metadata_for, read_metadata
from autoscope.slides.spec import SlidesSpec


def _path_id(path: Path, prefix: str) -> str:
    return prefix + hashlib.sha256(str(path).encode()).hexdigest()[:14]


def _num(v: Any) -> float | None:
    """A positive float, or None for missing / NaN / non-numeric values."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None  # NaN > 0 is False


def resolve_mpp(
    row: dict, meta: dict, recipe_mpp: float | None
) -> tuple[float | None, float | None, str]:
    """Pick MPP: metadata CSV (a person's value) > the file > the recipe's fallback > missing."""
    mx = _num(meta.get("mpp_x", meta.get("mpp")))
    my = _num(meta.get("mpp_y", meta.get("mpp"))) or mx
    if mx:
        return mx, my, "metadata"
    if fx := _num(row.get("file_mpp_x")):
        return fx, _num(row.get("file_mpp_y")) or fx, "file"
    if recipe_mpp:
        return float(recipe_mpp), float(recipe_mpp), "recipe"
    return None, None, "missing"


class Ingest:
    """One ingestion run over the sources of a `SlidesSpec` into a project's registry.

    Args:
        spec: What to ingest and how (`conf/slides/*.yaml`).
        where: The project's `Stores` or data folder (the registry goes to `<data>/slides/`).
        detector: The tissue detector (`mask(rgb)`) of the stored masks, e.g. `TissueDetector`.
    """

    def __init__(self, spec: SlidesSpec, where: Stores | Path, detector: Any) -> None:
        self.sc, self.detector = spec, detector
        self.out = slides_dir(where)
        self.path = registry_path(where)
        self.lock = in_stores(where) if isinstance(where, Stores) else {}
        self.old = load_registry(self.path)
        self.known = set(self.old["slide_id"].astype(str))  # rows this run may decide to drop
        self.meta = read_metadata(self.sc.metadata)
        self.rows: dict[str, dict] = {}
        self.actions: Counter[str] = Counter()
        self.problems: list[tuple[str, str]] = []

    def _old_row(self, slide_id: str) -> dict | None:
        hit = self.old[self.old["slide_id"] == slide_id]
        return hit.iloc[0].to_dict() if len(hit) else None

    def _record(self, row: dict, action: str) -> None:
        self.rows[row["slide_id"]] = row
        self.actions[action] += 1
        if row["status"] not in ("ok",):
            self.problems.append((row.get("name", "?"), f"{row['status']}: {row.get('error')}"))
        mpp = f"{row['mpp_x']:.3f} um/px ({row['mpp_source']})" if row.get("mpp_x") else ""
        print(
            f"  {action:<9} {row['name']:<28} {row['status']:<9} {mpp}"
            + (f" — {row['error']}" if row.get("error") else ""),
            flush=True,
        )

    def _fail(self, path: Path, slide_id: str, status: str, reason: str, meta: dict) -> dict:
        return {
            "slide_id": slide_id,
            "name": path.stem,
            "path": str(path),
            "status": status,
            "error": reason,
            "mpp_source": "missing",
            **meta,
        }

    def _with_mpp(self, row: dict, meta: dict) -> dict:
        row.update(meta)
        for c in MPP_COLUMNS:
            row.pop(c, None)
        row["mpp_x"], row["mpp_y"], row["mpp_source"] = resolve_mpp(row, meta, self.sc.mpp)
        if row["mpp_source"] == "missing":
            row["status"] = "no_mpp"
            row["error"] = (
                "no MPP in the file: give it in the metadata CSV (mpp column) or slides.mpp"
            )
        else:
            row["status"], row["error"] = "ok", None
        return row

    def one(self, path: Path) -> None:
        """Register one file; any problem becomes the row's status and reason."""
        meta = metadata_for(self.meta, path)
        try:
            sid = content_hash(path, int(self.sc.hash_bytes))
        except SlideProblem as e:
            self._record(self._fail(path, _path_id(path, "x"), "failed", str(e), meta), "failed")
            return
        if sid in self.rows:
            first = self.rows[sid]["path"]
            row = self._fail(
                path, _path_id(path, "d"), "duplicate", f"same content as {first}", meta
            )
            self._record(row, "duplicate")
            return
        st = path.stat()
        old = self._old_row(sid)
        if (
            old is not None
            and old.get("status") in ("ok", "no_mpp")
            and Path(str(old["thumbnail"])).is_file()
        ):
            action = "unchanged" if old["path"] == str(path) else "moved"
            old.update(path=str(path), name=path.stem, file_mtime=st.st_mtime)
            row = self._with_mpp(old, meta)
            if (
                row["mpp_x"] and _num(row.get("mask_mpp")) is None
            ):  # MPP became known: scale the mask
                from PIL import Image

                with Image.open(str(row["tissue_mask"])) as m:
                    row["mask_mpp"] = round(row["mpp_x"] * float(row["width_px"]) / m.width, 4)
            self._record(row, action)
            return
        try:
            row = {
                "slide_id": sid,
                "name": path.stem,
                "path": str(path),
                "file_mtime": st.st_mtime,
                **read_slide_facts(path),
            }
            row = self._with_mpp(row, meta)
            row.update(
                write_overview(
                    path,
                    sid,
                    self.out,
                    thumbnail_px=int(self.sc.thumbnail_px),
                    mask_mpp=float(self.sc.mask_mpp),
                    mpp=row["mpp_x"],
                    detector=self.detector,
                )
            )
        except SlideProblem as e:
            self._record(self._fail(path, sid, "failed", str(e), meta), "failed")
            return
        except Exception as e:  # noqa: BLE001 - a damaged tile must not stop the batch
            reason = f"corrupt: pixels could not be read ({type(e).__name__}: {str(e)[:100]})"
            self._record(self._fail(path, sid, "failed", reason, meta), "failed")
            return
        known = (self.old["path"] == str(path)).any() or old is not None
        self._record(row, "updated" if known else "new")

    def missing_from_metadata(self) -> None:
        """Rows of the metadata CSV whose path does not exist are recorded as missing."""
        for _, m in self.meta[self.meta.get("_by", pd.Series(dtype=str)) == "path"].iterrows():
            p = Path(m["_key"])
            if not p.exists():
                meta = metadata_for(self.meta, p)
                reason = f"listed in {Path(str(self.sc.metadata)).name} but not found: {p}"
                self._record(self._fail(p, _path_id(p, "m"), "missing", reason, meta), "missing")

    def registry(self) -> pd.DataFrame:
        """New registry: this run's rows plus the rows of `self.old` this run did not touch.

        Rows of the same path as one of this run's are replaced; rows that were registered when
        this run started and whose file is gone are dropped. Rows other runs added meanwhile
        are kept as they are.
        """
        paths = {r["path"] for r in self.rows.values()}
        keep = self.old[~self.old["slide_id"].isin(self.rows) & ~self.old["path"].isin(paths)]
        if len(keep):
            gone = [
                str(sid) in self.known and not Path(str(p)).exists()
                for sid, p in zip(keep["slide_id"], keep["path"], strict=True)
            ]
            keep = keep[[not g for g in gone]]
        new = pd.DataFrame(list(self.rows.values()))
        return pd.concat([keep, new], ignore_index=True) if len(keep) else new

    def save(self) -> pd.DataFrame:
        """Merge this run's rows into the registry as it is now, under the registry's lock."""
        with store_lock(self.path, f"the slide registry {self.path}", **self.lock):
            self.old = load_registry(self.path)
            df = self.registry()
            save_registry(df, self.path)
        return df

    def run(self) -> dict:
        """Ingest every discovered file, then write the registry atomically."""
        files = discover(list(self.sc.sources), list(self.sc.extensions))
        files += [
            Path(k)
            for k in self.meta.get("_key", [])
            if "/" in str(k) and Path(k).is_file() and Path(k) not in files
        ]
        for sub in ("thumbnails", "masks"):
            sweep_stale(self.out / sub)
        sweep_stale(self.out)
        print(f"ingesting {len(files)} file(s) into {self.path}", flush=True)
        t0 = saved = time.perf_counter()
        for i, f in enumerate(files, 1):
            self.one(f)
            every, now = int(self.sc.checkpoint_slides), time.perf_counter()
            if (every > 0 and i % every == 0) or now - saved >= float(self.sc.checkpoint_s):
                self.save()
                saved = time.perf_counter()
        self.missing_from_metadata()
        df = self.save()
        dt = time.perf_counter() - t0
        status = Counter(df["status"]) if len(df) else Counter()
        print(
            f"summary: {len(df)} slide(s) in registry — "
            + ", ".join(f"{k} {v}" for k, v in sorted(status.items()))
            + "; this run: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items()))
            + f"; {dt:.1f}s ({dt / max(len(files), 1):.2f}s/slide)"
        )
        for name, why in self.problems:
            print(f"  ! {name}: {why}")
        return {
            "slides": len(df),
            "usable": status.get("ok", 0),
            "problems": len(self.problems),
            "seconds": round(dt, 2),
        }
