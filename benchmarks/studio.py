"""The Studio's tile and overlay endpoints against a real `autoscope studio` server.

Run: ``.venv/bin/python benchmarks/studio.py [--cells 100000] [--levels 3]`` from the project root.

It makes a workspace under ``outputs/bench/studio_ws`` (one 4096 x 3072 synthetic slide ingested
by ``autoscope slides ingest``, and an inference folder holding ``cells.geojson`` with
``--cells`` synthetic cell detections), starts ``autoscope studio demo`` there on a free
127.0.0.1 port and, with keep-alive clients (stdlib ``http.client`` for the tiles: httpx's own
CPU per request would cap the figure on 2 cores; ``httpx`` for the rest):

- tiles: every DZI tile of the finest ``--levels`` levels over 4 keep-alive connections, twice:
  the first pass from a cold cache (``tiles_cold_per_s``), the second from the warm one; the
  bound is the same tiles read through the tile reader directly in this process, as JPEG tiles
  (``autoscope.studio.tiles.read_tile`` + ``encode``, no HTTP), so ``tiles_warm_vs_bound`` =
  warm tiles/s over reader tiles/s (target >= 0.8); ``tiles_warm_vs_pixels`` compares with the
  pixels alone (no JPEG encoding: the reader's decode rate, a stricter bound);
- overlay: every object-overlay tile of the five finest levels over the cells layer, each
  rendered for the first time (cold), after one vectors request has loaded the layer;
  ``overlay_p95_ms`` is their 95th-percentile latency, ``vectors_p95_ms`` that of a zoomed-in
  viewport's vectors.

Writes ``outputs/bench/studio.json`` atomically and prints the figures. Client and server share
the machine's cores: the figures are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench"
WS = OUT / "studio_ws"
CONNECTIONS = 4  # concurrent tile connections of the client (browsers open about six per host)


def _workspace(cells: int) -> tuple[str, dict]:
    """The benchmark workspace (made once) and its slide's registry row."""
    from autoscope.cli import main
    from autoscope.slides.registry import load_registry
    from autoscope.slides.synth import make_synthetic_slide
    from autoscope.studio.overlays import synthetic_cells

    raw = WS / "raw"
    slide = raw / "bench.tif"
    if not slide.is_file():
        raw.mkdir(parents=True, exist_ok=True)
        print("writing the synthetic slide ...", flush=True)
        make_synthetic_slide(slide, seed=3)
    reg = WS / "data" / "demo" / "slides" / "registry.parquet"
    if not reg.is_file():
        cwd = os.getcwd()
        os.chdir(WS)
        try:
            assert (
                main(
                    ["slides", "ingest", "demo", f"slides.sources=[{raw}]", "slides.metadata=null"]
                )
                == 0
            )
        finally:
            os.chdir(cwd)
    row = load_registry(reg).iloc[0].to_dict()
    geo = WS / "outputs" / "demo" / "infer" / "cells" / "v1" / str(row["name"])
    fc_path = geo / "cells.geojson"
    if not fc_path.is_file() or json.loads((geo / "summary.json").read_text()).get("n") != cells:
        from autoscope.atomic import write_json

        print(f"writing {cells} synthetic cells ...", flush=True)
        geo.mkdir(parents=True, exist_ok=True)
        write_json(fc_path, synthetic_cells(cells, int(row["width_px"]), int(row["height_px"])))
        write_json(geo / "summary.json", {"slide": {"name": row["name"]}, "n": cells})
    return str(row["slide_id"]), row


def _serve(port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("autoscope")
    cmd = [str(exe), "studio", "demo", f"studio.port={port}"]
    return subprocess.Popen(cmd, cwd=WS, start_new_session=True, stdout=subprocess.DEVNULL)


def _tiles(geo, levels: int, tile_px: int) -> list[tuple[int, int, int]]:
    out = []
    for level in range(geo.max_level - levels + 1, geo.max_level + 1):
        w, h = geo.level_size(level)
        out += [(level, c, r) for r in range(-(-h // tile_px)) for c in range(-(-w // tile_px))]
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns (and writes) the figures."""
    import httpx

    from autoscope.atomic import write_json
    from autoscope.procs import stop_group
    from autoscope.slides.reader import open_reader
    from autoscope.studio.tiles import SlideGeometry, encode, read_tile, tile_box

    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--levels", type=int, default=3)
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    sid, row = _workspace(args.cells)
    geo = SlideGeometry(int(row["width_px"]), int(row["height_px"]), float(row["mpp_x"]))
    tile_px = 256
    tiles = _tiles(geo, args.levels, tile_px)
    with open_reader(row["path"]) as reader:  # the bound: the reader alone
        for t in tiles[:20]:
            read_tile(reader, tile_box(geo, *t, tile_px), tile_px)
        t0 = time.perf_counter()
        pixels = [read_tile(reader, tile_box(geo, *t, tile_px), tile_px) for t in tiles]
        decode = len(tiles) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for t in tiles:
            encode(read_tile(reader, tile_box(geo, *t, tile_px), tile_px), "JPEG", 85)
        bound = len(tiles) / (time.perf_counter() - t0)
        del pixels
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _serve(port)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(600):
                try:
                    if client.get("/").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            client.get(f"/api/slides/{sid}_files/0/0_0.jpeg")  # opens the reader

            def fetch(part: list[tuple[int, int, int]]) -> None:
                # one keep-alive connection of the stdlib client: httpx costs ~1 ms of CPU a
                # request, which on 2 shared cores caps any server below the bound (measured)
                import http.client

                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    for level, c, r in part:
                        conn.request("GET", f"/api/slides/{sid}_files/{level}/{c}_{r}.jpeg")
                        resp = conn.getresponse()
                        body = resp.read()
                        assert resp.status == 200 and body, resp.status
                finally:
                    conn.close()

            def run_tiles() -> float:  # CONNECTIONS keep-alive connections, as a browser opens
                from concurrent.futures import ThreadPoolExecutor

                parts = [tiles[i::CONNECTIONS] for i in range(CONNECTIONS)]
                with ThreadPoolExecutor(CONNECTIONS) as pool:
                    t0 = time.perf_counter()
                    list(pool.map(fetch, parts))
                return len(tiles) / (time.perf_counter() - t0)

            print(f"tiles: {len(tiles)} over {args.levels} levels", flush=True)
            cold, warm = run_tiles(), run_tiles()
            layer = "geojson:cells/v1:cells.geojson"
            t0 = time.perf_counter()
            v = client.get(
                f"/api/slides/{sid}/vectors",
                params={"layer": layer, "x0": 0, "y0": 0, "x1": 1, "y1": 1},
            )
            load_s = time.perf_counter() - t0
            assert v.status_code == 200, v.text
            lat = []
            for level, c, r in _tiles(geo, 5, tile_px):
                t0 = time.perf_counter()
                resp = client.get(
                    f"/api/slides/{sid}/otiles/{level}/{c}_{r}.png", params={"layer": layer}
                )
                lat.append((time.perf_counter() - t0) * 1e3)
                assert resp.status_code == 200
            vec = []
            rng = np.random.default_rng(0)
            for _ in range(50):
                x, y = rng.uniform(0, geo.width_px - 1400), rng.uniform(0, geo.height_px - 900)
                t0 = time.perf_counter()
                resp = client.get(
                    f"/api/slides/{sid}/vectors",
                    params={"layer": layer, "x0": x, "y0": y, "x1": x + 1400, "y1": y + 900},
                )
                vec.append((time.perf_counter() - t0) * 1e3)
            shown = resp.json()["count"]
    finally:
        stop_group(proc)
    result = {
        "tiles": len(tiles),
        "tiles_cold_per_s": round(cold, 1),
        "tiles_warm_per_s": round(warm, 1),
        "tiles_reader_bound_per_s": round(bound, 1),
        "tiles_warm_vs_bound": round(warm / bound, 3),
        "tiles_reader_pixels_per_s": round(decode, 1),
        "tiles_warm_vs_pixels": round(warm / decode, 3),
        "cells": args.cells,
        "overlay_tiles": len(lat),
        "overlay_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "overlay_p95_ms": round(float(np.percentile(lat, 95)), 2),
        "overlay_layer_load_s": round(load_s, 2),
        "vectors_p95_ms": round(float(np.percentile(vec, 95)), 2),
        "vectors_last_count": shown,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "studio.json", result)
    for k, v in result.items():
        print(f"{k:<28}{v}")
    return result


if __name__ == "__main__":
    main()
