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


def _missing_first(monkeypatch: pytest.MonkeyPatch, misses: int) -> None:
    """Chroma's search leaves out the searched vector itself for the first ``misses``
    vectors searched, as an approximate graph search that does not reach them would."""
    from chromadb.api.models.Collection import Collection

    real = Collection.query
    left = [misses]

    def query(self, *args, **kwargs):
        res = real(self, *args, **kwargs)
        for hits, dists in zip(res["ids"], res["distances"], strict=True):
            if left[0] > 0:
                left[0] -= 1
                del hits[0], dists[0]
                hits.append("someone-else")
                dists.append(0.5)
        return res

    monkeypatch.setattr(Collection, "query", query)


@pytest.mark.parametrize(("misses", "damaged"), [(0, False), (2, False), (3, True)])
def test_a_few_misses_of_a_large_graph_are_not_damage(
    thousand: Path, monkeypatch: pytest.MonkeyPatch, misses: int, damaged: bool
) -> None:
    assert repair.tolerated_misses(1000) == 2 and repair.tolerated_misses(499) == 0
    _missing_first(monkeypatch, misses)
    verdict = repair._self_search_child(str(thousand))
    assert (verdict["problem"] is not None) is damaged, verdict
    if not damaged:
        assert verdict["found"] == 1000 - misses and verdict["missed"] == misses
    else:
        assert "3 of 1000 vectors cannot be found" in verdict["problem"]


def test_the_report_says_what_the_graph_missed() -> None:
    report = repair.CheckReport(location="/x", records=1000, found_self=1998, missed_self=2)
    assert report.healthy
    assert "1998 of 2000 vectors searched for find themselves (2 missed" in report.sentence()
