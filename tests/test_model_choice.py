"""Which model a command uses when the user names none: an index built with an earlier
default keeps answering after the default changes, and nothing is re-embedded by surprise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from clipseek.config import DEFAULT_MODEL, load_settings
from clipseek.engine import Engine
from tests.support.fastpath import assert_fast_path_agrees

#: What the default became (issue 28); the test below pins the same name as config's.
NEW_DEFAULT = "ViT-B-32-SigLIP2-256:webli"
#: The defaults before it, newest first: their indexes keep answering.
EARLIER_DEFAULTS = ("ViT-B-32:laion2b_s34b_b79k", "ViT-B/32")


def test_the_default_is_the_one_the_docs_name() -> None:
    assert DEFAULT_MODEL == NEW_DEFAULT
    from clipseek.models.catalogue import PREVIOUS_DEFAULTS

    assert set(EARLIER_DEFAULTS) <= set(PREVIOUS_DEFAULTS)
    assert DEFAULT_MODEL not in PREVIOUS_DEFAULTS


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


@pytest.mark.slow
@pytest.mark.parametrize("earlier", EARLIER_DEFAULTS)
def test_index_of_a_previous_default_still_answers_after_the_default_changed(
    photos: Path, db_path: Path, runner, monkeypatch: pytest.MonkeyPatch, earlier: str
) -> None:
    """The real previous defaults: LAION's and OpenAI's ViT-B/32 (correctly shaped
    stand-ins in the HF cache). The new default's weights are not on this machine and
    HF_HUB_OFFLINE is set, so the query can only answer if it uses the index's model,
    never the new default."""
    import huggingface_hub.constants as hf

    from clipseek.cli.app import app
    from clipseek.models import resolve_model, weights_available
    from clipseek.testing import install_hf_standin

    install_hf_standin(hf.HF_HUB_CACHE, model=earlier)
    assert not weights_available(resolve_model(DEFAULT_MODEL))
    old = replace(
        load_settings({"db": db_path, "device": "cpu", "precision": "fp32"}),
        model=earlier,
        sources={},
    )
    assert not old.model_explicit
    Engine(old).index([photos])

    monkeypatch.setenv("CLIPSEEK_DB", str(db_path))
    first = runner.invoke(app, ["query", "a dog", "-k", "2", "--json"])
    assert first.exit_code == 0, first.output
    assert f'"model": "{earlier}"' in first.stdout
    assert f"Using {earlier}" in first.stderr and DEFAULT_MODEL in first.stderr
    second = runner.invoke(app, ["query", "a dog", "-k", "2", "--json"])
    assert second.exit_code == 0 and f"Using {earlier}" not in second.stderr
    info = runner.invoke(app, ["info", "--json"])
    assert f'"model": "{earlier}"' in info.stdout and "index" in info.stdout


def test_the_defaults_missing_weights_are_one_clear_sentence() -> None:
    from clipseek.errors import WeightsUnavailableError
    from clipseek.models import hf_cache_dir, load_model, resolve_model

    with pytest.raises(WeightsUnavailableError) as err:
        load_model(resolve_model(DEFAULT_MODEL), device="cpu")
    message = str(err.value)
    assert DEFAULT_MODEL in message and str(hf_cache_dir()) in message
    assert "\n" not in message and message.count(". ") == 0


@pytest.mark.slow  # a full-size stand-in: 1.5 GB of weights exported to ONNX
def test_the_new_defaults_standin_loads_offline_and_its_fast_path_agrees() -> None:
    """The default's real shape (SigLIP 2 B/32 at 256 px, 64 tokens, Gemma's 256,000-token
    vocabulary) where the hub cache keeps its repo: it loads offline, exports with its
    tokenizer's slice tables, and ONNX agrees with torch in several scripts."""
    import huggingface_hub.constants as hf

    from clipseek.models import cached_weights, load_model, resolve_model
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.testing import install_hf_standin

    path = install_hf_standin(hf.HF_HUB_CACHE, model=DEFAULT_MODEL, full_tokenizer=True)
    assert "models--timm--ViT-B-32-SigLIP2-256" in str(path)
    spec = resolve_model(DEFAULT_MODEL)
    assert cached_weights(spec) == str(path)
    torch_model = load_model(spec, device="cpu", precision="fp32")
    assert torch_model.dim == 768 and torch_model.preprocess_cfg.size == (256, 256)
    assert torch_model.preprocess_cfg.resize_mode == "squash"
    fast = OnnxModel(spec, export_model(torch_model))
    texts = ["a dog on a beach", "Straße im Regen", "東京の夜景", "perro en la playa", ""]
    assert_fast_path_agrees(torch_model, fast, texts)
    assert fast._tokenize_setup().sliced  # the 256,000 tokens were never loaded whole


@pytest.mark.slow
def test_the_previous_defaults_standin_loads_offline_and_its_fast_path_agrees() -> None:
    """LAION's ViT-B/32 (GELU, not OpenAI's QuickGELU), the default of 0.1, which indexes
    built then keep using: it loads offline, exports, and ONNX agrees with torch."""
    import huggingface_hub.constants as hf
    from open_clip.transformer import QuickGELU

    from clipseek.models import cached_weights, load_model, resolve_model
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.testing import install_hf_standin

    name = EARLIER_DEFAULTS[0]
    path = install_hf_standin(hf.HF_HUB_CACHE, model=name)
    assert "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" in str(path)
    spec = resolve_model(name)
    assert cached_weights(spec) == str(path)
    torch_model = load_model(spec, device="cpu", precision="fp32")
    assert torch_model.dim == 512 and torch_model.preprocess_cfg.size == (224, 224)
    assert not [m for m in torch_model._model.modules() if isinstance(m, QuickGELU)]
    fast = OnnxModel(spec, export_model(torch_model))
    texts = ["a dog on a beach", "Straße im Regen", "東京の夜景", ""]
    assert_fast_path_agrees(torch_model, fast, texts)
