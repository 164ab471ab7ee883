"""One log line per refused request: BentoML logs every 4xx with its whole traceback.

BentoML's HTTP app logs each exception of an API call ("Exception on /predict [POST]") with its
traceback, bad requests (pydantic's `ValidationError`, a 4xx `BentoMLException`) included, and
so does a request its batching dispatcher dropped (503). `OneLineRefusals`, a filter on that
logger, turns those records into one line: the route, the status and what was wrong. Errors of
the service itself (5xx other than the dispatcher's drop) keep their traceback.
"""

from __future__ import annotations

import logging

LOGGER = "bentoml._internal.server.http_app"  # where `log_exception` of BentoML's app writes


def refusal(exc: BaseException) -> tuple[int, str] | None:
    """`(status, one-line reason)` of a refused request's exception, or None for a real error."""
    from bentoml.exceptions import BentoMLException, ServiceUnavailable
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or exc.title
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return 400, f"{where}: {first.get('msg', str(exc))}{more}"
    if isinstance(exc, ServiceUnavailable) and "overloaded" in str(exc):
        return 503, "dropped by the batching dispatcher: waited over its max_latency_ms"
    if isinstance(exc, BentoMLException) and exc.error_code.value < 500:
        return exc.error_code.value, str(exc)
    return None


class OneLineRefusals(logging.Filter):
    """Rewrite a refused request's exception record as one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if exc is None:
            return True
        found = refusal(exc)
        if found is None:
            return True
        status, reason = found
        route = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        method = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else ""
        one_line = " ".join(reason.split())  # pydantic messages hold newlines
        record.msg = "%s %s -> %d: %s"
        record.args = (method, route, status, one_line)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install(logger_name: str = LOGGER) -> OneLineRefusals:
    """Add the filter to BentoML's HTTP app logger (once); return it."""
    logger = logging.getLogger(logger_name)
    for f in logger.filters:
        if isinstance(f, OneLineRefusals):
            return f
    f = OneLineRefusals()
    logger.addFilter(f)
    return f
