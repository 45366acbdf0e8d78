"""Turning uploaded files and zip archives into verified, deduplicated image rows.

Every file gets a verdict of its own: a bad entry is reported and skipped, never aborting the good
ones. Accepted images are inserted in savepoints, so a failure leaves no half-written row.
"""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.images.orm import Image, Split
from app.images.schemas import Duplicate, Rejected, UploadReport
from app.images.verify import ALLOWED_FORMATS, Limits, VerifiedImage, default_processes, verify_pool
from app.projects.orm import Project
from app.storage import Storage, image_key
from app.users.orm import User

# Images are verified, deduplicated and inserted in runs of this many (or this many bytes): enough
# for a pool of processes and one bulk insert to pay off, few enough to keep memory bounded.
CHUNK_IMAGES = 1024
CHUNK_BYTES = 64 * 1024 * 1024
ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"}
LABELS_FILE = "labels.csv"


class UploadError(ValueError):
    """The request as a whole is unusable (as opposed to one bad file in it)."""


@dataclass
class Candidate:
    name: str
    data: bytes


def parse_labels_csv(raw: bytes) -> dict[str, str]:
    """Reads `filename,label` rows (header optional) into {filename: label}."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError("labels CSV must be UTF-8 text") from exc
    labels: dict[str, str] = {}
    # splitlines: CR, LF and CRLF line ends alike (the csv module refuses a bare CR).
    rows = csv.reader(text.splitlines())
    line_no = 0
    while True:
        line_no += 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UploadError(f"labels CSV line {line_no}: {exc}") from exc
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise UploadError(f"labels CSV line {line_no}: expected 2 columns `filename,label`")
        name, label = row[0].strip(), row[1].strip()
        if line_no == 1 and (name.lower(), label.lower()) == ("filename", "label"):
            continue
        if not name or not label:
            raise UploadError(f"labels CSV line {line_no}: empty filename or label")
        if len(name) > 1000 or len(label) > 200:
            raise UploadError(f"labels CSV line {line_no}: filename or label too long")
        labels[name] = label
    return labels


def _label_for(name: str, labels: dict[str, str]) -> str | None:
    return labels.get(name) or labels.get(PurePosixPath(name).name)


def _unsafe_member_reason(info: zipfile.ZipInfo, settings: Settings) -> str | None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "unsafe path in archive (absolute)"
    if ".." in path.parts:
        return "unsafe path in archive (contains ..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic links are not accepted"
    if info.flag_bits & 0x1:
        return "encrypted entries are not accepted"
    if path.suffix.lower() in ARCHIVE_SUFFIXES:
        return "nested archives are not accepted"
    if info.file_size > settings.max_file_bytes:
        return f"file too large ({info.file_size} bytes > {settings.max_file_bytes})"
    if info.file_size > 1024 * 1024 and info.file_size / max(info.compress_size, 1) > settings.max_zip_ratio:
        return "suspicious compression ratio (possible decompression bomb)"
    return None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, settings: Settings) -> bytes:
    """One member's bytes; raises ValueError with a user-facing reason."""
    try:
        with archive.open(info) as member:
            # Headers can lie about sizes, so the read itself is capped too.
            data = member.read(settings.max_file_bytes + 1)
    except Exception as exc:
        # Every decompressor fails its own way (zlib.error, lzma.LZMAError, bz2's OSError,
        # NotImplementedError for unknown methods); each is one bad entry, never a failed upload.
        raise ValueError(f"corrupt archive entry: {type(exc).__name__}") from exc
    if len(data) > settings.max_file_bytes:
        raise ValueError("file too large")
    return data


def _zip_candidates(
    archive_name: str, fh: BinaryIO, settings: Settings, report: UploadReport
) -> Iterator[tuple[Candidate, dict[str, str]]]:
    """Safe members of one archive, one at a time (memory stays at one file), with the labels of
    a `labels.csv` at the archive's root if present."""
    try:
        archive = zipfile.ZipFile(fh)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        report.rejected.append(Rejected(file=archive_name, reason="not a valid zip archive"))
        return
    if len(infos) > settings.max_zip_entries:
        report.rejected.append(
            Rejected(file=archive_name, reason=f"too many entries ({len(infos)} > {settings.max_zip_entries})")
        )
        return
    if sum(i.file_size for i in infos) > settings.max_zip_uncompressed_bytes:
        report.rejected.append(
            Rejected(file=archive_name, reason="archive too large when uncompressed (possible decompression bomb)")
        )
        return
    labels: dict[str, str] = {}
    for info in infos:
        if info.filename == LABELS_FILE:
            try:
                labels = parse_labels_csv(_read_member(archive, info, settings))
            except ValueError as exc:
                report.rejected.append(Rejected(file=f"{archive_name}/{LABELS_FILE}", reason=str(exc)))
    budget = settings.max_zip_uncompressed_bytes
    for info in infos:
        name = info.filename
        display = f"{archive_name}/{name}"
        if (
            info.is_dir()
            or name == LABELS_FILE
            or name.startswith("__MACOSX/")
            or PurePosixPath(name).name == ".DS_Store"
        ):
            continue
        reason = _unsafe_member_reason(info, settings)
        if reason:
            report.rejected.append(Rejected(file=display, reason=reason))
            continue
        try:
            data = _read_member(archive, info, settings)
        except ValueError as exc:
            report.rejected.append(Rejected(file=display, reason=str(exc)))
            continue
        budget -= len(data)
        if budget < 0:
            report.rejected.append(Rejected(file=display, reason="archive uncompressed total over the limit"))
            return
        yield Candidate(name=name, data=data), labels


def _candidates(
    files: list[tuple[str, BinaryIO]], settings: Settings, report: UploadReport
) -> Iterator[tuple[Candidate, dict[str, str]]]:
    for name, fh in files:
        head = fh.read(4)
        fh.seek(0)
        if name.lower().endswith(".zip") or head == b"PK\x03\x04":
            yield from _zip_candidates(name, fh, settings, report)
        else:
            data = fh.read(settings.max_file_bytes + 1)
            yield Candidate(name=name, data=data), {}


def _chunks(
    candidates: Iterator[tuple[Candidate, dict[str, str]]],
) -> Iterator[list[tuple[Candidate, dict[str, str]]]]:
    """Runs of candidates, at most CHUNK_IMAGES of them and about CHUNK_BYTES of bytes."""
    chunk: list[tuple[Candidate, dict[str, str]]] = []
    size = 0
    for item in candidates:
        chunk.append(item)
        size += len(item[0].data)
        if len(chunk) >= CHUNK_IMAGES or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def ingest(
    session: Session,
    storage: Storage,
    settings: Settings,
    *,
    project: Project,
    files: list[tuple[str, BinaryIO]],
    split: Split,
    labels: dict[str, str] | None,
    user: User | None,
) -> UploadReport:
    """The whole upload in the caller's transaction; the report once every file has its verdict."""
    report = UploadReport()
    for _ in ingest_runs(
        session, storage, settings, report, project=project, files=files, split=split, labels=labels, user=user
    ):
        pass
    return report


def ingest_runs(
    session: Session,
    storage: Storage,
    settings: Settings,
    report: UploadReport,
    *,
    project: Project,
    files: list[tuple[str, BinaryIO]],
    split: Split,
    labels: dict[str, str] | None,
    user: User | None,
) -> Iterator[int]:
    """Verifies, deduplicates, stores and inserts in runs of images, filling `report` and yielding the
    number of files looked at after each run (a caller may commit there). Each run is decoded and
    hashed (in a pool of processes where cores are spare), checked against the project in one
    query, stored, and inserted in one savepoint (row by row only when a concurrent upload of the
    same bytes got there first)."""
    classes = set(project.classes)
    seen: dict[str, int] = {}
    named: set[str] = set()
    limits = Limits(max_file_bytes=settings.max_file_bytes, max_image_pixels=settings.max_image_pixels)
    pool = verify_pool(settings.ingest_processes or default_processes())
    processed = 0
    for chunk in _chunks(_candidates(files, settings, report)):
        verdicts = pool.verdicts([candidate.data for candidate, _ in chunk], limits)
        accepted: list[tuple[Candidate, VerifiedImage, str | None]] = []
        for (candidate, archive_labels), verdict in zip(chunk, verdicts, strict=True):
            name = candidate.name
            named.update((name, PurePosixPath(name).name))
            if isinstance(verdict, str):
                report.rejected.append(Rejected(file=name, reason=verdict))
                continue
            label = _label_for(name, labels or {}) or _label_for(name, archive_labels)
            if label is not None and label not in classes:
                report.rejected.append(Rejected(file=name, reason=f"unknown label {label!r}; not a project class"))
                continue
            if label is None and split != Split.pool:
                report.rejected.append(
                    Rejected(file=name, reason=f"{split.value} images need a label (send a `labels` CSV)")
                )
                continue
            accepted.append((candidate, verdict, label))
        _store_run(session, storage, project, split, user, accepted, seen, report)
        processed += len(chunk)
        yield processed
    # A labels row that names no uploaded file is reported, never silently dropped.
    unused = sorted(n for n in (labels or {}) if n not in named)
    report.unused_labels, report.unused_label_count = unused[:100], len(unused)


def _store_run(
    session: Session,
    storage: Storage,
    project: Project,
    split: Split,
    user: User | None,
    run: list[tuple[Candidate, VerifiedImage, str | None]],
    seen: dict[str, int],
    report: UploadReport,
) -> None:
    digests = list({verified.sha256 for _, verified, _ in run} - seen.keys())
    stored: dict[str, int] = {}
    for start in range(0, len(digests), 500):  # under every database's bound-parameter limit
        part = digests[start : start + 500]
        query = select(Image.sha256, Image.id).where(Image.project_id == project.id, Image.sha256.in_(part))
        stored.update((digest, image_id) for digest, image_id in session.execute(query))
    new: dict[str, tuple[Candidate, dict[str, object]]] = {}  # digest -> (file, the row's columns)
    repeats: list[tuple[str, str]] = []  # (file, digest) of bytes met earlier in this run
    for candidate, verified, label in run:
        existing = seen.get(verified.sha256) or stored.get(verified.sha256)
        if existing:
            report.duplicates.append(Duplicate(file=candidate.name, image_id=existing))
        elif verified.sha256 in new:
            repeats.append((candidate.name, verified.sha256))
        else:
            ext = ALLOWED_FORMATS[verified.format][0]
            new[verified.sha256] = (
                candidate,
                dict(
                    project_id=project.id,
                    # Content-addressed key: writing it again is harmless, and an object left behind by
                    # a rolled-back request is simply reused by the next upload of the same bytes. The
                    # hash's first byte names a subfolder, so a million-image pool is 256 folders of
                    # ~4,000 files on local storage, not one folder of a million.
                    storage_key=image_key(project.id, verified.sha256, ext),
                    sha256=verified.sha256,
                    format=verified.format,
                    width=verified.width,
                    height=verified.height,
                    original_name=candidate.name[:500],
                    split=split.value,
                    ground_truth=label,
                    uploaded_by_id=user.id if user else None,
                ),
            )
    if new:
        storage.put_many((str(columns["storage_key"]), candidate.data) for candidate, columns in new.values())
        images = [Image(**columns) for _, columns in new.values()]
        try:
            with session.begin_nested():
                session.add_all(images)
        except IntegrityError:
            # A concurrent upload inserted some of these bytes first: row by row, each in a savepoint.
            for candidate, columns in new.values():
                _insert_one(session, project, candidate, columns, seen, report)
        else:
            for image in images:
                seen[image.sha256] = image.id
                report.accepted.append(image.id)
    for name, digest in repeats:
        report.duplicates.append(Duplicate(file=name, image_id=seen.get(digest, 0)))


def _insert_one(
    session: Session,
    project: Project,
    candidate: Candidate,
    columns: dict[str, object],
    seen: dict[str, int],
    report: UploadReport,
) -> None:
    image = Image(**columns)
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:
        other = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == image.sha256))
        report.duplicates.append(Duplicate(file=candidate.name, image_id=other or 0))
        return
    seen[image.sha256] = image.id
    report.accepted.append(image.id)


def content_type(image: Image) -> str:
    return ALLOWED_FORMATS.get(image.format, ("bin", "application/octet-stream"))[1]


def thumbnail(data: bytes, size: int = 160) -> bytes:
    with PILImage.open(io.BytesIO(data)) as img:
        img = img.convert("RGB") if img.mode not in ("L", "RGB") else img.copy()
        # Small images (digits) are upscaled with nearest-neighbour so pixels stay crisp.
        scale = size / max(img.size)
        resample = PILImage.Resampling.NEAREST if scale > 1 else PILImage.Resampling.LANCZOS
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()
