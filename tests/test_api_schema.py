"""Property-based run of the REST service against its own OpenAPI schema (schemathesis): generated requests to
every operation, with a valid admin key, never get a 500, and every response matches the documented status
codes, content types and schemas. Bounded: a few examples per operation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from faceledger.gallery import Gallery  # noqa: E402
from faceledger.interfaces.api import ServiceSettings, create_app  # noqa: E402
from test_api_helpers import PURPOSE, init_deployment, shared_engine  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = int(__import__("os").environ.get("API_SCHEMA_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db: Path = tmp_path_factory.mktemp("schema") / "schema.db"
    tokens, _ = init_deployment(db)
    with Gallery.open(db) as g:  # something for reads to find
        g.add_consent(
            "emp-1",
            actor="setup",
            collected_by="desk",
            legal_basis="explicit consent",
            purpose=PURPOSE,
            evidence_ref="form-1",
        )
    app = create_app(ServiceSettings(db=db, purge_interval=0, rate_limit=0), engine=shared_engine())
    yield app, tokens
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()


def _operations() -> list[tuple[str, str]]:
    spec = create_app(ServiceSettings(db=Path("unused.db"))).openapi()
    return sorted((path, method.upper()) for path, ops in spec["paths"].items() for method in ops)


@pytest.fixture(scope="module")
def api_schema(deployment: Any) -> Any:
    app, _ = deployment
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(("path", "method"), _operations())
def test_no_server_error_and_responses_match_the_schema(
    path: str, method: str, api_schema: Any, deployment: Any
) -> None:
    _, tokens = deployment
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        headers = {"Authorization": f"Bearer {tokens['admin']}"}
        body = case.body if isinstance(case.body, dict) else {}
        if "purpose" not in body and (case.headers or {}).get("X-Purpose") is None:
            headers["X-Purpose"] = PURPOSE
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()
