"""Schemathesis over the whole OpenAPI schema of a live service, as an admin and as an annotator:
no 5xx, every response conforms to the schema (status code documented, body and content type as
documented). Examples are bounded so the run stays CI-sized; `SUGGESTLAB_FUZZ_EXAMPLES` raises them."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import LiveService
from tests.factories import create_project, digits_zip, upload

EXAMPLES = int(os.environ.get("SUGGESTLAB_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STATUS_COUNTS: dict[str, Counter[int]] = {"admin": Counter(), "annotator": Counter()}


@pytest.fixture(scope="module")
def fuzz_service(idle_service: LiveService) -> LiveService:
    # No worker: rounds and simulations the fuzzer starts stay queued instead of training.
    return idle_service


@pytest.fixture(scope="module")
def fuzz_world(fuzz_service: LiveService) -> dict:
    annotator_id, annotator = fuzz_service.new_user("annotator", "fuzz-annotator")
    project = create_project(fuzz_service.admin, members=[annotator_id])
    upload(fuzz_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(40), with_labels=False))])
    tokens = fuzz_service.admin.get(f"/users/{annotator_id}/tokens").json()["data"]
    admin_id = fuzz_service.admin.get("/me").json()["id"]
    admin_tokens = fuzz_service.admin.get(f"/users/{admin_id}/tokens").json()["data"]
    return {
        "tokens": {"admin": fuzz_service.admin_token, "annotator": annotator},
        # Objects the fuzzer must not delete from under itself: its own tokens and memberships.
        "protected_tokens": {t["id"] for t in tokens + admin_tokens},
        "protected_users": {admin_id, annotator_id},
    }


@pytest.fixture(scope="module")
def api_schema(fuzz_service: LiveService) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_service.base_url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _destroys_the_fuzzer(case: schemathesis.Case, world: dict) -> bool:
    # Path parameters come as ints or as the strings the coverage phase sends ("1", "0.5", "null").
    params = {name: str(value) for name, value in (case.path_parameters or {}).items()}
    if case.method == "DELETE" and case.path == "/api/v1/tokens/{token_id}":
        return params.get("token_id") in {str(i) for i in world["protected_tokens"]}
    if case.method == "DELETE" and case.path.endswith("/members/{user_id}"):
        return params.get("user_id") in {str(i) for i in world["protected_users"]}
    if case.method == "PATCH" and case.path == "/api/v1/users/{user_id}":
        return params.get("user_id") in {str(i) for i in world["protected_users"]}
    return False


def _fuzz(case: schemathesis.Case, service: LiveService, world: dict, role: str) -> None:
    if _destroys_the_fuzzer(case, world):
        return
    headers = {"Authorization": f"Bearer {world['tokens'][role]}"}
    response = case.call_and_validate(base_url=service.base_url, headers=headers, checks=CHECKS)
    STATUS_COUNTS[role][response.status_code] += 1


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_admin_gets_no_server_error_and_no_schema_violation(
    case: schemathesis.Case, fuzz_service: LiveService, fuzz_world: dict
) -> None:
    _fuzz(case, fuzz_service, fuzz_world, "admin")


@schema.parametrize()
@FUZZ_SETTINGS
def test_annotator_gets_no_server_error_and_no_schema_violation(
    case: schemathesis.Case, fuzz_service: LiveService, fuzz_world: dict
) -> None:
    _fuzz(case, fuzz_service, fuzz_world, "annotator")


def test_the_fuzzers_kept_their_access_and_report_what_they_sent(fuzz_service: LiveService, fuzz_world: dict) -> None:
    # Runs after the fuzzers (file order): their tokens still work, so every case above was authorised
    # as the role it claims, and the status-code counts go to the log for the notes.
    for role, token in fuzz_world["tokens"].items():
        me = fuzz_service.client(token).get("/me")
        assert me.status_code == 200, (role, me.text)
    for role, counts in STATUS_COUNTS.items():
        print(f"schemathesis {role}: {sum(counts.values())} requests, status codes {dict(sorted(counts.items()))}")
    if not any(STATUS_COUNTS.values()):
        pytest.skip("the fuzz tests above did not run in this session")
