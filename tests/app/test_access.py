"""Authentication, roles and project membership: 401 / 403 / 404 exactly, and no leaks."""

from __future__ import annotations

import pytest

from tests.conftest import LiveService
from tests.factories import create_project, png, upload


@pytest.fixture(scope="module")
def world(sqlite_service: LiveService) -> dict:
    service = sqlite_service
    eng_id, eng = service.new_user("engineer")
    ann_id, ann = service.new_user("annotator")
    outsider_id, outsider = service.new_user("engineer")
    mine = create_project(service.admin, members=[eng_id, ann_id], classes=["cat", "dog"])
    other = create_project(service.admin, members=[outsider_id], classes=["cat", "dog"])
    other_image = upload(service.admin, other["id"], [("o.png", png())]).json()["accepted"][0]
    return {"eng": eng, "ann": ann, "outsider": outsider, "mine": mine, "other": other, "other_image": other_image}


def test_missing_and_bad_tokens_are_401(sqlite_service: LiveService) -> None:
    anonymous = sqlite_service.client()
    response = anonymous.get("/projects")
    assert response.status_code == 401
    assert response.json()["detail"] == "missing or invalid bearer token"
    assert response.headers["www-authenticate"] == "Bearer"
    assert sqlite_service.client("sl_not-a-token").get("/projects").status_code == 401


def test_roles_are_enforced(sqlite_service: LiveService, world: dict) -> None:
    engineer, annotator = sqlite_service.client(world["eng"]), sqlite_service.client(world["ann"])
    assert engineer.post("/users", json={"name": "x", "role": "admin"}).status_code == 403
    assert annotator.post("/projects", json={"name": "p", "classes": ["a", "b"]}).status_code == 403
    pid = world["mine"]["id"]
    forbidden = annotator.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 5})
    assert forbidden.status_code == 403 and "engineer" in forbidden.json()["detail"]
    assert annotator.get(f"/projects/{pid}/export").status_code == 403
    assert engineer.post(f"/projects/{pid}/images", files=[("files", ("a.png", png()))]).status_code == 403


def test_members_see_only_their_projects(sqlite_service: LiveService, world: dict) -> None:
    engineer = sqlite_service.client(world["eng"])
    ids = {p["id"] for p in engineer.get("/projects").json()["data"]}
    assert ids == {world["mine"]["id"]}
    admin_ids = {p["id"] for p in sqlite_service.admin.get("/projects").json()["data"]}
    assert {world["mine"]["id"], world["other"]["id"]} <= admin_ids


def test_other_projects_rows_are_404(sqlite_service: LiveService, world: dict) -> None:
    engineer = sqlite_service.client(world["eng"])
    annotator = sqlite_service.client(world["ann"])
    other, image = world["other"]["id"], world["other_image"]
    assert engineer.get(f"/projects/{other}").status_code == 404
    assert engineer.get(f"/projects/{other}/images").status_code == 404
    assert engineer.post(f"/projects/{other}/rounds", json={"strategy": "random"}).status_code == 404
    # Another project's image id: 404, and the same for a role that could not act anyway.
    assert engineer.get(f"/images/{image}/file").status_code == 404
    assert annotator.post(f"/images/{image}/annotations", json={"label": "cat"}).status_code == 404
    assert annotator.get("/images/999999/thumbnail").status_code == 404
    assert sqlite_service.admin.get(f"/images/{image}/file").status_code == 200


def test_users_and_tokens(sqlite_service: LiveService) -> None:
    admin = sqlite_service.admin
    user = admin.post("/users", json={"name": "token-check", "role": "annotator"}).json()
    assert admin.post("/users", json={"name": "token-check", "role": "annotator"}).status_code == 409
    assert admin.post("/users", json={"name": "bad role", "role": "boss"}).status_code == 422
    first = admin.post(f"/users/{user['id']}/tokens").json()["token"]
    second = admin.post(f"/users/{user['id']}/tokens").json()["token"]
    assert first != second
    for token in (first, second):
        assert sqlite_service.client(token).get("/me").json()["name"] == "token-check"
    assert admin.post("/users/999999/tokens").status_code == 404


def test_project_validation(sqlite_service: LiveService) -> None:
    admin = sqlite_service.admin
    assert admin.post("/projects", json={"name": "dup-classes", "classes": ["a", "a"]}).status_code == 422
    assert admin.post("/projects", json={"name": "one-class", "classes": ["a"]}).status_code == 422
    bad_setting = admin.post("/projects", json={"name": "typo", "classes": ["a", "b"], "settings": {"imagesize": 3}})
    assert bad_setting.status_code == 422
    created = create_project(admin, classes=["a", "b"])
    again = admin.post("/projects", json={"name": created["name"], "classes": ["a", "b"]})
    assert again.status_code == 409
    assert admin.post(f"/projects/{created['id']}/members", json={"user_id": 999999}).status_code == 404


def test_admins_list_and_remove_members(sqlite_service: LiveService) -> None:
    user_id, token = sqlite_service.new_user("annotator")
    project = create_project(sqlite_service.admin, members=[user_id])
    pid = project["id"]
    again = sqlite_service.admin.post(f"/projects/{pid}/members", json={"user_id": user_id})
    assert again.status_code == 200 and again.json()["added"] is False
    listed = sqlite_service.admin.get(f"/projects/{pid}/members").json()
    assert [(m["user_id"], m["role"]) for m in listed["data"]] == [(user_id, "annotator")]
    assert sqlite_service.client(token).get(f"/projects/{pid}/members").status_code == 403
    assert sqlite_service.client(token).get(f"/projects/{pid}").status_code == 200
    assert sqlite_service.admin.delete(f"/projects/{pid}/members/{user_id}").status_code == 204
    assert sqlite_service.client(token).get(f"/projects/{pid}").status_code == 404
    assert sqlite_service.admin.delete(f"/projects/{pid}/members/{user_id}").status_code == 404
