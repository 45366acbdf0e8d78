"""Ingest in runs: images decoded and hashed in a pool of processes, one bulk insert per run, and
the same verdict for every file as one at a time (on a real SQLite database and local storage)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.migrate import upgrade
from app.core.settings import Settings
from app.images import ingest as ingest_module
from app.images.ingest import ingest
from app.images.orm import Image, Split
from app.images.verify import verify_pool
from app.projects.orm import Project
from app.storage import get_storage


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _archive() -> bytes:
    """300 images over three runs of 128, with every kind of verdict spread through them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for i in range(300):
            if i % 50 == 7:
                archive.writestr(f"corrupt-{i}.png", _png(i)[:60])  # a PNG cut short
            elif i % 50 == 8:
                archive.writestr(f"text-{i}.png", b"not an image at all")
            elif i % 50 == 9:
                archive.writestr(f"again-{i}.png", _png(i - 9))  # bytes seen earlier in the archive
            else:
                archive.writestr(f"digit-{i}.png", _png(i))
        rows = [f"digit-{i}.png,{'cat' if i == 120 else i % 3}\n" for i in range(300)]
        rows += [f"again-{i}.png,{(i - 9) % 3}\n" for i in range(300) if i % 50 == 9]
        archive.writestr("labels.csv", "".join(rows))
    return buf.getvalue()


def _upload(tmp_path: Path, processes: int, archive: bytes) -> tuple[dict, int, int]:
    settings = Settings(data_dir=tmp_path / f"p{processes}", ingest_processes=processes)
    upgrade(settings)
    with session_scope(settings) as session:
        project = Project(name="p", classes=["0", "1", "2"], settings={})
        session.add(project)
        session.flush()

        def send() -> dict:
            files = [("a.zip", io.BytesIO(archive))]
            storage = get_storage(settings)
            return ingest(
                session, storage, settings, project=project, files=files, split=Split.validation, labels=None, user=None
            ).model_dump()

        first = send()
        again = send()  # the same archive again: every image is already stored
        rows = session.scalar(select(func.count()).select_from(Image))
        objects = sum(1 for p in (settings.data_dir / "objects").rglob("*.png"))
        # Objects are spread over folders named by the hash's first byte (a million in one folder is not).
        for key, sha in session.execute(select(Image.storage_key, Image.sha256)):
            assert key == f"projects/{project.id}/images/{sha[:2]}/{sha}.png"
    assert again["accepted"] == [] and len(again["duplicates"]) == len(first["accepted"]) + len(first["duplicates"])
    return first, rows, objects


@pytest.fixture
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs of 128 images, so that 300 images cross run boundaries (and the pool's threshold).
    monkeypatch.setattr(ingest_module, "CHUNK_IMAGES", 128)


@pytest.mark.usefixtures("small_runs")
def test_a_pool_of_processes_gives_every_file_the_same_verdict(tmp_path: Path) -> None:
    archive = _archive()
    one_by_one = _upload(tmp_path, 1, archive)
    pooled = _upload(tmp_path, 2, archive)
    assert verify_pool(2).started, "the pooled upload decoded in a pool of processes"
    assert pooled[0] == one_by_one[0]
    report, rows, objects = pooled
    # 6 corrupt, 6 not images, 6 repeats; image 120 names a class the project does not have.
    assert len(report["accepted"]) == 300 - 18 - 1 == rows == objects
    reasons = {r["file"].split("-")[0]: r["reason"] for r in report["rejected"]}
    assert reasons["corrupt"].startswith("corrupt image") and reasons["text"].startswith("not an image")
    assert reasons["digit"] == "unknown label 'cat'; not a project class"
    assert len(report["duplicates"]) == 6
    # A repeat points at the image that was stored for the same bytes earlier in the archive.
    first_of = {name: image_id for name, image_id in zip(_accepted_names(report), report["accepted"], strict=True)}
    for duplicate in report["duplicates"]:
        i = int(duplicate["file"].split("-")[1].split(".")[0])
        assert duplicate["image_id"] == first_of[f"digit-{i - 9}.png"]
    # Ids follow the archive's order.
    assert report["accepted"] == sorted(report["accepted"])


def _accepted_names(report: dict) -> list[str]:
    rejected = {r["file"] for r in report["rejected"]}
    return [f"digit-{i}.png" for i in range(300) if i % 50 not in (7, 8, 9) and f"digit-{i}.png" not in rejected]
