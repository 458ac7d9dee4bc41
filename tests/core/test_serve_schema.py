"""schemathesis against the live server's own OpenAPI document: requests generated from
the schema (and, negative, against it) never get a 500, and every answer (status, media
type, body, headers) is one the document describes."""

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
EXAMPLES = 12  # a case each, per operation and mode: the suite stays quick


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_server_keeps_to_its_own_openapi_document(server, mode):
    url, engine = server(max_tokens_limit=8)
    engine.eos_ids = set()
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models",
            "GET /v1/models/{model_id}", "GET /health", "GET /metrics"} <= paths
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to send against the schema: no body, a string path
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=url, timeout=30)
            case.validate_response(response, checks=CHECKS)

        check()
    assert engine.tokenizer is not None  # still serving after every case
