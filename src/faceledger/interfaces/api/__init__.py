"""The faceledger REST service (FastAPI): ``faceledger serve`` runs it under uvicorn.

>>> from faceledger.interfaces.api import ServiceSettings, create_app
>>> app = create_app(ServiceSettings(db="faceledger.db"))      # an ASGI app; run it with uvicorn

Routes live under ``/v1``; ``/docs`` shows them with the roles each admits. See ``docs/service.md``.
"""

from faceledger.interfaces.api.app import app_from_env, create_app
from faceledger.interfaces.api.settings import ServiceSettings

__all__ = ["ServiceSettings", "app_from_env", "create_app"]
