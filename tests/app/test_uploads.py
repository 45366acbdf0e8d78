"""Uploads: per-file verdicts, hostile archives, limits, and nothing half-written."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.conftest import LiveService
from tests.factories import create_project, jpeg, png, upload, zip_of, zip_with_symlink


@pytest.fixture
def project(sqlite_service: LiveService) -> dict:
    return create_project(sqlite_service.admin, classes=["cat", "dog"])


def _reasons(report: dict) -> dict[str, str]:
    return {r["file"]: r["reason"] for r in report["rejected"]}


def test_zip_and_loose_files_with_mixed_verdicts(sqlite_service: LiveService, project: dict) -> None:
    archive = zip_of(
        {
            "good/a.png": png(1),
            "good/b.png": png(2),
            "../evil.png": png(3),
            "/abs.png": png(4),
            "notes.txt": b"just text",
            "inner.zip": zip_of({"x.png": png(5)}),
            "broken.png": png(6)[:60],
            "__MACOSX/._a.png": b"resource fork",
        }
    )
    response = upload(sqlite_service.admin, project["id"], [("batch.zip", archive), ("c.jpg", jpeg(7))])
    assert response.status_code == 200, response.text
    report = response.json()
    assert len(report["accepted"]) == 3
    reasons = _reasons(report)
    assert "contains .." in reasons["batch.zip/../evil.png"]
    assert "absolute" in reasons["batch.zip//abs.png"]
    assert reasons["notes.txt"] == "not an image (could not be decoded)"
    assert "nested archive" in reasons["batch.zip/inner.zip"]
    assert reasons["broken.png"].startswith("corrupt image")
    assert not any("MACOSX" in name for name in reasons)
    # Nothing escaped the storage folder, and the accepted files are on disk.
    assert not (sqlite_service.data_dir / "evil.png").exists()
    images = sqlite_service.data_dir / "objects" / "projects" / str(project["id"]) / "images"
    stored = [p for p in images.rglob("*") if p.is_file()]
    assert len(stored) == 3
    listed = sqlite_service.admin.get(f"/projects/{project['id']}/images").json()
    assert listed["count"] == 3
    assert {i["original_name"] for i in listed["data"]} == {"good/a.png", "good/b.png", "c.jpg"}
    image = listed["data"][0]
    served = sqlite_service.admin.get(f"/images/{image['id']}/file")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    thumb = sqlite_service.admin.get(f"/images/{image['id']}/thumbnail")
    assert thumb.status_code == 200 and PILImage.open(io.BytesIO(thumb.content)).size == (160, 160)


def test_duplicates_are_reported_not_stored_twice(sqlite_service: LiveService, project: dict) -> None:
    first = upload(sqlite_service.admin, project["id"], [("a.png", png(10)), ("b.png", png(10))]).json()
    assert len(first["accepted"]) == 1
    assert first["duplicates"] == [{"file": "b.png", "image_id": first["accepted"][0]}]
    again = upload(sqlite_service.admin, project["id"], [("renamed.png", png(10))]).json()
    assert again["accepted"] == [] and again["duplicates"][0]["image_id"] == first["accepted"][0]
    assert sqlite_service.admin.get(f"/projects/{project['id']}").json()["counts"]["pool"] == 1


def test_symlink_entries_are_rejected(sqlite_service: LiveService, project: dict) -> None:
    report = upload(sqlite_service.admin, project["id"], [("links.zip", zip_with_symlink("l.png", "/etc/passwd"))])
    assert "symbolic link" in _reasons(report.json())["links.zip/l.png"]


def test_oversized_image_and_compression_bomb(sqlite_service: LiveService, project: dict) -> None:
    big = io.BytesIO()
    PILImage.fromarray(np.zeros((1100, 1000), dtype=np.uint8), "L").save(big, format="PNG")  # 1.1 M pixels
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", b"\0" * (20 * 1024 * 1024))
    report = upload(sqlite_service.admin, project["id"], [("big.png", big.getvalue()), ("bomb.zip", bomb.getvalue())])
    reasons = _reasons(report.json())
    assert "1000x1100 pixels exceeds the limit" in reasons["big.png"]
    assert "decompression bomb" in reasons["bomb.zip/zeros.png"]
    assert report.json()["accepted"] == []


def test_corrupt_zip_is_rejected_whole(sqlite_service: LiveService, project: dict) -> None:
    report = upload(sqlite_service.admin, project["id"], [("bad.zip", b"PK\x03\x04 not really a zip")]).json()
    assert report["rejected"] == [{"file": "bad.zip", "reason": "not a valid zip archive"}]


def test_labelled_validation_upload(sqlite_service: LiveService, project: dict) -> None:
    labels = b"filename,label\nv1.png,cat\nv2.png,dog\nv3.png,cat\n"
    files = [("v1.png", png(21)), ("v2.png", png(22)), ("v3.png", png(23)), ("v4.png", png(24))]
    report = upload(sqlite_service.admin, project["id"], files, split="validation", labels=labels).json()
    assert len(report["accepted"]) == 3
    assert "need a label" in _reasons(report)["v4.png"]
    rows = sqlite_service.admin.get(f"/projects/{project['id']}/images", params={"split": "validation"}).json()
    assert sorted(i["ground_truth"] for i in rows["data"]) == ["cat", "cat", "dog"]


def test_labels_csv_with_unknown_class_stores_nothing(sqlite_service: LiveService, project: dict) -> None:
    labels = b"v1.png,cat\nv2.png,horse\n"
    response = upload(sqlite_service.admin, project["id"], [("v1.png", png(31))], split="validation", labels=labels)
    assert response.status_code == 422
    assert "horse" in response.json()["detail"]
    assert sqlite_service.admin.get(f"/projects/{project['id']}").json()["counts"]["validation"] == 0
    bad_csv = upload(sqlite_service.admin, project["id"], [("v1.png", png(31))], labels=b"a,b,c\n")
    assert bad_csv.status_code == 422 and "2 columns" in bad_csv.json()["detail"]


def test_bad_split_is_422(sqlite_service: LiveService, project: dict) -> None:
    assert upload(sqlite_service.admin, project["id"], [("a.png", png())], split="training").status_code == 422
