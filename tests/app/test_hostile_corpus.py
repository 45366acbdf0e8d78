"""A generated corpus of hostile uploads: every file gets a verdict, no request is a 5xx, and every
stored object belongs to an image row (no orphan files)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image as PILImage

from tests.app.test_request_trust import guarded  # noqa: F401  (the small-limits service)
from tests.conftest import LiveService
from tests.factories import create_project, jpeg, png, upload


def _corrupt_zip(rng: np.random.Generator, method: int, good: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("good.png", good, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("bad.png", png(int(rng.integers(1 << 30))) * 3, compress_type=method)
    data = bytearray(out.getvalue())
    # Flip bytes inside the second member's compressed data (after its local header).
    start = data.find(b"bad.png") + 20
    for i in rng.integers(start, start + 60, 12):
        data[i] ^= 0xFF
    return bytes(data)


def corpus(seed: int = 0) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    files: list[tuple[str, bytes]] = []
    for i in range(80):
        whole = png(1000 + i) if i % 2 else jpeg(1000 + i)
        files.append((f"truncated-{i}.{'png' if i % 2 else 'jpg'}", whole[: int(rng.integers(0, len(whole)))]))
    for i in range(60):
        data = bytearray(png(2000 + i))
        for j in rng.integers(8, len(data), 6):
            data[j] = int(rng.integers(256))
        files.append((f"flipped-{i}.png", bytes(data)))
    for i in range(40):
        files.append((f"noise-{i}.png", rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()))
    methods = [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2]
    for i in range(45):
        files.append((f"corrupt-{i}.zip", _corrupt_zip(rng, methods[i % 3], png(3000 + i))))
    hostile_text = [
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        b"<html><script>alert(1)</script></html>",
        b"GIF89a<script>alert(1)</script>",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        b"PK\x03\x04" + b"\xff" * 200,
    ]
    for i in range(40):
        files.append((f"text-{i}.{['svg', 'html', 'gif', 'png', 'zip'][i % 5]}", hostile_text[i % 5]))
    for i in range(40):
        files.append((f"good-{i}.png", png(5000 + i)))
    return files


def test_a_hostile_corpus_gives_no_server_error_and_no_orphan_file(guarded: LiveService) -> None:  # noqa: F811
    project = create_project(guarded.admin, classes=["a", "b"])
    files = corpus()
    assert len(files) >= 300
    codes: dict[int, int] = {}
    verdicts = 0
    for start in range(0, len(files), 25):
        batch = files[start : start + 25]
        response = upload(guarded.admin, project["id"], batch)
        codes[response.status_code] = codes.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        if response.status_code == 200:
            report = response.json()
            verdicts += len(report["accepted"]) + len(report["duplicates"])
            verdicts += len({r["file"].split("/")[0] for r in report["rejected"]})
    assert codes == {200: (len(files) + 24) // 25}
    assert verdicts >= len(files)
    rows = guarded.admin.get(f"/projects/{project['id']}/images", params={"per_page": 500}).json()
    folder = guarded.data_dir / "objects" / "projects" / str(project["id"]) / "images"
    # Objects sit in subfolders named by the hash's first byte.
    stored = {p.name.split(".")[0] for p in folder.rglob("*") if p.is_file()}
    assert stored == {i["sha256"] for i in rows["data"]}
    # The 40 good files and each corrupt zip's good member are in; nothing hostile is.
    assert rows["count"] >= 40
    accepted = {i["original_name"] for i in rows["data"]}
    assert not {n for n in accepted if n.startswith(("text-", "noise-"))}
    # A truncated file is accepted only when nothing but trailing checksum bytes is missing: its
    # pixels are exactly the original's, never half an image.
    sources = dict(files)
    for name in (n for n in accepted if n.startswith("truncated-")):
        i = int(name.split("-")[1].split(".")[0])
        original = png(1000 + i) if i % 2 else jpeg(1000 + i)
        with PILImage.open(io.BytesIO(sources[name])) as cut, PILImage.open(io.BytesIO(original)) as whole:
            assert np.array_equal(np.asarray(cut), np.asarray(whole)), name


def test_hostile_labels_csvs_are_clear_4xx(guarded: LiveService) -> None:  # noqa: F811
    project = create_project(guarded.admin, classes=["a", "b"])
    image = [("x.png", png(77))]
    cases = {
        "huge field": b"filename,label\n" + b"x" * 200_000 + b".png,a\n",
        "CR only": b"filename,label\rx.png,a\rother.png,b\r",
        "over the size limit": b"filename,label\n" + b"y.png,a\n" * 200_000,
        "binary": b"\xff\xfe\x00\x00" * 100,
    }
    answers = {name: upload(guarded.admin, project["id"], image, labels=body) for name, body in cases.items()}
    for name, response in answers.items():
        assert response.status_code < 500, (name, response.text)
    # CR-only line ends are fine CSV: the row applies, the row for a file not sent is reported.
    cr = answers["CR only"]
    assert cr.status_code == 200 and cr.json()["unused_labels"] == ["other.png"]
    for name in ("huge field", "over the size limit", "binary"):
        assert answers[name].status_code in (413, 422), name
        assert "labels CSV" in answers[name].json()["detail"], name
