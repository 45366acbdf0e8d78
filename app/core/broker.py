"""The embedded broker: kombu's filesystem transport, made safe for a writer and a reader at once.

kombu 5.x creates a message file, then locks and writes it, while the reader neither locks nor
waits: a worker that lists the folder in between reads an empty file, and the JSON error it raises
ends the worker's consumer (the process exits and every later round stays queued). The same holds
for an exchange's binding table, created empty and then written, which two workers starting
together both bind to. Here every file appears whole: a message is written under a hidden name
that no queue matches and renamed into place, and a new binding table is written aside and linked
into place (both atomic on one file system). A file that still cannot be read (written by
something else, or cut short by a full disk) is moved to `rejected/` and logged, and an unreadable
binding table counts as empty; neither stops a worker any more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from json import JSONDecodeError
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger("suggestlab.broker")

TRANSPORT = "app.core.broker:Transport"


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._made: set[str] = set()

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # The reader only takes "<sortable>_<uuid>.<queue>.msg"; a dot-first name is never one.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:
        wanted = f"{queue}.msg"
        claimed = self._sibling("claimed")
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(claimed, name)
            try:
                # Whoever renames the file first owns the message (a rename within one file system
                # is atomic, where kombu's move to /tmp may be a copy); a second worker skips it.
                os.replace(os.path.join(self.data_folder_in, name), taken)
            except OSError:
                continue
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
                message = loads(bytes_to_str(payload))
            except (OSError, UnicodeDecodeError, JSONDecodeError):
                self._reject(taken, name)
                continue
            with contextlib.suppress(OSError):
                if self.store_processed:
                    shutil.move(taken, os.path.join(self.processed_folder, name))
                else:
                    os.remove(taken)
            return message
        raise Empty()

    def _sibling(self, folder: str) -> str:
        """A folder beside the queue folder, on the same file system."""
        path = os.path.join(os.path.dirname(os.path.normpath(self.data_folder_in)), folder)
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(path)
        return path

    def _reject(self, taken: str, name: str) -> None:
        rejected = self._sibling("rejected")
        with contextlib.suppress(OSError):
            os.replace(taken, os.path.join(rejected, name))
        log.error("embedded broker: message file %s could not be read; moved to %s", name, rejected)

    def get_table(self, exchange: str) -> list[Any]:
        file = self._exchange_file(exchange)
        try:
            with file.open("rb") as f:
                filesystem.lock(f, filesystem.LOCK_SH)
                try:
                    return self._parse_table(f.read(), file)
                finally:
                    filesystem.unlock(f)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot open {file}") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            if self._create_table(file, [entry]):
                return
            with file.open("rb+", buffering=0) as f:
                filesystem.lock(f, filesystem.LOCK_EX)
                try:
                    table = self._parse_table(f.read(), file)
                    if entry not in table:
                        table.insert(0, entry)
                        f.seek(0)
                        f.write(str_to_bytes(dumps(table)))
                        f.truncate()
                finally:
                    filesystem.unlock(f)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot open {file}") from exc

    @staticmethod
    def _create_table(file: Path, table: list[Any]) -> bool:
        """Creates the binding table whole, or returns False when it exists already."""
        partial = file.with_name(f".{file.name}.{uuid.uuid4().hex}.part")
        partial.write_bytes(str_to_bytes(dumps(table)))
        try:
            os.link(partial, file)
            return True
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)

    @staticmethod
    def _parse_table(raw: bytes, file: Path) -> list[Any]:
        try:
            return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))]
        except (UnicodeDecodeError, JSONDecodeError, TypeError):
            log.error("embedded broker: binding table %s could not be read; treated as empty", file)
            return []


class Transport(filesystem.Transport):
    Channel = Channel
