"""A synthetic index for the store's readers: unit vectors and records with dates, cameras
and folders, and the filters the readers must answer alike."""

from __future__ import annotations

from typing import Any

import numpy as np

from clipseek.store import Record

DIM = 24
KEY, NAME, SLUG = "test-model-key", "test-model", "test-slug"
CAMERAS = ["Canon EOS R5", "Pixel 8", "iPhone 15 Pro"]


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def record(i: int, vector: np.ndarray) -> Record:
    extra: dict[str, Any] = {}
    if i % 3:  # some pictures have no date or camera, as older indexes do
        extra = {"taken_local": 1_600_000_000 + i * 86_400, "camera": CAMERAS[i % 3]}
    return Record(
        f"/photos/{2020 + i % 4}/trip-{i % 7}/img_{i:05d}.jpg",
        vector,
        1000 + i,
        10**18 + i,
        640 + 10 * (i % 50),
        480,
        extra,
    )


FILTERS: list[tuple[str | None, list[dict[str, Any]]]] = [
    (None, []),
    ("/photos/2021", []),
    ("/photos/2022/trip-3", []),
    (None, [{"taken_local": {"$gte": 1_600_000_000 + 300 * 86_400}}]),
    (None, [{"taken_local": {"$lt": 1_600_000_000 + 200 * 86_400}}, {"width": {"$gte": 900}}]),
    (None, [{"camera": "Pixel 8"}]),
    ("/photos/2023", [{"camera": {"$in": ["Canon EOS R5", "iPhone 15 Pro"]}}]),
    ("/photos/2020", [{"camera": "no such camera"}]),
]
