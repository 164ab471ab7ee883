"""`make demo`: generate the demo's synthetic slides, then run the assembly line on recipes/demo.yaml.

The synthetic slides are generated deterministically (not committed); the real CMU-1-Small-Region
slide comes from tests/fixtures/. One slide is written without MPP: the demo metadata CSV gives it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

N_SLIDES = 6            # enough for train/val/test splits by slide
SLIDE_PX = (4096, 3072)  # level-0 size of each synthetic slide
NO_MPP = "slide_005"    # written without MPP; the metadata CSV supplies it


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
            make_synthetic_slide(path, seed=i, width_px=SLIDE_PX[0], height_px=SLIDE_PX[1],
                                 mpp=0.5, with_mpp=name != NO_MPP)
        scanner = "GT450" if i % 2 == 0 else "AT2"
        rows.append(f"synthetic/{name}.tif,{scanner},patient_{i // 2},{0.5 if name == NO_MPP else ''}")
    csv = raw / "metadata.csv"
    tmp = csv.with_suffix(".tmp")
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(csv)


def step(*args: str) -> None:
    """Run one `autoscope` command, stopping the demo if it fails."""
    print(f"\n$ autoscope {' '.join(args)}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "autoscope.cli", *args])
    if rc != 0:
        sys.exit(rc)


def main() -> None:
    t0 = time.perf_counter()
    ws = Path.cwd()
    print("generating the demo slides (deterministic) ...", flush=True)
    generate(ws / "data" / "demo" / "raw")
    step("project", "create", "demo")
    step("slides", "ingest", "demo")
    step("slides", "list", "demo")
    print(f"\ndemo done in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
