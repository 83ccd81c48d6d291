"""CachedStats: LRU, sqlite persistence, counters, batched misses (logic tests on FakeCorpus)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from quco.corpus.base import CoocMode
from quco.corpus.cache import CachedStats, backend_identity
from quco.corpus.remote import DegradedCount
from quco.errors import BadInputError
from quco.testing import FakeCorpus
from quco.types import Count

DOCS = [
    "Paris is the capital of France . Paris has the Louvre .",
    "Berlin is the capital of Germany .",
    "The Louvre is a museum in Paris .",
]


class RecordingCorpus(FakeCorpus):
    """FakeCorpus that records what reaches its batched forms."""

    identity = "fake:docs-v1"

    def __init__(self, docs: Sequence[str]) -> None:
        super().__init__(docs)
        self.count_batches: list[list[str]] = []
        self.cooc_batches: list[list[tuple[str, str]]] = []

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        self.count_batches.append(list(terms))
        return super().count_many(terms)

    def cooccur_many(
        self, pairs: Sequence[tuple[str, str]], *, window: int | None = 1000, mode: CoocMode = "window"
    ) -> list[Count]:
        self.cooc_batches.append(list(pairs))
        return super().cooccur_many(pairs, window=window, mode=mode)


def test_hits_and_misses_are_counted_and_answers_match_backend() -> None:
    fake = RecordingCorpus(DOCS)
    cache = CachedStats(fake)
    assert cache.count("Paris") == Count(3)
    assert cache.count("Paris") == Count(3)
    assert cache.cooccur("Paris", "France", window=3) == fake.cooccur("Paris", "France", window=3)
    assert cache.cooccur("Paris", "France", window=3).value == 1
    info = cache.cache_info()
    assert (info.hits, info.misses) == (2, 2)
    assert fake.queries == 3  # two misses + the direct call above
    assert info.hit_rate == pytest.approx(0.5)


def test_window_and_mode_are_part_of_the_key() -> None:
    fake = RecordingCorpus(DOCS)
    cache = CachedStats(fake)
    near = cache.cooccur("Paris", "France", window=3)
    far = cache.cooccur("Paris", "France", window=100)
    doc = cache.cooccur("Paris", "France", mode="doc")
    assert (near.value, far.value, doc.value) == (1, 2, 1)
    assert cache.cache_info().misses == 3
    # window is ignored in doc mode, and window=None means doc mode
    assert cache.cooccur("Paris", "France", window=5, mode="doc") == doc
    assert cache.cooccur("Paris", "France", window=None) == doc
    assert cache.cache_info().hits == 2


def test_lru_evicts_the_least_recently_used() -> None:
    fake = RecordingCorpus(DOCS)
    cache = CachedStats(fake, maxsize=2)
    cache.count("Paris")
    cache.count("Berlin")
    cache.count("Paris")  # Paris is now the most recent
    cache.count("Louvre")  # evicts Berlin
    assert cache.cache_info().size == 2
    before = fake.queries
    cache.count("Paris")
    assert fake.queries == before  # still cached
    cache.count("Berlin")
    assert fake.queries == before + 1  # was evicted


def test_sqlite_persists_across_instances(tmp_path) -> None:
    db = tmp_path / "counts.sqlite"
    first = RecordingCorpus(DOCS)
    with CachedStats(first, path=db) as c1:
        assert c1.count("Paris").value == 3
        assert c1.cooccur("Paris", "Louvre", window=10).value == 3
    second = RecordingCorpus(DOCS)
    c2 = CachedStats(second, path=db)
    assert c2.count("Paris").value == 3
    assert c2.cooccur("Paris", "Louvre", window=10).value == 3
    assert second.queries == 0
    info = c2.cache_info()
    assert (info.hits, info.disk_hits, info.misses) == (2, 2, 0)
    # a different backend identity does not see those rows
    other = RecordingCorpus(["Paris Paris"])
    c3 = CachedStats(other, path=db, identity="fake:other")
    assert c3.count("Paris").value == 2
    assert other.queries == 1
    c2.close()
    c3.close()


def test_identity_from_manifest_includes_query_options() -> None:
    class Manifest:
        def __init__(self, tokens: int) -> None:
            self.tokens = tokens

        def to_dict(self) -> dict[str, int]:
            return {"tokens": self.tokens}

    class Local(FakeCorpus):
        def __init__(self, tokens: int, casefold: bool) -> None:
            super().__init__(DOCS)
            self.manifest = Manifest(tokens)
            self.casefold = casefold

    a, b, c = Local(10, False), Local(10, True), Local(11, False)
    assert backend_identity(a) == backend_identity(Local(10, False))
    assert len({backend_identity(a), backend_identity(b), backend_identity(c)}) == 3
    with pytest.raises(BadInputError):
        backend_identity(FakeCorpus(DOCS))
    with pytest.raises(BadInputError):
        CachedStats(FakeCorpus(DOCS), path="unused.sqlite")


def test_batched_forms_send_only_misses() -> None:
    fake = RecordingCorpus(DOCS)
    cache = CachedStats(fake)
    cache.count("Paris")
    out = cache.count_many(["Paris", "Berlin", "Louvre", "Berlin"])
    assert [c.value for c in out] == [3, 1, 2, 1]
    assert fake.count_batches == [["Berlin", "Louvre"]]
    cache.cooccur("Paris", "France", window=5)
    pairs = [("Paris", "France"), ("Berlin", "Germany"), ("Paris", "Louvre")]
    got = cache.cooccur_many(pairs, window=5)
    assert [c.value for c in got] == [fake.cooccur(a, b, window=5).value for a, b in pairs]
    assert fake.cooc_batches == [[("Berlin", "Germany"), ("Paris", "Louvre")]]
    # all cached now: nothing reaches the backend
    cache.count_many(["Paris", "Louvre"])
    cache.cooccur_many(pairs, window=5)
    assert len(fake.count_batches) == 1 and len(fake.cooc_batches) == 1


def test_degraded_answers_are_not_cached() -> None:
    class Flaky(FakeCorpus):
        calls = 0

        def count(self, term: str) -> Count:
            self.calls += 1
            if self.calls == 1:
                return DegradedCount(0, True, "server down")
            return super().count(term)

    flaky = Flaky(DOCS)
    cache = CachedStats(flaky)
    assert cache.errors == []
    assert isinstance(cache.count("Paris"), DegradedCount)
    assert cache.count("Paris") == Count(3)  # asked again, not served from cache
    assert cache.count("Paris") == Count(3)
    assert flaky.calls == 2


def test_thread_safety_under_concurrent_use(tmp_path) -> None:
    fake = RecordingCorpus(DOCS)
    cache = CachedStats(fake, maxsize=3, path=tmp_path / "c.sqlite")
    terms = ["Paris", "Berlin", "Louvre", "France", "Germany", "museum"]
    expected = {t: FakeCorpus(DOCS).count(t) for t in terms}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(60):
                t = terms[(i + k) % len(terms)]
                if cache.count(t) != expected[t]:
                    raise AssertionError(t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    info = cache.cache_info()
    assert info.hits + info.misses == 8 * 60
    assert info.size <= 3
