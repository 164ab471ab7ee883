"""Where datasets live, how they are read, and their version (the DVC hash of the folder).

Functions that locate datasets take `where`: the project's `Stores` or its data folder
(`paths.data`, i.e. `Stores.data`, `data/<project>`); datasets live in `<data>/datasets/<name>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscope.atomic import write_json
from autoscope.errors import UserError
from autoscope.project import Stores

MANIFEST = "manifest.parquet"


def datasets_root(where: Stores | str | Path) -> Path:
    """`data/<project>/datasets` of a project's `Stores` or data folder."""
    data = where.data if isinstance(where, Stores) else Path(where)
    return data / "datasets"


def dataset_dir(where: Stores | str | Path, name: str | None) -> Path:
    """Folder of the dataset `name` of a project; a path to a built dataset folder also works.

    Args:
        where: The project's `Stores` or data folder (`Stores.data`).
        name: Dataset name (`dataset.name`), or a path to a built dataset folder.

    Raises:
        UserError: no name (no dataset selected).
    """
    if not name:
        raise UserError("no dataset selected: pass dataset=<name> (conf/dataset/<name>.yaml)")
    if "/" in str(name) and (Path(str(name)) / MANIFEST).is_file():
        return Path(str(name))
    return datasets_root(where) / str(name)


def read_manifest(ds_dir: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The manifest of a built dataset (UserError if there is none)."""
    p = Path(ds_dir) / MANIFEST
    if not p.is_file():
        raise UserError(f"no dataset at {ds_dir} (build it with `autoscope dataset build`)")
    return pd.read_parquet(p, columns=columns)


def open_shards(ds_dir: Path) -> dict[str, np.ndarray]:
    """Every shard of a dataset as a read-only memory map, keyed by its manifest `shard` value."""
    ds_dir = Path(ds_dir)
    return {
        f"shards/{p.name}": np.load(p, mmap_mode="r")
        for p in sorted((ds_dir / "shards").glob("*.npy"))
    }


def load_split(ds_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N,H,W,3] and labels int64 [N] of one split, in manifest order.

    A split that is one contiguous range of one shard comes back as a read-only memory map
    (no copy); otherwise the rows are gathered into memory.
    """
    ds_dir = Path(ds_dir)
    m = read_manifest(ds_dir, ["shard", "index", "label_idx", "split"])
    m = m[m["split"] == split]
    labels = m["label_idx"].to_numpy(np.int64)
    if m.empty:
        meta = np.load(next((ds_dir / "shards").glob("*.npy")), mmap_mode="r")
        return np.zeros((0, *meta.shape[1:]), np.uint8), labels
    shards = open_shards(ds_dir)
    idx = m["index"].to_numpy()
    if m["shard"].nunique() == 1 and np.all(np.diff(idx) == 1):
        return shards[m["shard"].iloc[0]][idx[0] : idx[-1] + 1], labels
    parts = [shards[s][g["index"].to_numpy()] for s, g in m.groupby("shard", sort=False)]
    order = np.concatenate([g.index.to_numpy() for _, g in m.groupby("shard", sort=False)])
    images = np.concatenate(parts)
    return images[np.argsort(np.argsort(order))], labels


def _signature(ds_dir: Path) -> list[list[Any]]:
    return [
        [str(p.relative_to(ds_dir)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(ds_dir.rglob("*"))
        if p.is_file()
    ]


def dataset_version(ds_dir: str | Path) -> str:
    """The DVC md5 of the dataset folder (`<hash>.dir`), computed with dvc-data as `dvc add` does.

    The result is cached beside the datasets (`.versions/<name>.json`), keyed by the files'
    sizes and modification times.
    """
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    ds_dir = Path(ds_dir).resolve()
    if not (ds_dir / MANIFEST).is_file():
        raise UserError(f"no dataset at {ds_dir} (build it with `autoscope dataset build`)")
    cache = ds_dir.parent / ".versions" / f"{ds_dir.name}.json"
    sig = _signature(ds_dir)
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("signature") == sig:
                return str(saved["version"])
        except (ValueError, KeyError):
            pass
    odb = HashFileDB(MemoryFileSystem(), "/staging")
    _, _, obj = build(odb, str(ds_dir), LocalFileSystem(), "md5", dry_run=True)
    version = str(obj.hash_info.value)
    write_json(cache, {"version": version, "signature": sig})
    return version


def list_datasets(where: Stores | str | Path) -> list[Path]:
    """Folders of the project's built datasets (`where`: its `Stores` or data folder)."""
    root = datasets_root(where)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()
    )


def datasets_using_slide(where: Stores | str | Path, slide_id: str) -> list[str]:
    """Names of the project's datasets that hold patches of a slide."""
    names = []
    for d in list_datasets(where):
        ids = pd.read_parquet(d / MANIFEST, columns=["slide_id"])["slide_id"]
        if (ids == slide_id).any():
            names.append(d.name)
    return names
