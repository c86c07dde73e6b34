"""Schemathesis over the OpenAPI schema, bounded: every operation gets a few generated requests (valid
and invalid, on existing and generated ids), sent as each role; none may answer 5xx, and every
documented answer must match its response schema. bench/fuzz.py runs the same at 10,000 per role."""

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from tests.api_fuzz import ROLES, cases_generate, cases_send, schema_load, world_build

pytestmark = pytest.mark.django_db


@pytest.fixture
def keep_the_test_connection():
    """Requests go straight to the WSGI app: keep Django from closing the test's connection after each
    (as its own test client does), which would end the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_generated_requests_get_no_server_error_and_the_documented_answers(keep_the_test_connection):
    world = world_build()
    schema = schema_load(world.tokens["manager"])
    cases = cases_generate(schema, ids=world.ids, per_operation=8, seed=7)
    assert len(cases) > 150

    for role in ROLES:
        result = cases_send(cases, token=world.tokens[role])
        assert not result.server_errors, f"as the {role}:\n" + "\n".join(result.examples)
        assert not result.schema_violations, f"as the {role}:\n" + "\n".join(result.examples)
