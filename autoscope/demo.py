"""`make demo`: a workspace for the embedded demo, then its whole assembly line with `dvc repro`.

`python -m autoscope.demo [<dir>]` makes the workspace (`autoscope init <dir> --demo`, default
`workspaces/demo`, ignored by the source tree's git) and runs `dvc repro` there. The synthetic
slides are generated deterministically by the pipeline's `generate` stage (never committed); the
real CMU-1-Small-Region slide is copied from tests/fixtures/. One slide is written without MPP:
the demo metadata CSV gives it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

N_SLIDES = 6  # enough for train/val/test splits by slide
SLIDE_PX = (4096, 3072)  # level-0 size of each synthetic slide
NO_MPP = "slide_005"  # written without MPP; the metadata CSV supplies it
N_CELL_SLIDES = 4  # the cell demo's slides: train/val/test by slide (2/1/1)
CELL_SLIDE_PX = (1536, 1152)  # level-0 size of each synthetic cell slide (0.5 um/px)
CORRUPT = ("slide_001", "slide_004", "slide_005")  # one region each annotated with the wrong class
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "cmu-1-small-region.svs"
WORKSPACE = Path("workspaces") / "demo"  # the demo's workspace, relative to where make runs


def generate(raw: Path) -> None:
    """Write the synthetic slides and the metadata CSV once (deterministic; skipped if present)."""
    from autoscope.slides.synth import make_synthetic_slide

    out = raw / "synthetic"
    out.mkdir(parents=True, exist_ok=True)
    rows = ["path,scanner,patient,mpp"]
    for i in range(N_SLIDES):
        name = f"slide_{i:03d}"
        path = out / f"{name}.tif"
        if not path.is_file():
            made = make_synthetic_slide(
                path,
                seed=i,
                width_px=SLIDE_PX[0],
                height_px=SLIDE_PX[1],
                mpp=0.5,
                with_mpp=name != NO_MPP,
            )
            if name in CORRUPT:
                from autoscope.demo_loop import CORRUPTED, corrupt_region

                corrupt_region(made.geojson_path, raw / CORRUPTED)
        scanner = "GT450" if i % 2 == 0 else "AT2"
        rows.append(
            f"synthetic/{name}.tif,{scanner},patient_{i // 2},{0.5 if name == NO_MPP else ''}"
        )
    generate_cells(raw / "cells")
    cmu = FIXTURE.name
    if FIXTURE.is_file() and not (raw / cmu).is_file():
        shutil.copyfile(FIXTURE, raw / f".{cmu}.tmp")
        (raw / f".{cmu}.tmp").replace(raw / cmu)
    csv = raw / "metadata.csv"
    tmp = csv.with_suffix(".tmp")
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(csv)


def generate_cells(out: Path) -> None:
    """The cell detection demo's slides with their nuclei (`recipes/demo_cells.yaml`), once."""
    from autoscope.slides.synth_cells import make_cell_slide

    for i in range(N_CELL_SLIDES):
        path = out / f"cells_{i:03d}.tif"
        if not path.is_file():
            make_cell_slide(
                path, seed=100 + i, width_px=CELL_SLIDE_PX[0], height_px=CELL_SLIDE_PX[1]
            )


def _results(infer_dir: Path) -> Path:
    """The newest model version's results folder (`infer/<model>/v<N>`), not a Hydra job folder."""
    found = [
        p
        for p in sorted(infer_dir.glob("*/*"))
        if p.is_dir() and p.parent.name not in ("jobs", "multirun")
    ]
    return found[-1] if found else infer_dir


LINKED = ("data/demo", "outputs/demo/infer")  # the source tree's view of the demo


def link_source_tree(source: Path, ws: Path) -> list[str]:
    """Point the source tree's `data/demo` and `outputs/demo/infer` at the demo workspace.

    So `autoscope train demo ...` typed in the autoscope checkout trains on the demo's slides and
    datasets, and the demo's results are where they were before workspaces. Runs started there
    keep their own stores (`outputs/_state`, `outputs/demo/...` stay real folders), so they never
    write into the workspace's DVC outputs. A real folder of a linked name is left as it is.
    """
    notes = []
    for rel in LINKED:
        link, target = source / rel, ws / rel
        if not target.exists():
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            notes.append(f"{rel} left as it is (a real folder, not the demo workspace's)")
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
        notes.append(f"{rel} -> {os.path.relpath(target, source)}")
    return notes


def step(*cmd: str) -> None:
    """Run one command of the demo, stopping the demo if it fails."""
    print(f"\n$ {' '.join(cmd)}", flush=True)
    rc = subprocess.call(list(cmd))
    if rc != 0:
        sys.exit(rc)


def loop_round(ws: Path) -> None:
    """Close one round of the loop on the demo: refine's catch, corrections, `dvc repro` again."""
    from autoscope.demo_loop import CORRUPTED, annotate, check_refine
    from autoscope.workspace import commit

    rounds = sorted((ws / "outputs/demo/loop/refine/demo_tissue").glob("round_*"))
    done = ws / "corrections" / "demo_tissue" / rounds[-1].name if rounds else None
    if done is None or done.is_dir():
        return  # no queue, or this round's corrections are in already (a re-run of the demo)
    ds = ws / "data/demo/datasets/demo_tissue"
    got = check_refine(ds, rounds[-1], ws / "data/demo/raw" / CORRUPTED, ("train", "val"))
    print(
        f"\nrefine: the demo mislabels {got['corrupted']} patches on purpose; precision at "
        f"{got['corrupted']} {got['precision_at_k']:.2f}, recall in the top "
        f"{2 * got['corrupted']} {got['recall_at_2k']:.2f} ({rounds[-1]})",
        flush=True,
    )
    made = annotate(rounds[-1], done, ws / "data/demo/raw/synthetic", "demo-pathologist")
    print(f"the demo's pathologist reviewed the queue in QuPath: {made} -> {done}", flush=True)
    step("dvc", "repro")  # the corrected dataset version: retrained, archived, packaged, re-run
    if commit(ws, f"demo: loop {rounds[-1].name}"):
        print(f"\n$ git commit -m 'demo: loop {rounds[-1].name}'", flush=True)
    lineage = json.loads((ds / "lineage.json").read_text())
    print(f"dataset demo_tissue now: {lineage['by_kind']} by {lineage['by_author']}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """`generate`: only the raw demo data; else `[<dir>]`: the demo workspace, run end to end."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        print("generating the demo slides (deterministic) ...", flush=True)
        generate(Path.cwd() / "data" / "demo" / "raw")
        return
    t0 = time.perf_counter()
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"  # autoscope, dvc
    ws = Path(argv[0]) if argv else WORKSPACE
    source = Path.cwd() if (Path.cwd() / "autoscope" / "demo.py").is_file() else None
    step("autoscope", "init", str(ws), "--demo")
    os.chdir(ws)
    ws = Path.cwd()
    step("dvc", "repro")
    from autoscope.workspace import commit

    if commit(ws, "demo: dvc repro"):  # the lock, metrics and plots: `dvc exp show`'s baseline
        print("\n$ git commit -m 'demo: dvc repro'  (the workspace's baseline)", flush=True)
    loop_round(ws)
    step("autoscope", "runs", "list", "demo", "--sort", "val/acc")
    step("autoscope", "models", "list", "demo")
    step("autoscope", "slides", "list", "demo")
    if source is not None and not argv:
        print("\nthe source tree's view of the demo (autoscope <stage> demo works from there):")
        for note in link_source_tree(source, ws):
            print(f"  {note}")
    print(f"\ndemo done in {time.perf_counter() - t0:.0f}s in workspace {ws}. Where to look:")
    out = ws / "outputs" / "demo"
    for what, where in [
        ("slide registry", ws / "data/demo/slides/registry.parquet"),
        ("dataset report", ws / "data/demo/datasets/demo_tissue/report/report.md"),
        ("sweep (best.yaml, pictures)", out / "hpo/demo-small"),
        ("metrics, curves (dvc)", out / "pipeline/demo"),
        ("model cards", out / "models"),
        ("bento", out / "package"),
        ("heatmaps, GeoJSON, summaries", _results(out / "infer")),
        ("review queue, regions to label", out / "loop"),
        ("corrections (QuPath, by round)", ws / "corrections/demo_tissue"),
    ]:
        print(f"  {what:<30} {where}")
    print("  DVC                            dvc exp show / dvc metrics show / dvc plots show")
    print("  MLflow UI                      autoscope ui demo   (127.0.0.1)")


if __name__ == "__main__":
    main()
