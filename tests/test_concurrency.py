"""20 annotators at once on one round (threads on loopback, bounded in time): no item is leased to two
people, and every acknowledged label is stored exactly once. On SQLite and on PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import numpy as np
import pytest

from tests.conftest import LiveService, wait_for_round
from tests.factories import create_project, digits_zip, upload

ANNOTATORS = 20
BATCH = 100


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_twenty_annotators_one_round(backend: str, request: pytest.FixtureRequest) -> None:
    service: LiveService = request.getfixturevalue(f"{backend}_service")
    people = [service.new_user("annotator") for _ in range(ANNOTATORS)]
    project = create_project(service.admin, members=[uid for uid, _ in people], vae_epochs=2, latent_dim=8)
    pid = project["id"]
    upload(service.admin, pid, [("pool.zip", digits_zip(np.arange(3000, 3130), with_labels=False))])
    created = service.admin.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": BATCH})
    assert wait_for_round(service.admin, created.json()["id"])["status"] == "ready"

    leased_by: dict[int, set[int]] = defaultdict(set)
    acknowledged: list[tuple[int, int, int]] = []  # (user, image, annotation id)
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 120

    def annotate(user_id: int, token: str) -> None:
        with service.client(token) as client:
            while time.monotonic() < deadline:
                batch = client.post(f"/projects/{pid}/next", json={"limit": 3})
                if batch.status_code != 200:
                    with lock:
                        errors.append(f"next {batch.status_code} {batch.text}")
                    continue
                items = batch.json()["data"]
                if not items:
                    return
                for item in items:
                    with lock:
                        leased_by[item["suggestion_id"]].add(user_id)
                    response = client.post(f"/images/{item['image_id']}/annotations", json={"label": str(user_id % 10)})
                    if response.status_code in (200, 201):
                        with lock:
                            acknowledged.append((user_id, item["image_id"], response.json()["id"]))
                    else:
                        with lock:
                            errors.append(f"label {response.status_code} {response.text}")

    threads = [threading.Thread(target=annotate, args=person) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    assert not any(t.is_alive() for t in threads), "annotators did not finish in time"
    assert errors == []
    shared = {s: users for s, users in leased_by.items() if len(users) > 1}
    assert shared == {}, f"items leased to more than one annotator: {shared}"
    assert len(leased_by) == BATCH
    assert len(acknowledged) == BATCH
    assert len({image for _, image, _ in acknowledged}) == BATCH
    stored = service.admin.get(f"/projects/{pid}/export", params={"format": "json"}).json()["data"]
    assert len(stored) == BATCH
    by_image = {row["image_id"]: row for row in stored}
    names = {uid: service.client(token).get("/me").json()["name"] for uid, token in people}
    for user_id, image_id, _ in acknowledged:
        assert by_image[image_id]["annotator"] == names[user_id]
        assert by_image[image_id]["label"] == str(user_id % 10)
    labelled = service.admin.get(f"/projects/{pid}/images", params={"labelled": True}).json()["count"]
    assert labelled == BATCH


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_double_submits_store_one_label_and_undo_removes_it(backend: str, request: pytest.FixtureRequest) -> None:
    from sqlalchemy import create_engine, text

    service: LiveService = request.getfixturevalue(f"{backend}_service")
    user_id, token = service.new_user("annotator")
    project = create_project(service.admin, members=[user_id], representation="none")
    pid = project["id"]
    upload(service.admin, pid, [("pool.zip", digits_zip(np.arange(3200, 3230), with_labels=False))])
    created = service.admin.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 6})
    assert wait_for_round(service.admin, created.json()["id"])["status"] == "ready"
    url = service.env.get("SUGGESTLAB_DATABASE_URL") or f"sqlite:///{service.data_dir / 'suggestlab.db'}"
    engine = create_engine(url)
    with service.client(token) as client:
        items = client.post(f"/projects/{pid}/next", json={"limit": 6}).json()["data"]
    try:

        def submit(image_id: int, codes: list[int], lock: threading.Lock) -> None:
            with service.client(token) as client:
                response = client.post(f"/images/{image_id}/annotations", json={"label": "3"})
                with lock:
                    codes.append(response.status_code)

        for item in items:
            codes: list[int] = []
            lock = threading.Lock()
            threads = [threading.Thread(target=submit, args=(item["image_id"], codes, lock)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert sorted(codes) == [200] * 7 + [201], codes
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT id, is_current FROM annotation WHERE image_id = :i"), {"i": item["image_id"]}
                ).all()
            assert len(rows) == 1 and rows[0][1], rows
            with service.client(token) as client:
                assert client.delete(f"/annotations/{rows[0][0]}").status_code == 200
                assert client.get(f"/images/{item['image_id']}").json()["label"] is None
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_twenty_annotators_double_submit_cross_skip_and_undo(backend: str, request: pytest.FixtureRequest) -> None:
    """A busy team: every label is sent twice at once, some items are skipped, some labels undone and
    redone, and everyone keeps trying to label or skip other people's finished items. The database
    ends with one row and one current label per image, each the last word of the person who owns it."""
    from sqlalchemy import create_engine, text

    service: LiveService = request.getfixturevalue(f"{backend}_service")
    people = [service.new_user("annotator") for _ in range(ANNOTATORS)]
    project = create_project(service.admin, members=[uid for uid, _ in people], representation="none")
    pid = project["id"]
    upload(service.admin, pid, [("pool.zip", digits_zip(np.arange(3300, 3420), with_labels=False))])
    created = service.admin.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": BATCH})
    round_id = created.json()["id"]
    assert wait_for_round(service.admin, round_id)["status"] == "ready"

    final: dict[int, tuple[int, str]] = {}  # image -> (annotator, label) as acknowledged last
    finished: list[tuple[int, int, int]] = []  # (owner, image, suggestion) of labelled or skipped items
    skipped: set[int] = set()
    cross_codes: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 150

    def double_submit(client_token: str, image_id: int, label: str) -> list[tuple[int, int | None]]:
        out: list[tuple[int, int | None]] = []

        def send() -> None:
            with service.client(client_token) as client:
                response = client.post(f"/images/{image_id}/annotations", json={"label": label})
            ok = response.status_code in (200, 201)
            with lock:
                out.append((response.status_code, response.json()["id"] if ok else None))

        pair = [threading.Thread(target=send) for _ in range(2)]
        for thread in pair:
            thread.start()
        for thread in pair:
            thread.join(60)
        return out

    def work(user_id: int, token: str) -> None:
        rng = random.Random(user_id)
        with service.client(token) as client:
            while time.monotonic() < deadline:
                batch = client.post(f"/projects/{pid}/next", json={"limit": 3})
                if batch.status_code != 200:
                    with lock:
                        errors.append(f"next {batch.status_code} {batch.text}")
                    continue
                items = batch.json()["data"]
                if not items:
                    return
                for item in items:
                    image, suggestion = item["image_id"], item["suggestion_id"]
                    # Someone else's finished item: labelling or skipping it must be refused.
                    with lock:
                        others = [f for f in finished if f[0] != user_id]
                    if others and rng.random() < 0.3:
                        _, their_image, their_suggestion = rng.choice(others)
                        tried = client.post(f"/images/{their_image}/annotations", json={"label": "9"})
                        skip_tried = client.post(f"/suggestions/{their_suggestion}/skip")
                        with lock:
                            cross_codes.extend([tried.status_code, skip_tried.status_code])
                    roll = rng.random()
                    if roll < 0.15:
                        response = client.post(f"/suggestions/{suggestion}/skip")
                        with lock:
                            if response.status_code == 200:
                                skipped.add(image)
                                finished.append((user_id, image, suggestion))
                            else:
                                errors.append(f"skip {response.status_code} {response.text}")
                        continue
                    label = str(rng.randrange(10))
                    answers = double_submit(token, image, label)
                    codes, ids = sorted(c for c, _ in answers), {i for _, i in answers}
                    if codes != [200, 201] or len(ids) != 1:
                        with lock:
                            errors.append(f"double submit {answers}")
                        continue
                    if roll > 0.9:
                        # Undo: the item goes back to pending, leased to this person, and comes back
                        # from /next to be labelled again.
                        undone = client.delete(f"/annotations/{ids.pop()}")
                        if undone.status_code != 200:
                            with lock:
                                errors.append(f"undo {undone.status_code} {undone.text}")
                        continue
                    with lock:
                        final[image] = (user_id, label)
                        finished.append((user_id, image, suggestion))

    threads = [threading.Thread(target=work, args=person) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "annotators did not finish in time"
    assert errors == []
    assert cross_codes and set(cross_codes) == {409}, sorted(set(cross_codes))
    assert len(final) + len(skipped) == BATCH and not set(final) & skipped

    url = service.env.get("SUGGESTLAB_DATABASE_URL") or f"sqlite:///{service.data_dir / 'suggestlab.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT a.image_id, a.annotator_id, a.label, a.is_current FROM annotation a "
                    "JOIN image i ON i.id = a.image_id WHERE i.project_id = :p"
                ),
                {"p": pid},
            ).all()
            statuses = dict(
                conn.execute(
                    text("SELECT status, count(*) FROM suggestion WHERE round_id = :r GROUP BY status"), {"r": round_id}
                ).all()
            )
    finally:
        engine.dispose()
    # One row per labelled image (double submits and undos left no extra row), every one current,
    # and each the label its owner was last acknowledged for.
    assert sorted(r[0] for r in rows) == sorted(final)
    assert all(r[3] for r in rows)
    assert {r[0]: (r[1], r[2]) for r in rows} == final
    assert statuses == {"labelled": len(final), "skipped": len(skipped)}
