"""The bento under load: 1, 8 and 32 concurrent clients against a real `bentoml serve`.

Run: ``.venv/bin/python benchmarks/serve.py [--seconds 12] [--clients 1,8,32] [--input npy|json]
[--set KEY=VALUE]`` from the project root.

It builds (or reuses) a small real bento as ``tests/serve/conftest.py`` does: one archived
classifier, by default the demo's model (``--model small_cnn``: ``conf/model/small_cnn.yaml``,
64 px patches, random weights; ``--model tiny_cnn`` is the tests' 32 px one) in a workspace under
``outputs/bench/serve_ws_<model>``, packaged by ``autoscope package`` with the package defaults of
``conf/package/`` (``--set package.batching.max_latency_ms=1000`` etc. compose other settings;
the bento version follows its settings, so each setting gets its own bento). It serves the bento
with ``bentoml serve`` on 127.0.0.1 (a free port; the bento's own bind address), then, in one run,
for each client count: every client (a thread with its own keep-alive ``httpx`` connection)
posts the same pre-encoded body of 16 random uint8 patches for ``--seconds`` seconds, after a
short warm-up: by default (``--input npy``) a multipart upload of one ``.npy`` file to
``/predict_npy``, with ``--input json`` a JSON body of nested lists to ``/predict`` (whose parsing,
~35 ms of server CPU per request, caps a 2-core server). Every client count of a run uses the
same input. It prints a table (clients, requests, patches/s, p50 ms, p99 ms,
errors by status) and writes ``outputs/bench/serve.json`` atomically: ``clients_<n>_*`` figures,
``batched_vs_single`` (patches/s with 8 clients over patches/s with 1 client, both measured in
this run; target >= 3), the error rates (target 0 at 8 and 32 clients) and the table.

The clients run on the same machine as the server: their threads compete for the same cores
(and so does anything else running), so the figures are a floor, and the ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "archive"))  # the tiny archived run of the serve tests
OUT = Path("outputs") / "bench"
PATCHES = 16  # patches per request
TARGETS = {"clients_8_error_rate": 0.0, "clients_32_error_rate": 0.0, "batched_vs_single": 3.0}


MODELS = {"small_cnn": 64, "tiny_cnn": 32}  # model -> its patch side (px)


def build(
    workspace: Path, overrides: list[str], model: str, patch_px: int
) -> tuple[Any, dict[str, Any]]:
    """The package config and `package.run`'s result: a bento of one archived `model`."""
    from fakes import compose_cfg, fake_run

    from autoscope.config import compose
    from autoscope.stages import archive, package

    marker = workspace / "archived.json"
    if not marker.is_file():
        cfg = compose_cfg(workspace)
        arch = compose("demo", [f"model={model}"]).model
        fake_run(cfg, val_acc=0.9, patch_px=patch_px, arch=arch)
        archived = archive.run(cfg)
        marker.write_text(json.dumps(archived, default=str))
    pcfg = compose("demo", [f"paths.workspace={workspace}", *overrides], stage="package")
    return pcfg, package.run(pcfg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(pcfg: Any, tag: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`bentoml serve <tag>` in its own process group, without --host; wait until ready."""
    import httpx

    from autoscope.stages.package import package_spec

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "BENTOML_HOST"}
    env |= package_spec(pcfg).serve_env()
    env |= {"BENTOML_HOME": str(pcfg.paths.bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    exe = Path(sys.executable).with_name("bentoml")
    log = open(log_path, "wb")  # noqa: SIM115 - the server's stdout, closed by stop()
    proc = subprocess.Popen(
        [str(exe), "serve", tag, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"bentoml serve exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.perf_counter() - t0 > 120:
            stop(proc)
            raise SystemExit("bentoml serve not ready after 120 s")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    from autoscope.procs import stop_group

    stop_group(proc, timeout_s=20)
    proc.log.close()  # type: ignore[attr-defined]


ROUTES = {"npy": "/predict_npy", "json": "/predict"}


def body(patch_px: int, seed: int, kind: str = "npy") -> tuple[bytes, dict[str, str]]:
    """One request's pre-encoded body and headers: a multipart `.npy` upload, or JSON lists."""
    import io

    import httpx

    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, (PATCHES, patch_px, patch_px, 3), dtype=np.uint8)
    if kind == "json":
        content = json.dumps({"patches": patches.tolist()}).encode()
        return content, {"content-type": "application/json"}
    buf = io.BytesIO()
    np.save(buf, patches, allow_pickle=False)
    req = httpx.Request(
        "POST", "http://x/", files={"patches": ("patches.npy", buf.getvalue(), "application/x-npy")}
    )
    return req.read(), {"content-type": req.headers["content-type"]}


def load(
    url: str, clients: int, seconds: float, warmup_s: float, patch_px: int, kind: str = "npy"
) -> dict[str, Any]:
    """`clients` threads posting to the `kind` route for `seconds` (after `warmup_s`): figures."""
    import httpx

    bodies = [body(patch_px, i, kind) for i in range(min(clients, 8))]
    route = ROUTES[kind]
    start = threading.Barrier(clients + 1)
    t_begin = [0.0]
    results: list[list[tuple[float, float, int]]] = [[] for _ in range(clients)]
    bad: list[str] = []

    def client(i: int) -> None:
        content, headers = bodies[i % len(bodies)]
        with httpx.Client(timeout=300) as http:
            start.wait()
            end = t_begin[0] + warmup_s + seconds
            while (now := time.perf_counter()) < end:
                try:
                    r = http.post(f"{url}{route}", content=content, headers=headers)
                    status = r.status_code
                    if status == 200 and len(r.json()) != PATCHES:
                        status = -2  # a wrong answer
                    elif status != 200 and len(bad) < 5:
                        bad.append(f"{status}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    status = -1  # no answer
                    if len(bad) < 5:
                        bad.append(f"{type(e).__name__}: {e}")
                results[i].append((now, time.perf_counter(), status))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t_begin[0] = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    t0 = t_begin[0] + warmup_s
    # requests sent inside the measured window; throughput over the window
    done = [r for rs in results for r in rs if r[0] >= t0]
    ok = [r for r in done if r[2] == 200]
    window = max(r[1] for r in done) - t0 if done else seconds
    lat = sorted((r[1] - r[0]) * 1000 for r in ok)
    errors = Counter(str(r[2]) for r in done if r[2] != 200)
    return {
        "clients": clients,
        "requests": len(done),
        "patches_per_s": round(len(ok) * PATCHES / window, 1),
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
        "errors": dict(errors),
        "error_rate": round(sum(errors.values()) / len(done), 4) if done else 1.0,
        "sample_errors": bad,
        "sent": sum(len(rs) for rs in results),  # warm-up included (for the CPU per request)
    }


def server_cpu_s(proc: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by the server and all its worker processes."""
    import psutil

    total = 0.0
    root = psutil.Process(proc.pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def batch_stats(url: str, route: str) -> tuple[float, float]:
    """`(model calls, requests merged into them)` of the route's API so far (/metrics)."""
    import httpx

    method = f'method_name="{route.strip("/")}"'
    calls = merged = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_") and method in line:
            name, value = line.split("{", 1)[0], float(line.rsplit(" ", 1)[1])
            if name.endswith("_count"):
                calls += value
            elif name.endswith("_sum"):
                merged += value
    return calls, merged


def measured(proc: subprocess.Popen, url: str, route: str, run: Any) -> dict[str, Any]:
    """`run()`'s figures plus the server's and the clients' CPU per request, the batch sizes."""
    cpu0, client0, (calls0, merged0) = (
        server_cpu_s(proc),
        time.process_time(),
        batch_stats(url, route),
    )
    row = run()
    cpu1, client1, (calls1, merged1) = (
        server_cpu_s(proc),
        time.process_time(),
        batch_stats(url, route),
    )
    sent = row.pop("sent")
    calls = calls1 - calls0
    row["server_cpu_ms_per_request"] = round((cpu1 - cpu0) * 1000 / max(1, sent), 2)
    row["client_cpu_ms_per_request"] = round((client1 - client0) * 1000 / max(1, sent), 2)
    row["requests_per_model_call"] = round((merged1 - merged0) / calls, 2) if calls else None
    return row


def log_report(log_path: Path) -> dict[str, int]:
    text = log_path.read_text(errors="replace")
    return {
        "log_lines": text.count("\n"),
        "tracebacks": text.count("Traceback (most recent call last)"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per level")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per level")
    ap.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config override"
    )
    ap.add_argument(
        "--input",
        choices=sorted(ROUTES),
        default="npy",
        help="request body: npy (multipart .npy upload to /predict_npy) or json (/predict)",
    )
    ap.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="small_cnn",
        help="the archived model: small_cnn (the demo's default, 64 px) or tiny_cnn (32 px)",
    )
    ap.add_argument(
        "--workspace", type=Path, default=None, help="default: outputs/bench/serve_ws_<model>"
    )
    ap.add_argument("--out", type=Path, default=OUT / "serve.json")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    from autoscope.atomic import write_json

    t0 = time.perf_counter()
    patch_px = MODELS[args.model]
    workspace = args.workspace or OUT / f"serve_ws_{args.model}"
    pcfg, built = build(workspace.resolve(), args.set, args.model, patch_px)
    build_s = time.perf_counter() - t0
    settings = json.loads(
        (Path(pcfg.paths.outputs) / "package" / str(pcfg.package.name) / "service.json").read_text()
    )
    log_path = OUT / "serve.log"
    proc, url = serve(pcfg, built["bento"], log_path)
    ready_s = time.perf_counter() - t0 - build_s
    rows = []
    try:
        for n in levels:
            rows.append(
                measured(
                    proc,
                    url,
                    ROUTES[args.input],
                    lambda n=n: load(url, n, args.seconds, args.warmup, patch_px, args.input),
                )
            )
    finally:
        stop(proc)
    out: dict[str, Any] = {
        "bento": built["bento"],
        "overrides": args.set,
        "input": args.input,
        "route": ROUTES[args.input],
        "settings": {k: settings.get(k) for k in settings if k not in ("purpose", "infer")},
        "patches_per_request": PATCHES,
        "patch_px": patch_px,
        "model": args.model,
        "seconds_per_level": args.seconds,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "build_s": round(build_s, 1),
        "serve_ready_s": round(ready_s, 1),
        "server_log": log_report(log_path),
        "table": rows,
    }
    for r in rows:
        for k in ("requests", "patches_per_s", "p50_ms", "p99_ms", "error_rate", "errors"):
            out[f"clients_{r['clients']}_{k}"] = r[k]
    by = {r["clients"]: r for r in rows}
    if 1 in by and 8 in by and by[1]["patches_per_s"]:
        out["batched_vs_single"] = round(by[8]["patches_per_s"] / by[1]["patches_per_s"], 2)
    out["targets"] = TARGETS
    out["meets_targets"] = all(
        (out.get(k) == v if v == 0 else (out.get(k) or 0) >= v) for k, v in TARGETS.items()
    )
    write_json(args.out, out)

    print(f"bento {built['bento']}  settings {out['settings']}")
    print(f"input: {args.input} ({ROUTES[args.input]}), {PATCHES} patches of {patch_px} px each")
    print(
        f"{'clients':>7} {'requests':>8} {'patches/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'srv cpu':>8} {'cli cpu':>8} {'req/call':>8}  errors"
    )
    for r in rows:
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
        print(
            f"{r['clients']:>7} {r['requests']:>8} {r['patches_per_s']:>10} "
            f"{r['p50_ms']!s:>8} {r['p99_ms']!s:>8} {r['server_cpu_ms_per_request']:>8} "
            f"{r['client_cpu_ms_per_request']:>8} {r['requests_per_model_call']!s:>8}  {errs}"
        )
        for e in r["sample_errors"][:2]:
            print(f"          e.g. {e}")
    print(
        f"batched_vs_single={out.get('batched_vs_single')} (target >= 3)  "
        f"server log: {out['server_log']}  -> {args.out}"
    )
    print(
        "(srv/cli cpu: ms of server / client CPU per request; req/call: requests merged into one "
        "model call. Clients and server share this machine's cores: read the ratio.)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
