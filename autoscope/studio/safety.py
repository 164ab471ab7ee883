"""The Studio's guards: a per-session CSRF token and the folders files may be served from."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request

CSRF_COOKIE = "autoscope_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def new_token() -> str:
    """A fresh random session token."""
    return secrets.token_urlsafe(24)


def session_token(request: Request) -> str:
    """The session's token (its cookie), or a new one the page sets as the cookie."""
    return request.cookies.get(CSRF_COOKIE) or new_token()


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse (403) a state-changing request whose token is missing or not the session's."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    sent = sent or request.headers.get(CSRF_HEADER) or ""
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")


def inside(path: str | os.PathLike[str], roots: list[Path]) -> Path:
    """The resolved `path` when it lies under one of `roots`, else 403 (nothing is read)."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(Path(os.path.realpath(root))):
            return real
    raise HTTPException(403, "outside the project's outputs")
