"""Where image bytes and round artifacts live: a local folder, or an S3-compatible bucket.

Keys are relative POSIX paths such as `projects/3/images/<sha256>.png`; both backends take the same
keys, so rows never say which backend wrote them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Protocol

from app.core.settings import Settings, get_settings


class StorageError(RuntimeError):
    pass


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def image_key(project_id: int, sha256: str, extension: str) -> str:
    """Where an image's bytes live: named by content, in 256 folders by the hash's first byte (a
    million-image pool on local storage is 256 folders of ~4,000 files, not one of a million)."""
    return f"projects/{project_id}/images/{sha256[:2]}/{sha256}.{extension}"


def _check_key(key: str) -> str:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not key:
        raise StorageError(f"invalid storage key: {key!r}")
    return key


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file and a crash leaves no torn file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        # One after another: small local writes are syscalls, and threads only contend for the GIL
        # (a thread pool made small writes slower here, not faster).
        for key, data in items:
            self.put(key, data)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"missing object: {key}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Storage:
    def __init__(self, settings: Settings) -> None:
        import boto3  # imported here so the embedded mode never pays for it

        self.bucket = settings.s3_bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            region_name=settings.s3_region,
        )
        self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                # Another process may have created it meanwhile; anything else is a real error.
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise StorageError(f"cannot use bucket {self.bucket!r}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=_check_key(key), Body=data)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        # Each put is a network round trip; a few threads overlap the waits (boto3 clients are
        # thread-safe).
        with ThreadPoolExecutor(max_workers=8) as threads:
            list(threads.map(lambda item: self.put(*item), items))

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=_check_key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise StorageError(f"missing object: {key}") from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=_check_key(key))
            return True
        except ClientError:
            return False

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=_check_key(key))


_storages: dict[tuple[str, str], Storage] = {}


def get_storage(settings: Settings | None = None) -> Storage:
    settings = settings or get_settings()
    cache_key = (settings.storage, str(settings.data_dir))
    if cache_key not in _storages:
        if settings.storage == "s3":
            _storages[cache_key] = S3Storage(settings)
        else:
            _storages[cache_key] = LocalStorage(settings.data_dir / "objects")
    return _storages[cache_key]
