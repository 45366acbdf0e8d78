"""`suggestlab demo`: a ready-to-label project built from bundled digits, served on one port.

The project is created and filled through the real REST routes (in-process), so the demo walks
the same code path as an admin using curl.
"""

from __future__ import annotations

import os

from app.core.settings import get_settings

DEMO_USERS = (("admin", "admin"), ("engineer", "engineer"), ("annotator", "annotator"))


def _project_name(dataset: str) -> str:
    return {"mnist5k": "MNIST demo", "digits": "Digits demo"}[dataset]


def run_demo(*, host: str, port: int, dataset: str, batch_size: int) -> int:
    os.environ.setdefault("SUGGESTLAB_DATA_DIR", "suggestlab-demo")
    get_settings.cache_clear()
    settings = get_settings()

    import warnings

    with warnings.catch_warnings():
        # Starlette's TestClient (used here in-process, not for testing) warns about its httpx backend.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
        from fastapi.testclient import TestClient

    from app.cli import run_server_with_worker, start_embedded_workers
    from app.core.db import session_scope
    from app.core.migrate import upgrade
    from app.datasets import load_dataset, split_indices, to_zip
    from app.main import create_app
    from app.users import service as users
    from app.users.orm import Role

    upgrade(settings)
    workers = start_embedded_workers(settings) if settings.runs_embedded_worker else None
    try:
        tokens: dict[str, str] = {}
        ids: dict[str, int] = {}
        with session_scope(settings) as session:
            for name, role in DEMO_USERS:
                user = users.get_by_name(session, name) or users.create(session, name=name, role=Role(role))
                tokens[name] = users.issue_token(session, user=user)
                ids[name] = user.id
        client = TestClient(create_app())
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        engineer = {"Authorization": f"Bearer {tokens['engineer']}"}
        name = _project_name(dataset)
        project = next(
            (p for p in client.get("/api/v1/projects", headers=admin).json()["data"] if p["name"] == name), None
        )
        if project is None:
            data = load_dataset(dataset)
            print(f"Building the {name!r} project from {len(data.labels)} bundled images...", flush=True)
            body = {"name": name, "classes": data.classes, "settings": {"image_size": data.image_size}}
            project = client.post("/api/v1/projects", json=body, headers=admin).json()
            for user in ("engineer", "annotator"):
                client.post(f"/api/v1/projects/{project['id']}/members", json={"user_id": ids[user]}, headers=admin)
            pool, validation, test = split_indices(len(data.labels), seed=0, validation=0.1, test=0.1)
            # Pool labels travel as ground truth (an oracle for `simulate`), never as annotations.
            for split, indices in (("pool", pool), ("validation", validation), ("test", test)):
                archive = to_zip(data, indices, with_labels=True)
                response = client.post(
                    f"/api/v1/projects/{project['id']}/images",
                    files={"files": (f"{dataset}-{split}.zip", archive, "application/zip")},
                    data={"split": split},
                    headers=admin,
                )
                response.raise_for_status()
                report = response.json()
                print(
                    f"  {split}: {len(report['accepted'])} accepted, {len(report['duplicates'])} duplicates, "
                    f"{len(report['rejected'])} rejected",
                    flush=True,
                )
        pid = project["id"]
        rounds = client.get(f"/api/v1/projects/{pid}/rounds", headers=engineer).json()["data"]
        if not rounds:
            response = client.post(
                f"/api/v1/projects/{pid}/rounds",
                json={"strategy": "auto", "batch_size": batch_size},
                headers=engineer,
            )
            response.raise_for_status()
            rounds = [response.json()]
        # The page is served at once; round 1 runs on the worker meanwhile and its progress shows on
        # the dashboard (the labelling page picks its batch up when it is ready).
        state = client.get(f"/api/v1/rounds/{rounds[-1]['id']}", headers=engineer).json()
        waiting = "" if state["status"] == "ready" else "; its batch reaches the labelling page when ready"
        print(f"  round {state['index']}: {state['status']}{waiting} (progress on the dashboard)", flush=True)
        url = f"http://{host}:{port}"
        print(f"\nSuggestLab demo is running at {url}  (project {name!r}, id {pid})")
        print("Demo users and their bearer tokens (new tokens are issued on every start):")
        for user, token in tokens.items():
            print(f"  {user:<10} {token}")
        print(
            f"\nTry:  curl -s -H 'Authorization: Bearer {tokens['annotator']}' -X POST "
            f"-H 'Content-Type: application/json' -d '{{\"limit\": 5}}' {url}/api/v1/projects/{pid}/next"
        )
        print("Press Ctrl-C to stop the server and its worker.\n", flush=True)
    except BaseException:
        if workers is not None:
            workers.stop()
        raise
    run_server_with_worker(create_app(), host, port, "warning", workers)
    return 0
