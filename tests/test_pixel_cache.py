"""The worker's decoded-pixel cache: an image is decoded once, rows come back exactly as decoding
gives them, and a torn append from a killed process cannot shift later rows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from app.storage import LocalStorage
from tests.factories import png
from worker.data import PixelCache, load_arrays


def _store(tmp_path: Path, n: int, start: int = 0) -> tuple[LocalStorage, list[str]]:
    storage = LocalStorage(tmp_path / "store")
    keys = [f"images/{i}.png" for i in range(start, start + n)]
    for i, key in enumerate(keys, start=start):
        storage.put(key, png(i))
    return storage, keys


def test_unchanged_images_are_not_decoded_again(tmp_path: Path) -> None:
    storage, keys = _store(tmp_path, 30)
    cache = PixelCache(tmp_path / "cache", 28, 1)
    first = cache.load(storage, keys)
    assert cache.decoded_last == 30
    np.testing.assert_array_equal(first, load_arrays(storage, keys, 28, 1))
    # Another order and a subset: read back, nothing decoded.
    again = cache.load(storage, keys[::-1][:20])
    assert cache.decoded_last == 0
    np.testing.assert_array_equal(again, first[::-1][:20])
    # A second process with its own cache object sees the same rows.
    other = PixelCache(tmp_path / "cache", 28, 1)
    np.testing.assert_array_equal(other.load(storage, keys), first)
    assert other.decoded_last == 0
    # New images only are decoded; a different size is a different cache.
    more_storage, more = _store(tmp_path, 5, start=30)
    mixed = cache.load(more_storage, keys + more)
    assert cache.decoded_last == 5
    np.testing.assert_array_equal(mixed, load_arrays(more_storage, keys + more, 28, 1))
    small = PixelCache(tmp_path / "cache", 16, 1)
    small.load(storage, keys[:3])
    assert small.decoded_last == 3


def test_rows_another_process_appended_are_read_with_what_this_one_already_knew(tmp_path: Path) -> None:
    storage, keys = _store(tmp_path, 20)
    cache = PixelCache(tmp_path / "cache", 28, 1)
    cache.load(storage, keys[:10])
    # Another worker process decodes the other ten; this process has only read the first ten keys.
    other = (
        "import sys; from pathlib import Path; from app.storage import LocalStorage; from worker.data import "
        "PixelCache; PixelCache(Path(sys.argv[2]), 28, 1).load(LocalStorage(Path(sys.argv[1])), sys.argv[3:])"
    )
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-c", other, str(tmp_path / "store"), str(tmp_path / "cache"), *keys[10:]]
    subprocess.run(command, check=True, cwd=root)
    both = cache.load(storage, keys[::-1])
    assert cache.decoded_last == 0
    np.testing.assert_array_equal(both, load_arrays(storage, keys[::-1], 28, 1))
    # A key still being written (no newline yet) is not a key.
    with cache.keys_path.open("a") as index:
        index.write("images/half")
    assert len(cache._rows()) == 20 and "images/half" not in cache._rows()
    # A cache removed and made again is read from its start.
    shutil.rmtree(tmp_path / "cache")
    fresh = PixelCache(tmp_path / "cache", 28, 1)
    fresh.load(storage, keys[5:8])
    assert fresh.decoded_last == 3 and len(fresh._rows()) == 3
    np.testing.assert_array_equal(fresh.load(storage, keys[:8]), load_arrays(storage, keys[:8], 28, 1))
    assert fresh.decoded_last == 5


def test_a_torn_append_does_not_shift_rows(tmp_path: Path) -> None:
    storage, keys = _store(tmp_path, 12)
    cache = PixelCache(tmp_path / "cache", 28, 1)
    cache.load(storage, keys[:6])
    # A worker killed after writing part of its rows but before recording their keys.
    with cache.data_path.open("ab") as data:
        data.write(b"\xff" * (cache.row_bytes + 100))
    rows = cache.load(storage, keys)
    assert cache.decoded_last == 6
    np.testing.assert_array_equal(rows, load_arrays(storage, keys, 28, 1))
    assert cache.data_path.stat().st_size == 12 * cache.row_bytes


def test_a_key_line_torn_by_a_killed_writer_is_cut_before_the_next_append(tmp_path: Path) -> None:
    import worker.data

    storage, keys = _store(tmp_path, 9)
    cache = PixelCache(tmp_path / "cache", 28, 1)
    cache.load(storage, keys[:3])
    # A worker killed part way through a key line, after its rows were written.
    with cache.data_path.open("ab") as data:
        data.write(b"\x00" * cache.row_bytes)
    with cache.keys_path.open("a") as index:
        index.write(keys[3][:5])
    pool = cache.load(storage, keys)
    assert cache.decoded_last == 6
    np.testing.assert_array_equal(pool, load_arrays(storage, keys, 28, 1))
    # Every line of the file is a whole key, in row order; a process that reads it afresh agrees.
    assert cache.keys_path.read_text().splitlines() == keys
    worker.data._KEY_ROWS.clear()
    again = PixelCache(tmp_path / "cache", 28, 1)
    np.testing.assert_array_equal(again.load(storage, keys[::-1]), load_arrays(storage, keys[::-1], 28, 1))
    assert again.decoded_last == 0


def test_a_cold_pool_is_decoded_in_chunks_and_read_as_bytes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import worker.data

    monkeypatch.setattr(worker.data, "DECODE_CHUNK", 4)
    storage, keys = _store(tmp_path, 10)
    cache = PixelCache(tmp_path / "cache", 28, 1)
    heard: list[float] = []
    pool = cache.load(storage, keys, progress=heard.append)
    assert cache.decoded_last == 10 and heard == [0.4, 0.8, 1.0]
    # The rows stay uint8 on disk; floats exist only for what is indexed, equal to decoding.
    assert isinstance(pool.table, np.memmap) and pool.table.dtype == np.uint8
    decoded = load_arrays(storage, keys, 28, 1)
    np.testing.assert_array_equal(pool[3], decoded[3])
    np.testing.assert_array_equal(pool[2:7], decoded[2:7])
    np.testing.assert_array_equal(pool[np.array([9, 0, 4])], decoded[[9, 0, 4]])
    view = pool.subset(np.array([8, 1, 5]))
    assert view.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(view[1:], decoded[[1, 5]])
    np.testing.assert_array_equal(view.to_array(), decoded[[8, 1, 5]])
