"""Signing in and out of the web UI: with a user account (name and password) or an API key token."""

from __future__ import annotations

import functools
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from faceledger.gallery.accounts import DEFAULT_SESSION_HOURS
from faceledger.interfaces.api.runtime import retry_after
from faceledger.interfaces.web.render import page
from faceledger.interfaces.web.session import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    UiError,
    Viewer,
    home_for,
    new_form_token,
    run,
    safe_next,
    state_of,
    viewer,
)

router = APIRouter()


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _signin_page(request: Request, *, status: int = 200, error: str = "", next_path: str = "/ui", name: str = "",
                 headers: dict[str, str] | None = None) -> Response:  # fmt: skip
    token = new_form_token()
    response = page(
        request,
        "signin.html",
        status=status,
        headers=headers,
        form_token=token,
        error=error,
        next_path=safe_next(next_path),
        name=name,
        signed_out=request.query_params.get("signed_out") == "1",
    )
    response.set_cookie(
        SIGNIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path=COOKIE_PATH, max_age=3600
    )
    return response


@router.get("/ui")
async def home(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """The first page the signed-in role may open."""
    return RedirectResponse(home_for(who.principal.role), status_code=303)


@router.get("/ui/signin")
async def signin_form(request: Request, next: str = "/ui") -> Response:
    """The sign-in page."""
    return _signin_page(request, next_path=next)


@router.post("/ui/signin")
async def signin(
    request: Request,
    csrf: Annotated[str, Form()] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    token: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/ui",
) -> Response:
    """Check the credentials (rate-limited, failures on the ledger) and open a session."""
    state = state_of(request)
    address = _address(request)
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    if not csrf or not cookie or not hmac.compare_digest(csrf, cookie):
        return _signin_page(
            request, status=403, next_path=next, name=name,
            error="The sign-in form expired or did not come from this site. Please sign in again.",
        )  # fmt: skip
    tried = "api key" if token.strip() else name.strip()
    limits = request.app.state.ui_signin_limits
    wait = limits.wait(address, "" if token.strip() else name.strip())
    if wait is not None:
        await run(state, state.gallery.signin_refused, tried=tried, reason="too many attempts", address=address)
        return _signin_page(
            request, status=429, next_path=next, name=name, headers={"Retry-After": retry_after(wait)},
            error=f"Too many sign-in attempts. Wait {retry_after(wait)} seconds and try again.",
        )  # fmt: skip
    credentials: dict[str, Any] = (
        {"token": token.strip()} if token.strip() else {"name": name.strip(), "password": password}
    )
    try:
        signed = await run(state, functools.partial(state.gallery.sign_in, address=address, **credentials))
    except UiError as exc:
        if exc.status != 401:
            raise
        return _signin_page(
            request, status=401, next_path=next, name=name,
            error="Sign-in failed: check the name and password, or the API key.",
        )  # fmt: skip
    response = RedirectResponse(next if safe_next(next) != "/ui" else home_for(signed.principal.role), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, signed.token, httponly=True, samesite="strict", secure=_secure(request), path=COOKIE_PATH,
        max_age=int(DEFAULT_SESSION_HOURS * 3600),
    )  # fmt: skip
    response.delete_cookie(SIGNIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/ui/signout")
async def signout(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> Response:
    """End the session (the form's CSRF token is checked, so another site cannot sign you out)."""
    await who.check_csrf()
    await who.call(who.gallery.sign_out, request.cookies.get(SESSION_COOKIE, ""), address=_address(request))
    response = RedirectResponse("/ui/signin?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response
