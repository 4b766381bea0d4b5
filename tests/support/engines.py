"""Settings and engines on the tiny test model, built without reading any config file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def settings_for(model_dir: Path, db: Path, **extra):
    """Settings built directly: session and module fixtures run before the per-test
    isolated HOME, so they must not read any config file or environment."""
    from clipseek.config import Settings

    return Settings(
        db=db,
        model=f"local-dir:{model_dir}",
        device="cpu",
        precision="fp32",
        sources={"model": "flag"},
        **extra,
    )


def engine_with(settings, model):
    """An engine whose model is ``model`` (one already loaded), never loaded again."""
    from clipseek.engine import Engine

    return Engine(settings, model_loader=lambda *_: model)


def counting_loader(loaded_model, loads: list[str]) -> Callable:
    """A model loader that hands out ``loaded_model`` and records each call, so a test can
    check that a server loads its model once, however many requests come."""

    def load(spec, device, precision):
        loads.append(spec.name)
        return loaded_model

    return load


def assert_same_answers(want, got, texts) -> None:
    """Two engines on one index rank the same pictures with the same scores for ``texts``
    (a reader of another kind against the reference one)."""
    import pytest

    for text in texts:
        expected = want.search(text, 5).results
        answer = got.search(text, 5).results
        assert [r.path for r in answer] == [r.path for r in expected]
        assert [r.score for r in answer] == pytest.approx([r.score for r in expected], abs=1e-6)
