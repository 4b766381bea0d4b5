"""The self-search of `clipseek check` tells a sound graph's approximation from damage: on a
healthy million-picture index Chroma's HNSW search missed 1 of 2,000 sampled vectors, and
check called the index damaged (so an index run after an interruption rebuilt it whole)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipseek.store import Store, repair
from tests.support.stores import DIM, record, unit_vectors


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("selfsearch") / "db"
    store = Store(db)
    index = store.create_index("test:self", "test", "self", DIM)
    vectors = unit_vectors(np.random.default_rng(3), 1000)
    index.upsert([record(i, v) for i, v in enumerate(vectors)])
    store.close()
    return db


def _missing(monkeypatch: pytest.MonkeyPatch, misses: int, narrow_only: bool = False) -> None:
    """Chroma's search never returns the first ``misses`` vectors searched, as a graph
    whose links to them are lost would; with ``narrow_only``, only a search for fewer
    than the wide look's neighbours misses them, as an approximate search can."""
    from chromadb.api.models.Collection import Collection

    real = Collection.query
    hidden: set[str] = set()

    def query(self, *args, **kwargs):
        res = real(self, *args, **kwargs)
        if narrow_only and kwargs["n_results"] >= repair._WIDE_K:
            return res
        for hits, dists in zip(res["ids"], res["distances"], strict=True):
            if len(hidden) < misses:
                hidden.add(hits[0])
            for at in [i for i, h in enumerate(hits) if h in hidden]:
                hits[at], dists[at] = "someone-else", 0.5
        return res

    monkeypatch.setattr(Collection, "query", query)


@pytest.mark.parametrize(("misses", "damaged"), [(0, False), (2, False), (3, True)])
def test_a_few_misses_of_a_large_graph_are_not_damage(
    thousand: Path, monkeypatch: pytest.MonkeyPatch, misses: int, damaged: bool
) -> None:
    assert repair.tolerated_misses(1000) == 2 and repair.tolerated_misses(499) == 0
    _missing(monkeypatch, misses)
    verdict = repair._self_search_child(str(thousand))
    assert (verdict["problem"] is not None) is damaged, verdict
    if not damaged:
        assert verdict["found"] == 1000 - misses and verdict["missed"] == misses
    else:
        assert "3 of 1000 vectors cannot be found" in verdict["problem"]


def test_what_a_wider_search_finds_is_not_missed(
    thousand: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vector the first search misses gets a second, wider look (a CI run's check of a
    healthy 905-picture index missed one at ten neighbours)."""
    _missing(monkeypatch, 5, narrow_only=True)
    verdict = repair._self_search_child(str(thousand))
    assert verdict == {"found": 1000, "missed": 0, "problem": None}


def test_the_report_says_what_the_graph_missed() -> None:
    report = repair.CheckReport(location="/x", records=1000, found_self=1998, missed_self=2)
    assert report.healthy
    assert "1998 of 2000 vectors searched for find themselves (2 missed" in report.sentence()
