"""Issue 24: near-duplicate groups that never chain, and the vector cache beside Chroma
(store/vector_cache.py): the same answers as Chroma and the direct reader, ignored when
missing, stale or damaged, and never written by a reader."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from clipseek.search import duplicates as dup

# --------------------------------------------------------------------------- duplicates


class _Vectors:
    """A stand-in index: what ``find_duplicates`` asks of one (all_vectors, query_many)."""

    def __init__(self, vectors: np.ndarray, sizes: Sequence[int] | None = None) -> None:
        self.vectors = vectors.astype(np.float32)
        self.ids = [f"id{i:03d}" for i in range(len(vectors))]
        sizes = sizes or [100] * len(vectors)
        self.metas = [
            {"path": f"/p/{i:03d}.jpg", "width": w, "height": 10, "size": 1}
            for i, w in enumerate(sizes)
        ]

    def all_vectors(self, under: str | None = None) -> tuple[list[str], np.ndarray, list[Any]]:
        return self.ids, self.vectors, self.metas

    def query_many(self, vectors: np.ndarray, n: int, under: str | None = None) -> list[Any]:
        sims = vectors @ self.vectors.T
        out = []
        for row in sims:
            top = np.argsort(-row, kind="stable")[:n]
            out.append([(self.ids[j], float(row[j])) for j in top])
        return out


def _chain(rng: np.random.Generator, length: int, step: float, dim: int = 64) -> np.ndarray:
    """Unit vectors along a great circle, ``step`` radians apart: neighbours are close,
    the ends far apart (A close to B, B close to C, A not close to C)."""
    a = rng.standard_normal(dim)
    a /= np.linalg.norm(a)
    b = rng.standard_normal(dim)
    b -= a * (a @ b)
    b /= np.linalg.norm(b)
    angles = np.arange(length) * step
    return np.cos(angles)[:, None] * a + np.sin(angles)[:, None] * b


def _assert_no_chains(groups: list[dup.DuplicateGroup], index: _Vectors, threshold: float) -> None:
    position = {id_: i for i, id_ in enumerate(index.ids)}
    seen: set[str] = set()
    for group in groups:
        rows = [position[item.id] for item in group.items]
        sims = index.vectors[rows] @ index.vectors[rows].T
        assert sims.min() >= threshold - 1e-6, sims.min()  # every pair, so the first too
        assert group.items[0].similarity == pytest.approx(1.0, abs=1e-6)
        assert not seen & {i.id for i in group.items}  # a picture is in one group only
        seen |= {i.id for i in group.items}


@pytest.mark.parametrize("exact", [True, False])
def test_near_duplicates_never_chain(monkeypatch, exact: bool) -> None:
    rng = np.random.default_rng(3)
    threshold = 0.95
    step = 0.25  # cos 0.25 = 0.969 between neighbours, cos 0.5 = 0.878 two apart
    chain = _chain(rng, 12, step)
    pair = _chain(rng, 2, 0.1)  # a plain pair, close: one group of two
    far = rng.standard_normal((30, 64))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    index = _Vectors(np.concatenate([chain, pair, far]))
    if not exact:
        monkeypatch.setattr(dup, "EXACT_LIMIT", 0)
    groups = dup.find_duplicates(index, threshold)  # type: ignore[arg-type]
    _assert_no_chains(groups, index, threshold)
    chain_groups = [g for g in groups if all(int(i.id[2:]) < 12 for i in g.items)]
    # Joined transitively, the twelve were one group with ends at cos 2.75 = -0.92.
    assert len(chain_groups) >= 6 and all(len(g.items) == 2 for g in chain_groups)
    assert sorted(i.id for g in groups for i in g.items if i.id in ("id012", "id013")) == [
        "id012",
        "id013",
    ]
    assert not [g for g in groups if any(int(i.id[2:]) >= 14 for i in g.items)]


def test_a_burst_is_one_group_led_by_the_largest_picture() -> None:
    rng = np.random.default_rng(5)
    centre = rng.standard_normal(64)
    centre /= np.linalg.norm(centre)
    burst = centre + 0.02 * rng.standard_normal((6, 64))
    burst /= np.linalg.norm(burst, axis=1, keepdims=True)
    index = _Vectors(burst, sizes=[100, 100, 300, 100, 200, 100])
    (group,) = dup.find_duplicates(index, 0.95)  # type: ignore[arg-type]
    assert len(group.items) == 6
    assert group.items[0].id == "id002" and group.items[1].id == "id004"
    _assert_no_chains([group], index, 0.95)


def test_a_chain_through_a_large_middle_picture_keeps_the_threshold() -> None:
    """A - B - C with B the largest: B leads; A and C are not both with it."""
    rng = np.random.default_rng(8)
    chain = _chain(rng, 3, 0.28)  # A.B = B.C = 0.961, A.C = 0.848
    index = _Vectors(chain, sizes=[100, 500, 100])
    groups = dup.find_duplicates(index, 0.95)  # type: ignore[arg-type]
    assert len(groups) == 1 and len(groups[0].items) == 2
    assert groups[0].items[0].id == "id001"
    _assert_no_chains(groups, index, 0.95)
