"""The web UI, served by the REST application at ``/ui``: the review queue with the evidence a reviewer needs,
subjects and consent, deployments, the ledger and the transparency report.

Server-rendered (Jinja2 templates, htmx for the parts that update in place); every asset is served from the
package, so the UI works on a site without internet access. People sign in with a user account
(``faceledger users add``) or an API key; each page checks the role on the server (see :mod:`.session`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from faceledger.interfaces.web import deployments, ledger, review, signin, subjects
from faceledger.interfaces.web.render import page
from faceledger.interfaces.web.session import SigninLimits, SignInRequired, UiError, signin_url

__all__ = ["mount_ui"]

STATIC_DIR = __path__[0] + "/static"


def mount_ui(app: FastAPI) -> None:
    """Add the UI's pages, its static files and its error pages to ``app``."""
    app.state.ui_signin_limits = SigninLimits()
    for module in (signin, review, subjects, deployments, ledger):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):  # an htmx poll after the session ended: reload into sign-in
            return Response(status_code=204, headers={"HX-Redirect": signin_url(exc.next_path)})
        return RedirectResponse(signin_url(exc.next_path), status_code=303)

    @app.exception_handler(UiError)
    async def _ui_error(request: Request, exc: UiError) -> Response:
        template = "_error.html" if request.headers.get("hx-request") else "error.html"
        return page(request, template, status=exc.status, headers=exc.headers, title=exc.title, message=exc.message)
