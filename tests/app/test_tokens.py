"""Tokens end when they should: revocation, sign-out, expiry of browser sessions, and a rate limit on
failed sign-ins."""

from __future__ import annotations

import httpx

from tests.conftest import LiveService


def test_a_revoked_token_stops_working_at_once(sqlite_service: LiveService) -> None:
    user_id, token = sqlite_service.new_user("engineer")
    client = sqlite_service.client(token)
    assert client.get("/me").status_code == 200
    listed = sqlite_service.admin.get(f"/users/{user_id}/tokens").json()
    assert listed["count"] == 1 and listed["data"][0]["kind"] == "api" and "token" not in listed["data"][0]
    token_id = listed["data"][0]["id"]
    # Nobody else may revoke it; its owner or an admin may.
    _, other = sqlite_service.new_user("engineer")
    assert sqlite_service.client(other).delete(f"/tokens/{token_id}").status_code == 404
    revoked = sqlite_service.admin.delete(f"/tokens/{token_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/me").status_code == 401
    assert sqlite_service.admin.get(f"/users/{user_id}/tokens").json()["data"][0]["revoked_at"] is not None


def test_sign_out_ends_the_browser_session_but_not_the_api_token(sqlite_service: LiveService) -> None:
    _, token = sqlite_service.new_user("annotator")
    browser = httpx.Client(base_url=sqlite_service.base_url + "/api/v1")
    signed_in = browser.post("/session", json={"token": token})
    assert signed_in.status_code == 200
    session_token = signed_in.json()["token"]
    assert session_token != token
    cookie = signed_in.headers["set-cookie"]
    assert token not in cookie and session_token in cookie and "HttpOnly" in cookie
    assert browser.get("/me").status_code == 200  # the cookie authorises reads
    assert sqlite_service.client(session_token).get("/me").status_code == 200
    assert browser.delete("/session", headers={"Authorization": f"Bearer {session_token}"}).status_code == 204
    assert sqlite_service.client(session_token).get("/me").status_code == 401
    stale = httpx.Client(base_url=sqlite_service.base_url + "/api/v1", cookies={"suggestlab_session": session_token})
    assert stale.get("/me").status_code == 401
    assert sqlite_service.client(token).get("/me").status_code == 200


def test_failed_sign_ins_are_rate_limited(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import start_service

    service = start_service(
        tmp_path_factory.mktemp("ratelimit"),
        {
            "SUGGESTLAB_AUTH_FAILURE_LIMIT": "10/minute",
            "SUGGESTLAB_COOKIE_SECURE": "true",
            "SUGGESTLAB_EMBEDDED_WORKER": "false",  # sign-ins only: no worker to start
        },
        separate_worker=False,
        name="ratelimit",
    )
    try:
        # A deployment behind HTTPS marks the session cookie Secure.
        signed_in = httpx.post(service.base_url + "/api/v1/session", json={"token": service.admin_token})
        assert signed_in.status_code == 200 and "Secure" in signed_in.headers["set-cookie"]
        bad = service.client("sl_wrong")
        codes = [bad.get("/projects").status_code for _ in range(15)]
        assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
        limited = bad.get("/projects")
        assert int(limited.headers["retry-after"]) >= 1 and "too many" in limited.json()["detail"]
        assert service.client().post("/session", json={"token": "sl_wrong"}).status_code == 429
        # While the address is blocked, even a good token waits: guessing gains nothing.
        assert service.admin.get("/me").status_code == 429
    finally:
        service.stop()
