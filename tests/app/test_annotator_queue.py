"""The API process's queue for annotator calls: at most `limit` of them run at once, in the order they
came, while every other route goes straight through."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from app.api.guard import AnnotatorQueue


class Recorder:
    """A downstream ASGI app whose requests take a while: it records how many run at once and the
    order they started in."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append(scope["path"])
        try:
            await asyncio.sleep(0.02)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
        finally:
            self.running -= 1


async def _call(app: AnnotatorQueue, method: str, path: str) -> int:
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    return statuses[0]


def _burst(limit: int, calls: list[tuple[str, str]]) -> tuple[Recorder, list[int]]:
    recorder = Recorder()
    app = AnnotatorQueue(recorder, limit=limit)

    async def run() -> list[int]:
        tasks = []
        for method, path in calls:
            tasks.append(asyncio.create_task(_call(app, method, path)))
            await asyncio.sleep(0)  # they arrive in this order
        return await asyncio.gather(*tasks)

    return recorder, asyncio.run(run())


def test_annotator_calls_run_a_few_at_a_time_in_arrival_order() -> None:
    calls = [("POST", f"/api/v1/projects/{i}/next") for i in range(6)]
    calls += [("POST", f"/api/v1/images/{i}/annotations") for i in range(6)]
    recorder, statuses = _burst(2, calls)
    assert statuses == [200] * 12
    assert recorder.most == 2
    assert recorder.started == [path for _, path in calls]


def test_other_routes_are_not_queued_and_a_limit_of_zero_queues_nothing() -> None:
    others = [
        ("POST", "/api/v1/projects/1/images"),  # an upload
        ("GET", "/api/v1/projects/1/export"),
        ("GET", "/api/v1/projects/1/next"),  # not the leasing call
        ("POST", "/api/v1/projects/1/next/extra"),
    ]
    recorder, statuses = _burst(1, others * 3)
    assert statuses == [200] * 12 and recorder.most == 12
    recorder, _ = _burst(0, [("POST", "/api/v1/projects/1/next")] * 8)
    assert recorder.most == 8


def test_one_queue_serves_an_app_run_by_two_event_loops_in_turn() -> None:
    recorder = Recorder()
    app = AnnotatorQueue(recorder, limit=1)

    async def burst() -> list[int]:
        return await asyncio.gather(*(_call(app, "POST", "/api/v1/projects/1/next") for _ in range(3)))

    # Each run makes calls wait on the queue, in its own event loop.
    assert asyncio.run(burst()) == [200] * 3
    assert asyncio.run(burst()) == [200] * 3
    assert recorder.most == 1
