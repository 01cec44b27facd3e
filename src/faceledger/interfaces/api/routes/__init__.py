"""The routes of the REST service, one module per concern: under ``/v1``, plus ``/healthz``, ``/readyz``, ``/metrics``.

Handlers are thin: parse, check the caller and the purpose, call the gallery (or the engine) in a worker
thread, answer. A route that answers a gallery result returns the result itself with its class as the response
model, so the body is that result's ``to_dict()`` (what ``--json`` prints) and the schema is derived from the same
class. The gallery writes each audit entry in the same transaction as its effect, with the key's owner as the
actor.
"""

from faceledger.interfaces.api.routes import (  # noqa: F401  (each module adds its routes to v1 or ops)
    audit,
    consent,
    deployments,
    engine,
    enrollment,
    erasure,
    review,
    search,
    service,
)
from faceledger.interfaces.api.routes.common import ERRORS, op, ops, v1

__all__ = ["ERRORS", "op", "ops", "v1"]
