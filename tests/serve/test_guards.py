"""The service's ASGI queue bound and its one-line refusal logs (no server: plain ASGI calls)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest

from autoscope.serve.guard import PredictQueue
from autoscope.serve.logs import OneLineRefusals, install


async def _call(app: Any, path: str = "/predict") -> tuple[int, dict[str, str], dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    await app({"type": "http", "method": "POST", "path": path}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], headers, json.loads(body or b"null")


def _app(gate: asyncio.Event | None = None, status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if gate is not None:
            await gate.wait()
        body = json.dumps({"error": "An unexpected error has occurred"}).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def test_queue_answers_past_its_limit_with_the_reason() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        guard = PredictQueue(_app(gate), limit=3, max_latency_ms=500)
        held = [asyncio.create_task(_call(guard)) for _ in range(3)]
        await asyncio.sleep(0)  # the three are inside, waiting
        assert guard.held == 3
        status, headers, body = await _call(guard)
        assert status == 503 and headers["retry-after"] == "1"
        assert "queue full" in body["error"] and "package.queue_limit=3" in body["error"]
        other = await _call(PredictQueue(_app(), limit=0), path="/card")
        assert other[0] == 200  # other routes pass, unbounded
        gate.set()
        assert [s for s, _, _ in await asyncio.gather(*held)] == [200, 200, 200]
        assert guard.held == 0
        assert (await _call(guard))[0] == 200  # room again

    asyncio.run(scenario())


def test_dispatcher_drop_says_which_budget() -> None:
    status, headers, body = asyncio.run(_call(PredictQueue(_app(status=503), max_latency_ms=750)))
    assert status == 503 and headers["retry-after"] == "1"
    assert "750 ms" in body["error"] and "max_latency_ms" in body["error"]
    status, _, body = asyncio.run(_call(PredictQueue(_app(status=500))))
    assert status == 500 and body == {"error": "An unexpected error has occurred"}


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "bentoml._internal.server.http_app",
        logging.ERROR,
        __file__,
        1,
        "Exception on %s [%s]",
        ("/predict", "POST"),
        info,
    )


@pytest.mark.parametrize("kind", ["validation", "invalid_argument", "dropped"])
def test_refusals_log_one_line(kind: str) -> None:
    from bentoml.exceptions import InvalidArgument, ServiceUnavailable
    from pydantic import BaseModel, field_validator

    class M(BaseModel):
        x: int

        @field_validator("x")
        @classmethod
        def small(cls, v: int) -> int:
            raise ValueError("x must be small\nreally")

    if kind == "validation":
        try:
            M(x=1)
        except Exception as e:
            exc: BaseException = e
    elif kind == "invalid_argument":
        exc = InvalidArgument("unknown model 'nope'")
    else:
        exc = ServiceUnavailable("process is overloaded")
    record = _record(exc)
    assert OneLineRefusals().filter(record)
    line = logging.Formatter().format(record)
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("POST /predict -> ")
    want = {"validation": "400: x: ", "invalid_argument": "400: unknown", "dropped": "503: "}
    assert want[kind] in line and record.levelno == logging.WARNING


def test_errors_of_the_service_keep_their_traceback() -> None:
    record = _record(RuntimeError("boom"))
    assert OneLineRefusals().filter(record)
    assert "Traceback" in logging.Formatter().format(record)
    logger = logging.getLogger("autoscope.test.refusals")
    assert install(logger.name) is install(logger.name)  # once
    assert sum(isinstance(f, OneLineRefusals) for f in logger.filters) == 1
