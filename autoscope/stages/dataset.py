"""`autoscope dataset build|list|show|diff`: wiring only; the work is in autoscope.datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoscope.errors import UserError

if TYPE_CHECKING:
    from autoscope.datasets.spec import DatasetSpec


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line UserErrors (the CLI prints them)."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (usage: {self.format_usage().strip()[7:]})")


def _parse(prog: str, flags: list[str], *positional: str) -> argparse.Namespace:
    parser = _Parser(prog=f"autoscope dataset {prog}", add_help=False)
    for name in positional:
        parser.add_argument(name, nargs="?" if name == "name" else None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args, unknown = parser.parse_known_args(flags)
    if unknown:
        raise UserError(f"dataset {prog}: unexpected argument '{unknown[0]}'")
    return args


def _need(node: dict, key: str, where: str = "dataset") -> Any:
    """A key every dataset has (from conf/dataset/_base.yaml); a one-line error when missing."""
    if key not in node:
        raise UserError(
            f"{where}.{key} is missing: start the dataset file with `defaults: [_base, _self_]`"
        )
    return node[key]


def _opt(value: Any, kind: type) -> Any:
    """`kind(value)`, or None for None (an optional setting left unset)."""
    return None if value is None else kind(value)


def dataset_spec(cfg: Any) -> DatasetSpec:
    """The typed `DatasetSpec` of `cfg.dataset` (every default is in conf/dataset/_base.yaml)."""
    from autoscope.config import to_dict
    from autoscope.datasets.spec import DatasetSpec, SplitSpec, source_spec

    d = to_dict(cfg.get("dataset")) or {}
    split = _need(d, "split") or {}
    sources = _need(d, "sources") or []
    return DatasetSpec(
        name=_opt(_need(d, "name"), str),
        sources=tuple(source_spec(s, f"dataset.sources[{i}]") for i, s in enumerate(sources)),
        class_map=dict(_need(d, "class_map") or {}),
        patch_px=int(_need(d, "patch_px") or 0),
        mpp=_opt(_need(d, "mpp"), float),
        stride_px=_opt(_need(d, "stride_px"), int),
        min_overlap=float(_need(d, "min_overlap")),
        max_patches_per_slide=_opt(_need(d, "max_patches_per_slide"), int),
        label_level=str(_need(d, "label_level")),
        split=SplitSpec(
            by=str(_need(split, "by", "dataset.split")),
            column=_opt(_need(split, "column", "dataset.split"), str),
            fractions={
                str(k): float(v) for k, v in _need(split, "fractions", "dataset.split").items()
            },
            seed=int(_need(split, "seed", "dataset.split")),
            sized_by=str(_need(split, "sized_by", "dataset.split")),
        ),
        shard_mb=float(_need(d, "shard_mb")),
        workers=int(_need(d, "workers")),
        dvc_add=bool(_need(d, "dvc_add")),
    )


def _selected(cfg: Any) -> str | None:
    """The name of the dataset the config selects (None: `dataset=none`)."""
    ds = cfg.get("dataset")
    return None if ds is None or ds.get("name") is None else str(ds.name)


def build(cfg: Any) -> dict:
    """Build the dataset `cfg.dataset` and print where its report is."""
    from autoscope.config import project_spec, stores_spec
    from autoscope.datasets.build import build_dataset
    from autoscope.stages.slides import detector_from
    from autoscope.tasks import entry

    spec = dataset_spec(cfg)
    project, stores = project_spec(cfg), stores_spec(cfg)
    make_targets = entry(project.task, "targets")  # masks or cells of a dense task
    targets = make_targets() if make_targets else None
    amend = None
    if cfg.dataset.get("corrections"):  # the loop: edited QuPath files applied by round
        from autoscope.loop.corrections import amend_with
        from autoscope.portable import resolve_path

        folder = resolve_path(str(cfg.dataset.corrections), Path(stores.workspace))
        author = cfg.get("corrections", {}).get("author")
        amend = amend_with(
            Path(folder),
            str(spec.name),
            project.class_names,
            None if author is None else str(author),
        )
    if amend is not None and make_targets:
        raise UserError(
            f"dataset.corrections: a {project.task} dataset takes no patch-label corrections"
        )
    result = build_dataset(
        spec, project, stores, detector=detector_from(cfg), targets=targets, amend=amend
    )
    print(f"dataset {result['name']} version {result['version']}: {result['dir']}")
    print(f"report: {result['report']}")
    return result


def list_view(cfg: Any, flags: list[str]) -> None:
    """Table of the project's datasets: name, patches, classes, version."""
    from autoscope.config import stores_spec
    from autoscope.datasets.store import dataset_version, list_datasets

    args = _parse("list", flags)
    rows = []
    for d in list_datasets(stores_spec(cfg)):
        stats = json.loads((d / "stats.json").read_text()) if (d / "stats.json").is_file() else {}
        rows.append(
            {
                "name": d.name,
                "patches": stats.get("patches"),
                "patch_px": stats.get("patch_px"),
                "mpp": stats.get("mpp"),
                "splits": stats.get("by_split"),
                "version": dataset_version(d),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(
            f"no datasets in project '{cfg.project.name}' "
            "(autoscope dataset build <recipe> dataset=<name>)"
        )
        return
    print(f"{'name':<24}{'patches':>9}{'patch_px':>9}{'mpp':>6}  {'train/val/test':<18}version")
    for r in rows:
        s = r["splits"] or {}
        tvt = f"{s.get('train', 0)}/{s.get('val', 0)}/{s.get('test', 0)}"
        head = f"{r['name']:<24}{r['patches']:>9}{r['patch_px']:>9}{r['mpp']:>6}"
        print(f"{head}  {tvt:<18}{r['version']}")


def show_view(cfg: Any, flags: list[str]) -> None:
    """One dataset (flag `name`, default cfg.dataset.name): stats, splits, version, report."""
    from autoscope.config import stores_spec
    from autoscope.datasets.store import dataset_dir, dataset_version

    args = _parse("show", flags, "name")
    d = dataset_dir(stores_spec(cfg), args.name or _selected(cfg))
    if not (d / "stats.json").is_file():
        raise UserError(f"no dataset at {d} (build it with `autoscope dataset build`)")
    stats = json.loads((d / "stats.json").read_text())
    stats["version"], stats["dir"] = dataset_version(d), str(d)
    stats["report"] = str(d / "report" / "report.md")
    if args.json:
        print(json.dumps(stats, indent=2))
        return
    print(f"dataset {stats['name']}  version {stats['version']}\n  folder {d}")
    print(
        f"  {stats['patches']} patches, {stats['patch_px']} px at {stats['mpp']} um/px, "
        f"split by {stats['split_by']}"
    )
    for s in ("train", "val", "test"):
        per = stats["by_split_class"][s]
        counts = ", ".join(f"{c}={n}" for c, n in per.items())
        print(
            f"  {s:<5} {stats['by_split'][s]:>7}  ({stats['groups_per_split'][s]} groups: {counts})"
        )
    print(f"  label levels: {stats['by_label_level']}  slides: {len(stats['by_slide'])}")
    print(f"  colour mean {stats['colour']['mean']} std {stats['colour']['std']}")
    print(f"  report {stats['report']}")


def diff_view(cfg: Any, flags: list[str]) -> None:
    """Patches added/removed and class counts changed between datasets `a` and `b`."""
    import tempfile

    from autoscope.config import stores_spec
    from autoscope.datasets.diff import diff_datasets, format_diff
    from autoscope.datasets.store import dataset_dir

    args = _parse("diff", flags, "a", "b")
    stores = stores_spec(cfg)
    with tempfile.TemporaryDirectory(prefix="autoscope-diff-") as tmp:
        a, b = (
            _at_revision(stores, ref, Path(tmp) / str(i))
            if "@" in ref
            else dataset_dir(stores, ref)
            for i, ref in enumerate((args.a, args.b))
        )
        d = diff_datasets(a, b)
        d["a"], d["b"] = str(args.a), str(args.b)
    print(json.dumps(d, indent=2) if args.json else format_diff(d))


def _at_revision(stores: Any, ref: str, out: Any) -> Any:
    """`<name>@<git rev>`: that version's manifest (and lineage), read from the DVC cache.

    The dataset stage's folder is a DVC output, so every committed version is one `dvc.lock`
    entry away: `autoscope dataset diff demo demo_tissue@HEAD~1 demo_tissue`.
    """
    from dvc.api import open as dvc_open
    from dvc.exceptions import DvcException

    from autoscope.datasets.diff import LINEAGE
    from autoscope.datasets.store import MANIFEST, dataset_dir

    name, rev = ref.rsplit("@", 1)
    rel = dataset_dir(stores, name).resolve().relative_to(Path(stores.workspace).resolve())
    out.mkdir(parents=True)
    for fname, needed in ((MANIFEST, True), (LINEAGE, False)):
        try:
            with dvc_open(
                f"{rel.as_posix()}/{fname}", repo=str(stores.workspace), rev=rev, mode="rb"
            ) as f:
                (out / fname).write_bytes(f.read())
        except (DvcException, FileNotFoundError, OSError) as e:
            if needed:
                raise UserError(f"dataset diff: {ref}: no {rel} at revision {rev} ({e})") from None
    return out
