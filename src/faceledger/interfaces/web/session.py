"""Who is looking: the session cookie, the role each page needs, the CSRF check of every form, and the limit on
sign-in attempts. Every check is made on the server, at every request.

The session cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it) and Secure
when the UI is served over HTTPS. Forms carry the session's CSRF token in a hidden ``csrf`` field (htmx requests
in an ``X-CSRF-Token`` header); the sign-in form, before any session exists, uses a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request

from faceledger.gallery import Gallery
from faceledger.gallery.accounts import WebPrincipal
from faceledger.interfaces.api.errors import ApiError
from faceledger.interfaces.api.runtime import RateLimiter, ServiceState

T = TypeVar("T")

SESSION_COOKIE = "faceledger_session"
SIGNIN_COOKIE = "faceledger_signin"
COOKIE_PATH = "/ui"

REVIEW_ROLES = ("admin", "reviewer")
SUBJECT_ROLES = ("admin", "enroller")
DEPLOYMENT_ROLES = ("admin", "operator", "auditor")
DEPLOYMENT_ADMIN_ROLES = ("admin",)
LEDGER_ROLES = ("admin", "auditor")

PAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/ui/review", "Review", REVIEW_ROLES),
    ("/ui/subjects", "Subjects & consent", SUBJECT_ROLES),
    ("/ui/deployments", "Deployments", DEPLOYMENT_ROLES),
    ("/ui/ledger", "Ledger", LEDGER_ROLES),
    ("/ui/report", "Transparency report", LEDGER_ROLES),
)
"""The navigation: path, title, and the roles that may open it."""


class UiError(Exception):
    """A page that cannot be shown or a form that was refused: rendered as a page with ``message``."""

    def __init__(
        self, status: int, message: str, *, title: str = "Not possible", headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title
        self.headers = headers or {}


class SignInRequired(Exception):
    """No valid session: the browser is sent to the sign-in page (and back afterwards)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def state_of(request: Request) -> ServiceState:
    """The service of this process, or a 503 page while it starts or stops."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise UiError(503, "The service is starting or stopping; reload in a few seconds.", title="Starting")
    return state


async def run(state: ServiceState, func: Callable[..., T], *args: Any, model: bool = False, **kwargs: Any) -> T:
    """Run a blocking gallery call off the event loop; faceledger's errors become :class:`UiError` pages with
    the same status and message the API gives."""
    try:
        return await state.run(func, *args, model=model, **kwargs)
    except ApiError as exc:
        raise UiError(exc.status, exc.message, headers=exc.headers) from None


@dataclass
class Viewer:
    """A signed-in person on one request: their principal and the service."""

    request: Request
    state: ServiceState
    principal: WebPrincipal

    @property
    def gallery(self) -> Gallery:
        """The gallery of this process."""
        return self.state.gallery

    @property
    def actor(self) -> str:
        """The name the ledger records for this person."""
        return self.principal.actor

    def may(self, roles: tuple[str, ...]) -> bool:
        """Whether this person's role is one of ``roles``."""
        return self.principal.role in roles

    def require(self, roles: tuple[str, ...], what: str) -> None:
        """Refuse (403) unless this person's role is one of ``roles``."""
        if not self.may(roles):
            raise UiError(
                403,
                f"Your role ({self.principal.role}) may not {what}. It needs one of: {', '.join(roles)}.",
                title="Not allowed",
            )

    async def call(self, func: Callable[..., T], *args: Any, model: bool = False, **kwargs: Any) -> T:
        """:func:`run` on this viewer's service."""
        return await run(self.state, func, *args, model=model, **kwargs)

    async def check_csrf(self) -> dict[str, Any]:
        """The submitted form, after checking its CSRF token against the session's; 403 otherwise."""
        form = await self.request.form()
        sent = str(form.get("csrf") or self.request.headers.get("x-csrf-token") or "")
        if not sent or not hmac.compare_digest(sent, self.principal.csrf):
            raise UiError(
                403,
                "This form did not come from your current session (the CSRF check failed). Reload the page and "
                "submit it again.",
                title="Form refused",
            )
        return dict(form.multi_items())


async def viewer(request: Request) -> Viewer:
    """The signed-in person of this request; :class:`SignInRequired` when there is none."""
    state = state_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    principal = await run(state, state.gallery.session_principal, token) if token else None
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return Viewer(request, state, principal)


def form_text(form: dict[str, Any], name: str) -> str:
    """A text field of a submitted form, stripped ("" when absent or a file)."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def signin_url(next_path: str) -> str:
    """The sign-in page, returning to ``next_path`` afterwards."""
    return "/ui/signin?next=" + quote(next_path, safe="/")


def safe_next(value: str | None) -> str:
    """A path inside the UI to go to after signing in (never another site)."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"


def home_for(role: str) -> str:
    """The first page a role may open."""
    for path, _, roles in PAGES:
        if role in roles:
            return path
    return "/ui/signin"


def new_form_token() -> str:
    """A random token for the sign-in form's double-submit cookie."""
    return secrets.token_urlsafe(32)


class SigninLimits:
    """Sign-in attempts per client address and per name tried, per minute (token buckets, in this process)."""

    def __init__(self, per_address: int = 10, per_name: int = 5) -> None:
        self.by_address = RateLimiter(per_address)
        self.by_name = RateLimiter(per_name)

    def wait(self, address: str, name: str) -> float | None:
        """None when this attempt may go ahead, else the seconds to wait."""
        waits = [self.by_address.acquire(address)]
        if name:
            waits.append(self.by_name.acquire(name.lower()))
        pending = [w for w in waits if w is not None]
        return max(pending) if pending else None
