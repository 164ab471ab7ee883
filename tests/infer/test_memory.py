"""Streaming: the engine's peak memory does not grow with the slide (slow: builds a big slide)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import json, resource, sys
sys.path.insert(0, {tests!r})
def main():
    from infer_helpers import infer_spec, tiny_classifier
    from autoscope.infer.engine import infer_slide
    spec = infer_spec(1.0, 32, batch_size=64, workers=2, memory=None)
    s = infer_slide(tiny_classifier(), {slide!r}, {out!r}, spec)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({{"tiles": s["tiles"]["total"], "peak_rss_mb": rss}}))
if __name__ == "__main__":
    main()
"""


def _peak(slide: Path, out: Path) -> dict:
    code = CHILD.format(tests=str(Path(__file__).parent), slide=str(slide), out=str(out))
    script = out.parent / f"{slide.stem}_child.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_flat_in_slide_size(tmp_path):
    from autoscope.slides.synth import make_synthetic_slide

    small = make_synthetic_slide(tmp_path / "small.tif", seed=3, width_px=3072, height_px=3072)
    big = make_synthetic_slide(tmp_path / "big.tif", seed=3, width_px=12288, height_px=12288)
    a = _peak(small.path, tmp_path / "out")
    b = _peak(big.path, tmp_path / "out")
    print(f"peak RSS: {a} vs {b}")
    assert b["tiles"] > 8 * a["tiles"]
    assert b["peak_rss_mb"] < 1.25 * a["peak_rss_mb"] + 64, (a, b)
