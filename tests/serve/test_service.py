"""`autoscope package` builds a bento; `bentoml serve` of it answers a real client."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from autoscope.errors import UserError


def _local_model(packaged: dict[str, Any]) -> Any:
    from autoscope.models.classifier import PatchClassifier

    card = Path(packaged["archived"]["card"]).parent
    return PatchClassifier.from_files(card / "spec.json", card / "model.pt")


def test_bento_ships_source_pinned_packages_models_and_dockerfile(packaged: dict) -> None:
    bento = Path(packaged["built"]["path"])
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert [m["tag"] for m in info["models"]] == ["demo-tissue_classification:v1"]
    settings = info["args"]["config"]
    assert settings["max_batch_size"] == 16 and settings["models"] == [
        m["tag"] for m in info["models"]
    ]
    assert (bento / "src" / "autoscope" / "serve" / "service.py").is_file()
    assert (bento / "src" / "autoscope" / "infer" / "engine.py").is_file()
    assert not list((bento / "src").rglob("*.pyc"))
    reqs = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1+cpu" in reqs and "openslide-bin==4.0.1.2" in reqs
    assert all("==" in r for r in reqs if r.strip() and not r.startswith(("#", "--")))
    docker = (bento / "env" / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11" in docker and "requirements.txt" in docker
    assert packaged["built"]["next"] == f"bentoml containerize {packaged['built']['bento']}"
    saved = json.loads(
        (
            Path(packaged["cfg"].paths.outputs) / "package" / "autoscope-demo" / "service.json"
        ).read_text()
    )
    assert saved == settings


def test_predict_batches_match_the_local_model(packaged: dict, server: str) -> None:
    import bentoml
    import torch

    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (1, 5, 16, 3, 7, 2)]
    model = _local_model(packaged)
    with bentoml.SyncHTTPClient(server, timeout=60) as client:
        with ThreadPoolExecutor(6) as pool:  # concurrent requests: merged by adaptive batching
            got = list(pool.map(lambda b: client.predict(patches=b), batches))
        card = client.card()
    assert card["bentoml_tag"] == "demo-tissue_classification:v1"
    for b, p in zip(batches, got, strict=True):
        with torch.inference_mode():
            want = torch.softmax(model(torch.from_numpy(b)), 1).numpy()
        assert p.shape == (len(b), 2)
        np.testing.assert_allclose(p, want, atol=1e-5)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"patches": "abc"}',
        b'{"patches": [[1, 2]]}',
        b'{"patches": [[[[300, 0, 0]]]]}',
        json.dumps({"patches": np.zeros((2, 31, 32, 3), int).tolist()}).encode(),
        json.dumps({"patches": np.zeros((17, 32, 32, 3), int).tolist()}).encode(),
    ],
)
def test_malformed_predict_is_a_4xx(server: str, body: bytes) -> None:
    import httpx

    r = httpx.post(f"{server}/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text


def test_slide_submit_refuses_bad_paths(packaged: dict, server: str) -> None:
    import httpx

    def submit(body: Any) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(
            f"{server}/slide/submit", content=raw, headers={"content-type": "application/json"}
        )

    assert submit({"path": str(packaged["outside"])}).status_code == 403
    data = Path(packaged["cfg"].paths.data)
    assert (
        submit(
            {"path": str(data / "slides" / ".." / ".." / ".." / "elsewhere" / "secret.tif")}
        ).status_code
        == 403
    )
    assert submit({"path": str(data / "slides" / "missing.tif")}).status_code == 404
    assert submit(b"{not json").status_code == 400
    assert submit({"slide": "x"}).status_code == 400
    assert submit([1, 2]).status_code == 400


def _run_task(server: str, body: dict, timeout_s: float = 120) -> Any:
    """Submit a slide job over HTTP, wait for it, return the `get` response.

    (BentoML 1.4.40's `SyncHTTPClient.<task>.submit` fails on a missing `_opened_files`.)
    """
    import httpx

    r = httpx.post(f"{server}/slide/submit", json=body)
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        status = httpx.get(f"{server}/slide/status", params={"task_id": task_id}).json()
        if status["status"] != "in_progress":
            break
        time.sleep(0.1)
    return httpx.get(f"{server}/slide/get", params={"task_id": task_id}, timeout=30)


def test_slide_job_runs_the_engine(packaged: dict, server: str) -> None:
    import httpx

    t0 = time.perf_counter()
    r = _run_task(server, {"path": str(packaged["slide"])})
    packaged["slide_job_s"] = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    summary = r.json()
    out = Path(packaged["cfg"].package.jobs_dir) / "demo-tissue_classification-v1" / "job_000"
    assert json.loads((out / "summary.json").read_text()) == summary
    broken = _run_task(server, {"path": str(packaged["broken"])})
    assert broken.status_code == 422 and "broken.svs" in broken.text
    for model in ("nope", 3):
        bad = httpx.post(
            f"{server}/slide/submit", json={"path": str(packaged["slide"]), "model": model}
        )
        assert bad.status_code == 400 and "unknown model" in bad.text


def test_timings_report(packaged: dict, server: str, tmp_path: Path) -> None:
    """Print archive/package/serve timings and a warm slide job against a direct engine call."""
    from autoscope.archive.card import read_card
    from autoscope.infer.engine import infer_slide
    from autoscope.infer.spec import InferSpec

    card = read_card(Path(packaged["archived"]["card"]))
    spec = InferSpec.from_card(card, {"progress": False, "batch_size": 64, "workers": 2})
    model = _local_model(packaged)
    for _ in range(2):  # the second call is warm, like the served model
        t0 = time.perf_counter()
        direct = infer_slide(model, packaged["slide"], tmp_path, spec)
        direct_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    job = _run_task(server, {"path": str(packaged["slide"])}).json()
    job_s = time.perf_counter() - t0
    assert job["tiles"] == direct["tiles"]
    times = {k: round(v, 2) for k, v in packaged.items() if k.endswith("_s")}
    times |= {"warm_slide_job_s": round(job_s, 2), "direct_infer_slide_s": round(direct_s, 2)}
    print(f"\nserve timings (s): {times}; direct/job speed ratio {direct_s / job_s:.2f}")


def test_package_refuses_unknown_model(packaged: dict) -> None:
    from autoscope.config import compose
    from autoscope.stages import package

    ws = packaged["cfg"].paths.workspace
    cfg = compose(
        "demo",
        [f"paths.workspace={ws}", "package.models=[{name: nope, alias: champion}]"],
        stage="package",
    )
    with pytest.raises(UserError, match=r"package.models\[0\]: .*nope"):
        package.run(cfg)
    cfg = compose(
        "demo", [f"paths.workspace={ws}", "package.models.0.alias=staging"], stage="package"
    )
    with pytest.raises(UserError, match="alias 'staging'"):
        package.run(cfg)


def test_package_again_reuses_the_bento(packaged: dict) -> None:
    from autoscope.stages import package

    assert packaged["built"]["built"] is True
    first = package.run(packaged["cfg"])  # (rebuilt if the source changed since the fixture)
    again = package.run(packaged["cfg"])
    assert again["bento"] == first["bento"] and again["built"] is False


def _log_after(log: Path, start: int, needle: str) -> str:
    """The server log written after byte `start`, once it holds `needle` (waits for the line)."""
    for _ in range(200):
        text = log.read_bytes()[start:].decode(errors="replace")
        if needle in text:
            return text
        time.sleep(0.05)
    return log.read_bytes()[start:].decode(errors="replace")


def test_concurrent_clients_queue_and_refusals_log_one_line(packaged: dict, server: str) -> None:
    """8 clients at once all get their answers (no 5xx); a bad request logs one line."""
    import httpx

    rng = np.random.default_rng(1)
    body = json.dumps({"patches": rng.integers(0, 256, (16, 32, 32, 3)).tolist()}).encode()
    headers = {"content-type": "application/json"}

    def client(_: int) -> list[int]:
        got = []
        with httpx.Client(timeout=120) as http:
            for _ in range(6):
                r = http.post(f"{server}/predict", content=body, headers=headers)
                got.append(r.status_code if r.status_code != 200 or len(r.json()) == 16 else -1)
        return got

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for got in pool.map(client, range(8)) for s in got]
    assert statuses == [200] * 48

    log = packaged["serve_log"]
    start = log.stat().st_size
    bad = json.dumps({"patches": np.zeros((2, 31, 32, 3), int).tolist()}).encode()
    r = httpx.post(f"{server}/predict", content=bad, headers=headers)
    assert r.status_code == 400 and "shape" in r.text
    text = _log_after(log, start, "-> 400")
    refusals = [ln for ln in text.splitlines() if "/predict -> 400" in ln]
    assert len(refusals) == 1 and "must have shape" in refusals[0], text
    assert "Traceback" not in text and "validation error" not in text.replace(refusals[0], "")


def _npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_predict_npy_matches_the_json_api_and_refuses_bad_files(
    packaged: dict, server: str
) -> None:
    """An uploaded `.npy` gets the JSON API's answers; a bad one a 4xx and one log line."""
    import httpx

    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (1, 16, 5, 9)]

    def npy_call(b: np.ndarray) -> httpx.Response:
        files = {"patches": ("patches.npy", _npy(b), "application/x-npy")}
        return httpx.post(f"{server}/predict_npy", files=files, timeout=60)

    with ThreadPoolExecutor(4) as pool:  # concurrent: merged by the API's own batching
        got = list(pool.map(npy_call, batches))
    for b, r in zip(batches, got, strict=True):
        assert r.status_code == 200, r.text
        want = httpx.post(f"{server}/predict", json={"patches": b.tolist()}, timeout=60)
        assert want.status_code == 200, want.text
        np.testing.assert_allclose(np.array(r.json()), np.array(want.json()), atol=1e-6)
        assert np.array(r.json()).shape == (len(b), 2)

    log = packaged["serve_log"]
    bad_files = [
        _npy(np.zeros((2, 31, 32, 3), np.uint8)),  # wrong shape
        _npy(np.zeros((17, 32, 32, 3), np.uint8)),  # over max_batch_size
        _npy(np.full((1, 32, 32, 3), 300, np.int32)),  # not 0-255
        _npy(np.zeros((1, 32, 32, 3), np.float32)),  # not integers
        _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True),  # a pickle: never loaded
        b"\x93NUMPY not really",
        b"",
    ]
    for raw in bad_files:
        start = log.stat().st_size
        files = {"patches": ("patches.npy", raw, "application/x-npy")}
        r = httpx.post(f"{server}/predict_npy", files=files, timeout=60)
        assert 400 <= r.status_code < 500, r.text
        text = _log_after(log, start, "/predict_npy -> 4")
        refusals = [ln for ln in text.splitlines() if "/predict_npy -> 4" in ln]
        assert len(refusals) == 1 and "Traceback" not in text, text
    raw_body = httpx.post(
        f"{server}/predict_npy",
        content=_npy(batches[0]),
        headers={"content-type": "application/octet-stream"},
    )
    assert 400 <= raw_body.status_code < 500, raw_body.text
