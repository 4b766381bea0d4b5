"""Which model a command uses when the user names none: an index built with an earlier
default keeps answering after the default changes, and nothing is re-embedded by surprise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from clipseek.engine import Engine

#: What the default became (issue 28); the test below pins the same name as config's.
NEW_DEFAULT = "ViT-B-32:laion2b_s34b_b79k"


def test_unnamed_model_is_the_indexs_and_said_once(settings, photos: Path) -> None:
    """An index built without naming a model (the default of its day) is answered by that
    model after the default changes; the choice is said once and `info` always shows it."""
    built_as_default = replace(settings, sources={})
    Engine(built_as_default).index([photos])

    later = replace(settings, model=NEW_DEFAULT, sources={})
    engine = Engine(later)
    assert engine.spec.name == settings.model
    assert len(engine.search("a dog", top_k=3).results) == 3
    note = engine.model_notice()
    assert note is not None and settings.model in note and NEW_DEFAULT in note
    assert Engine(later).model_notice() is None  # once per index and model
    info = Engine(later).info()
    assert info.model == settings.model and "index" in info.model_source
    assert NEW_DEFAULT in info.model_source


def test_a_named_model_is_used_and_indexing_with_it_says_what_happens(
    settings, photos: Path, tmp_path: Path
) -> None:
    from clipseek.errors import ModelMismatchError
    from clipseek.testing import build_tiny_model

    Engine(settings).index([photos])
    other = f"local-dir:{build_tiny_model(tmp_path / 'other', seed=5)}"
    named = Engine(settings.with_overrides(model=other))
    assert named.model_notice() is None
    plan = named.index_plan()
    assert plan is not None
    assert settings.model in plan and other in plan and "embedded again" in plan
    with pytest.raises(ModelMismatchError):  # a query with the new model before indexing
        named.search("a dog", top_k=1)
    named.index([photos])
    assert Engine(settings.with_overrides(model=other)).index_plan() is None
    # Both indexes answer; unnamed, the index's model of the previous default is preferred
    # only when it is a previous default, otherwise the larger (here: equal, either).
    assert len(Engine(settings).search("a dog", top_k=2).results) == 2
    assert len(Engine(settings.with_overrides(model=other)).search("a dog", top_k=2).results) == 2


def test_indexing_with_the_same_model_has_no_plan_to_announce(settings, photos: Path) -> None:
    engine = Engine(settings)
    assert engine.index_plan() is None  # nothing indexed yet
    engine.index([photos])
    assert Engine(settings).index_plan() is None
