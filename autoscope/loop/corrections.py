"""Corrections back into data: edited QuPath files build the NEXT dataset version.

The parent folder is never touched: `<name>` gives `<name>-r1`, `<name>-r1` gives `<name>-r2`.
Kept patches keep their `patch_id` (a relabel changes the label, not the id), so
`autoscope dataset diff` is exact; `lineage.json` in the new folder names the parent, the round,
and every correction with its author.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autoscope.errors import UserError
from autoscope.loop.qupath import IGNORE, Edit, read_corrections


def next_name(name: str) -> tuple[str, int]:
    """The next version's dataset name and round: `x` -> (`x-r1`, 1), `x-r1` -> (`x-r2`, 2)."""
    m = re.fullmatch(r"(.*)-r(\d+)", name)
    base, n = (m.group(1), int(m.group(2))) if m else (name, 0)
    return f"{base}-r{n + 1}", n + 1


@dataclass
class Change:
    """One correction: `relabel`, `delete` or `add` of one patch."""

    kind: str
    patch_id: str
    slide: str
    before: str | None
    after: str | None
    author: str | None
    file: str


def _slide_row(block: dict[str, Any], path: Path, registry: pd.DataFrame) -> pd.Series:
    """The registry row of the slide a file is about (its `autoscope` block, else the file stem)."""
    for key, col in (("slide_id", "slide_id"), ("slide", "name")):
        if block.get(key) and (registry[col] == block[key]).any():
            return registry[registry[col] == block[key]].iloc[0]
    stem = path.name.split(".")[0]
    hit = registry[registry["name"].astype(str) == stem]
    if hit.empty:
        raise UserError(f"{path}: no registered slide '{block.get('slide') or stem}'")
    return hit.iloc[0]


def _check_dimensions(path: Path, block: dict, slide: pd.Series, edits: list[Edit]) -> None:
    """A file from another slide: its recorded size or its annotations do not fit this slide."""
    w, h = int(slide["width_px"]), int(slide["height_px"])
    if block.get("width") and (int(block["width"]), int(block["height"])) != (w, h):
        raise UserError(
            f"{path}: made for a {block['width']}x{block['height']} px slide, but slide "
            f"'{slide['name']}' is {w}x{h} px (a QuPath file from another slide?)"
        )
    for e in edits:
        x0, y0, x1, y1 = e.region.geometry.bounds
        if x0 < -1 or y0 < -1 or x1 > w + 1 or y1 > h + 1:
            raise UserError(
                f"{e.where}: lies outside slide '{slide['name']}' ({w}x{h} px): "
                "a QuPath file from another slide?"
            )


def _patch_id(slide_id: str, x: int, y: int, mpp: float, patch_px: int, label: str) -> str:
    """The id `dataset build` gives a slide patch (same key, so a rebuild agrees)."""
    key = f"{slide_id}:{x}:{y}:{mpp}:{patch_px}:{label}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def plan_corrections(
    manifest: pd.DataFrame,
    files: list[Path],
    registry: pd.DataFrame,
    classes: list[str],
    author: str | None,
    side_px0: dict[str, int],
) -> tuple[pd.DataFrame, list[Change]]:
    """The next manifest (without pixels for added rows) and the list of changes.

    Args:
        manifest: the parent dataset's manifest.
        files: edited QuPath GeoJSON files (one per slide).
        registry: the slide registry.
        classes: the project's class names (label index = position).
        author: who made the corrections when a file does not say (CLI flag); the flag wins.
        side_px0: slide_id -> patch side in level-0 pixels.

    Raises:
        UserError: a file from another slide, an unknown class, a patch that no longer exists.
    """
    from autoscope.slides.samplers import in_polygons

    m = manifest.copy()
    by_id = {pid: i for i, pid in enumerate(m["patch_id"])}
    changes: list[Change] = []
    added: list[dict[str, Any]] = []
    drop: set[int] = set()
    for path in map(Path, files):
        block, edits, file_author = read_corrections(path)
        who = author or file_author
        slide = _slide_row(block, path, registry)
        _check_dimensions(path, block, slide, edits)
        sid, name = str(slide["slide_id"]), str(slide["name"])
        seen = set()
        for e in edits:
            if e.label is not None and e.label not in classes and e.label not in IGNORE:
                raise UserError(
                    f"{e.where}: unknown class '{e.label}' (the project's classes: "
                    f"{', '.join(classes)})"
                )
            if e.patch_id and e.queue != "select":
                if e.patch_id not in by_id:
                    raise UserError(
                        f"{e.where}: patch {e.patch_id} no longer exists in the dataset "
                        "(corrected twice, or a file from an older round?)"
                    )
                seen.add(e.patch_id)
                i = by_id[e.patch_id]
                before = str(m.at[i, "label"])
                if e.label in IGNORE:
                    drop.add(i)
                    changes.append(Change("delete", e.patch_id, name, before, None, who, path.name))
                elif e.label and e.label != before:
                    m.at[i, "label"], m.at[i, "label_idx"] = e.label, classes.index(e.label)
                    changes.append(
                        Change("relabel", e.patch_id, name, before, e.label, who, path.name)
                    )
                continue
            if e.label is None or e.label in IGNORE:
                continue  # a selection square nobody classified
            side = side_px0[sid]
            here = m[m["slide_id"] == sid]
            taken = {(int(x), int(y)) for x, y in zip(here["x"], here["y"], strict=True)}
            for x, y in in_polygons(e.region.geometry, side, side, 0.5):
                if (int(x), int(y)) in taken:
                    continue
                taken.add((int(x), int(y)))
                added.append(
                    {
                        "slide_id": sid,
                        "slide": name,
                        "x": int(x),
                        "y": int(y),
                        "label": e.label,
                        "who": who,
                        "file": path.name,
                    }
                )
        if block.get("kind") == "review":
            for pid in block.get("queued", []):
                if pid not in seen and pid in by_id and by_id[pid] not in drop:
                    drop.add(by_id[pid])
                    changes.append(
                        Change(
                            "delete",
                            pid,
                            name,
                            str(m.at[by_id[pid], "label"]),
                            None,
                            who,
                            path.name,
                        )
                    )
    m = m.drop(index=sorted(drop)).reset_index(drop=True)
    return pd.concat([m, _added_rows(m, added, classes, changes)], ignore_index=True), changes


def _added_rows(
    m: pd.DataFrame, added: list[dict[str, Any]], classes: list[str], changes: list[Change]
) -> pd.DataFrame:
    """Manifest rows of added patches: the slide's split and group (train for a new slide)."""
    if not added:
        return m.iloc[:0]
    mpp, patch_px = float(m["mpp"].iloc[0]), int(m["patch_px"].iloc[0])
    level = m[m["slide_id"] != ""].groupby("slide_id")["pyramid_level"].first().to_dict()
    split = m.groupby("slide_id")["split"].first().to_dict()
    group = m.groupby("slide_id")["group"].first().to_dict()
    rows = []
    for a in added:
        pid = _patch_id(a["slide_id"], a["x"], a["y"], mpp, patch_px, a["label"])
        changes.append(Change("add", pid, a["slide"], None, a["label"], a["who"], a["file"]))
        rows.append(
            {
                "patch_id": pid,
                "slide_id": a["slide_id"],
                "slide": a["slide"],
                "x": a["x"],
                "y": a["y"],
                "pyramid_level": level.get(a["slide_id"], 0),
                "mpp": mpp,
                "patch_px": patch_px,
                "label": a["label"],
                "label_idx": classes.index(a["label"]),
                "label_level": "tissue",
                "split": split.get(a["slide_id"], "train"),
                "group": group.get(a["slide_id"], a["slide"]),
                "shard": None,
                "index": -1,
            }
        )
    return pd.DataFrame(rows).reindex(columns=m.columns)


def changes_table(changes: list[Change]) -> list[dict[str, Any]]:
    """The changes as plain dicts (lineage.json)."""
    return [dict(c.__dict__) for c in changes]


def summarise(changes: list[Change]) -> dict[str, Any]:
    """Counts by kind and by author."""
    kinds = pd.Series([c.kind for c in changes], dtype=object).value_counts().to_dict()
    authors = pd.Series([c.author or "unknown" for c in changes], dtype=object)
    return {
        "by_kind": {k: int(v) for k, v in kinds.items()},
        "by_author": {k: int(v) for k, v in authors.value_counts().to_dict().items()},
    }


def patch_sides(registry: pd.DataFrame, mpp: float, patch_px: int) -> dict[str, int]:
    """slide_id -> side of a `patch_px` patch at `mpp` in that slide's level-0 pixels."""
    from autoscope.slides.units import level0_px

    return {
        str(r.slide_id): level0_px(float(r.mpp_x), mpp, patch_px)
        for r in registry.itertuples()
        if r.mpp_x == r.mpp_x  # a slide without MPP has no footprint
    }


def lineage_record(
    parent: str,
    parent_version: str | None,
    round_no: int,
    names: list[str],
    files: list[Path],
    changes: list[Change],
    by_round: list[int] | None = None,
) -> dict[str, Any]:
    """`lineage.json` of a corrected dataset: parent, round, files, queues, counts, changes.

    `by_round` gives each change's round when one build applies several.
    """
    table = changes_table(changes)
    if by_round is not None:
        table = [{**c, "round": n} for c, n in zip(table, by_round, strict=True)]
    return {
        "parent": parent,
        "parent_version": parent_version,
        "round": int(round_no),
        "files": names,
        "queues": queues_of(files),
        **summarise(changes),
        "corrections": table,
    }


def queues_of(files: list[Path]) -> list[str]:
    """The refine / select rounds whose queues the files are edits of (`review round 1` ...)."""
    blocks = (read_corrections(p)[0] for p in files)
    return sorted({f"{b['kind']} round {b['round']}" for b in blocks if b.get("kind")})


def correction_rounds(folder: Path) -> list[list[Path]]:
    """The edited QuPath files of a corrections folder, one list per round, in round order.

    `round_<N>/` subfolders are rounds (by N); GeoJSON files directly in the folder are one
    round before them. Other files (a README) are ignored. A missing folder has no rounds.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []

    def geojson(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".geojson", ".json"))

    subs = [d for d in folder.iterdir() if d.is_dir() and re.fullmatch(r"round_\d+", d.name)]
    rounds = [geojson(folder)] + [geojson(d) for d in sorted(subs, key=lambda d: int(d.name[6:]))]
    return [r for r in rounds if r]


def amend_with(
    folder: Path, name: str, classes: list[str], author: str | None
) -> Callable[[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, dict[str, Any] | None]] | None:
    """`dataset build`'s hook applying every round of `folder` to the plan (None: no files).

    The dataset keeps its name (dvc.yaml's dataset stage: DVC versions it); its `lineage.json`
    names the rounds, the files and each change with its author and round.
    """
    rounds = correction_rounds(folder)
    if not rounds:
        return None

    def amend(plan: pd.DataFrame, registry: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        side = patch_sides(registry, float(plan["mpp"].iloc[0]), int(plan["patch_px"].iloc[0]))
        changes: list[Change] = []
        by_round: list[int] = []
        for n, files in enumerate(rounds, start=1):
            plan, done = plan_corrections(plan, files, registry, classes, author, side)
            changes += done
            by_round += [n] * len(done)
            print(f"dataset {name}: correction round {n}: {len(done)} changes", flush=True)
        paths = [p for r in rounds for p in r]
        names = [p.relative_to(folder).as_posix() for p in paths]
        parent = f"{name} (annotations only)"
        return plan, lineage_record(parent, None, len(rounds), names, paths, changes, by_round)

    return amend
