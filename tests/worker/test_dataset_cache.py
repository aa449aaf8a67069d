"""The worker's data set cache: verified on every read, bounded, never a half file."""

from __future__ import annotations

import hashlib
import os

import pytest

from worker.dataset_cache import DatasetCache


def _blob(n: int, seed: int) -> tuple[bytes, str]:
    data = bytes((i * 7 + seed) % 256 for i in range(n))
    return data, hashlib.sha256(data).hexdigest()


class Fetcher:
    """Counts fetches; yields the bytes in small chunks like the store does."""

    def __init__(self, data: bytes):
        self.data, self.calls = data, 0

    def __call__(self):
        self.calls += 1
        for i in range(0, len(self.data), 1000):
            yield self.data[i : i + 1000]


def test_a_second_read_is_a_hit_without_fetching(tmp_path):
    data, sha = _blob(5000, 1)
    cache, fetch = DatasetCache(tmp_path, 1 << 20), Fetcher(data)
    first, second = cache.get(sha, fetch), cache.get(sha, fetch)
    assert (first.hit, second.hit, fetch.calls) == (False, True, 1)
    assert second.path.read_bytes() == data


def test_a_corrupted_entry_is_fetched_again_not_trusted(tmp_path):
    data, sha = _blob(5000, 2)
    cache, fetch = DatasetCache(tmp_path, 1 << 20), Fetcher(data)
    path = cache.get(sha, fetch).path
    path.write_bytes(data[:-10] + b"x" * 10)
    again = cache.get(sha, fetch)
    assert (again.hit, fetch.calls) == (False, 2)
    assert again.path.read_bytes() == data


def test_bytes_that_do_not_match_the_digest_leave_nothing_in_the_cache(tmp_path):
    data, _ = _blob(5000, 3)
    cache = DatasetCache(tmp_path, 1 << 20)
    with pytest.raises(ValueError, match="expected"):
        cache.get("0" * 64, Fetcher(data))
    assert list(tmp_path.iterdir()) == []


def test_the_least_recently_used_files_go_past_the_budget(tmp_path):
    blobs = [_blob(4000, seed) for seed in range(4)]
    cache = DatasetCache(tmp_path, 10_000)  # room for two files of 4000 bytes
    for i, (data, sha) in enumerate(blobs[:2]):
        cache.get(sha, Fetcher(data))
        os.utime(tmp_path / sha, (i, i))  # distinct ages: the first is the oldest
    assert cache.get(blobs[0][1], Fetcher(blobs[0][0])).hit  # now the newest
    cache.get(blobs[2][1], Fetcher(blobs[2][0]))
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {blobs[0][1], blobs[2][1]}
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 10_000
