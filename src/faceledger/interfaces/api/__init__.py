"""The faceledger REST service (FastAPI): ``faceledger serve`` runs it under uvicorn.

>>> from faceledger.interfaces.api import ServiceSettings, create_app
>>> app = create_app(ServiceSettings(db="faceledger.db"))      # an ASGI app; run it with uvicorn

Routes live under ``/v1``; ``/docs`` shows them with the roles each admits. See ``docs/service.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceledger.interfaces.api.settings import ServiceSettings

if TYPE_CHECKING:
    from faceledger.interfaces.api.app import app_from_env, create_app

__all__ = ["ServiceSettings", "app_from_env", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI and the routes load when an app is made, not when the command line starts (`faceledger --version`)
    if name in ("app_from_env", "create_app"):
        from faceledger.interfaces.api import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
