"""Turning uploaded files and zip archives into verified, deduplicated image rows.

Every file gets a verdict of its own: a bad entry is reported and skipped, never aborting the good
ones. Each accepted image is inserted in its own savepoint, so a failure leaves no half-written row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import stat
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.images.orm import Image, Split
from app.images.schemas import Duplicate, Rejected, UploadReport
from app.projects.orm import Project
from app.storage import Storage
from app.users.orm import User

# Pillow format name -> file extension and content type served back.
ALLOWED_FORMATS: dict[str, tuple[str, str]] = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
    "BMP": ("bmp", "image/bmp"),
}
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


@dataclass
class VerifiedImage:
    format: str
    width: int
    height: int


def verify_image(data: bytes, settings: Settings) -> VerifiedImage:
    """Decodes the whole image; raises ValueError with a user-facing reason if it is unusable."""
    if len(data) > settings.max_file_bytes:
        raise ValueError(f"file too large ({len(data)} bytes > {settings.max_file_bytes})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                if fmt not in ALLOWED_FORMATS:
                    raise ValueError(f"unsupported image format {fmt or 'unknown'}; allowed: PNG, JPEG, WEBP, BMP")
                width, height = img.size
                if width * height > settings.max_image_pixels:
                    raise ValueError(
                        f"image too large: {width}x{height} pixels exceeds the limit of {settings.max_image_pixels}"
                    )
                img.load()
    except UnidentifiedImageError as exc:
        raise ValueError("not an image (could not be decoded)") from exc
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ValueError("image too large (decompression bomb)") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"corrupt image: {exc}") from exc
    return VerifiedImage(format=fmt, width=width, height=height)


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
    report = UploadReport()
    classes = set(project.classes)
    seen: dict[str, int] = {}
    named: set[str] = set()
    for candidate, archive_labels in _candidates(files, settings, report):
        name = candidate.name
        named.update((name, PurePosixPath(name).name))
        try:
            verified = verify_image(candidate.data, settings)
        except ValueError as exc:
            report.rejected.append(Rejected(file=name, reason=str(exc)))
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
        digest = hashlib.sha256(candidate.data).hexdigest()
        existing = seen.get(digest) or session.scalar(
            select(Image.id).where(Image.project_id == project.id, Image.sha256 == digest)
        )
        if existing:
            report.duplicates.append(Duplicate(file=name, image_id=existing))
            continue
        ext = ALLOWED_FORMATS[verified.format][0]
        key = f"projects/{project.id}/images/{digest}.{ext}"
        # Content-addressed key: writing it again is harmless, and an object left behind by a
        # rolled-back request is simply reused by the next upload of the same bytes.
        storage.put(key, candidate.data)
        image = Image(
            project_id=project.id,
            storage_key=key,
            sha256=digest,
            format=verified.format,
            width=verified.width,
            height=verified.height,
            original_name=name[:500],
            split=split.value,
            ground_truth=label,
            uploaded_by_id=user.id if user else None,
        )
        try:
            with session.begin_nested():
                session.add(image)
        except IntegrityError:
            # A concurrent upload inserted the same bytes first.
            other = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == digest))
            report.duplicates.append(Duplicate(file=name, image_id=other or 0))
            continue
        seen[digest] = image.id
        report.accepted.append(image.id)
    # A labels row that names no uploaded file is reported, never silently dropped.
    unused = sorted(n for n in (labels or {}) if n not in named)
    report.unused_labels, report.unused_label_count = unused[:100], len(unused)
    return report


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
