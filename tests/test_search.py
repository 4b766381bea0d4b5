from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from clipseek.engine import Engine
from clipseek.errors import IndexMissingError, ModelMismatchError, QueryError
from clipseek.search.query import Query, QueryTerm, parse_query
from tests.support.pictures import make_photo

WORDS = [
    "dog",
    "cat",
    "park",
    "beach",
    "red",
    "blue",
    "car",
    "tree",
    "sunset",
    "mountain",
    "snow",
    "city",
    "night",
    "people",
    "food",
]


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    """PNGs only: read losslessly by both clipseek and the oracle, so vectors must agree."""
    root = tmp_path / "pngs"
    for i in range(40):
        make_photo(root / f"img{i:02d}.png", size=(40 + 3 * i, 36 + 2 * i), seed=100 + i)
    return root


def oracle_vectors(model_dir: Path, folder: Path) -> tuple[object, object, dict[str, np.ndarray]]:
    """Embeddings computed with open_clip directly, independently of clipseek's code."""
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    vectors = {}
    with torch.no_grad():
        for path in sorted(folder.glob("*.png")):
            image = preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
            v = model.encode_image(image)[0]
            vectors[str(path)] = (v / v.norm()).numpy()
    return model, tokenizer, vectors


def oracle_text(model, tokenizer, text: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        v = model.encode_text(tokenizer([text]))[0]
    return (v / v.norm()).numpy()


@pytest.mark.slow  # several seconds of CPU
def test_ranking_and_scores_equal_a_brute_force_scan(
    engine: Engine, png_folder: Path, tiny_model_dir: Path
) -> None:
    engine.index([png_folder])
    model, tokenizer, vectors = oracle_vectors(tiny_model_dir, png_folder)
    rng = random.Random(7)
    for _ in range(5):
        text = " ".join(rng.sample(WORDS, 3))
        q = oracle_text(model, tokenizer, text)
        expected = sorted(((float(v @ q), p) for p, v in vectors.items()), reverse=True)
        response = engine.search(text, top_k=len(vectors))
        got_scores = [r.score for r in response.results]
        # Same score sequence as the exact scan (so the same ranking, ties aside)...
        assert np.allclose(got_scores, [s for s, _ in expected], atol=2e-5)
        # ...and each returned image carries its own exact score.
        for r in response.results:
            assert r.score == pytest.approx(float(vectors[r.path] @ q), abs=2e-5)
        assert [r.rank for r in response.results] == list(range(1, len(vectors) + 1))
        top5 = engine.search(text, top_k=5)
        assert [r.path for r in top5.results] == [r.path for r in response.results[:5]]


def test_image_query_finds_itself_first(engine: Engine, png_folder: Path) -> None:
    engine.index([png_folder])
    target = str(png_folder / "img07.png")
    response = engine.search(Query.image(target), top_k=3)
    assert response.results[0].path == target
    assert response.results[0].score == pytest.approx(1.0, abs=1e-4)
    others = engine.search(Query.image(target), top_k=3, exclude=[target])
    assert target not in [r.path for r in others.results] and len(others.results) == 3


def test_unindexed_query_image_is_embedded_on_the_fly(
    engine: Engine, png_folder: Path, tmp_path: Path
) -> None:
    engine.index([png_folder])
    outside = make_photo(tmp_path / "elsewhere" / "copy.png", size=(52, 44), seed=104)
    inside = png_folder / "img04.png"
    assert outside.read_bytes() == inside.read_bytes()
    response = engine.search(Query.image(str(outside)), top_k=1)
    assert response.results[0].path == str(inside)
    assert response.results[0].score == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow  # several seconds of CPU
def test_compound_query_is_the_normalised_weighted_sum(
    engine: Engine, png_folder: Path, tiny_model_dir: Path
) -> None:
    engine.index([png_folder])
    model, tokenizer, vectors = oracle_vectors(tiny_model_dir, png_folder)
    a, b, c = (oracle_text(model, tokenizer, t) for t in ("a cat", "a hat", "blurry"))
    q = 2 * a + b - c
    q /= np.linalg.norm(q)
    expected = max(float(v @ q) for v in vectors.values())
    response = engine.search('2:"a cat" + "a hat" - "blurry"', top_k=1)
    assert response.results[0].score == pytest.approx(expected, abs=2e-5)
    assert response.query == '2:"a cat" + "a hat" - "blurry"'


def test_in_restricts_to_a_folder(engine: Engine, photos: Path) -> None:
    engine.index([photos])
    response = engine.search("anything", top_k=20, in_dir=str(photos / "sub"))
    paths = [r.path for r in response.results]
    assert len(paths) == 4 and all(p.startswith(str(photos / "sub") + os.sep) for p in paths)
    with pytest.raises(QueryError, match="no such folder"):
        engine.search("anything", top_k=5, in_dir=str(photos / "nope"))


def test_vanished_files_are_dropped_and_counted(engine: Engine, photos: Path) -> None:
    engine.index([photos])
    everything = engine.search("x", top_k=12)
    gone = [Path(r.path) for r in everything.results[:2]]
    for path in gone:
        path.unlink()
    response = engine.search("x", top_k=5)
    assert len(response.results) == 5
    assert not {str(p) for p in gone} & {r.path for r in response.results}
    assert response.missing == 2
    assert any("no longer exist" in n for n in response.notes)


def test_no_index_and_wrong_model_are_clear(settings, photos: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="clipseek index"):
        Engine(settings).search("a dog", top_k=3)
    assert not settings.db.exists(), "a query must not create an index folder"
    Engine(settings).index([photos])
    from clipseek.testing import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=3)
    with pytest.raises(ModelMismatchError) as err:
        Engine(settings.with_overrides(model=f"local-dir:{other}")).search("a dog", top_k=3)
    assert settings.model in str(err.value) and f"local-dir:{other}" in str(err.value)


def test_query_adopts_the_index_model_when_none_was_chosen(settings, photos: Path) -> None:
    from dataclasses import replace

    Engine(settings).index([photos])
    unspecified = replace(settings, model="ViT-B/32", sources={})
    engine = Engine(unspecified)
    assert engine.spec.name == settings.model
    assert len(engine.search("a dog", top_k=2).results) == 2


@pytest.mark.parametrize("top_k", [0, -1, 10_001])
def test_bad_top_k(engine: Engine, photos: Path, top_k: int) -> None:
    engine.index([photos])
    with pytest.raises(QueryError, match="--top-k"):
        engine.search("a dog", top_k=top_k)


# --------------------------------------------------------------------------- parsing


def test_parse_plain_text_and_apostrophes() -> None:
    assert parse_query(["a dog playing in the park"]).terms == (
        QueryTerm("text", "a dog playing in the park"),
    )
    assert parse_query(["a dog's toy"]).terms == (QueryTerm("text", "a dog's toy"),)
    assert parse_query(["black-and-white photo"]).terms == (
        QueryTerm("text", "black-and-white photo"),
    )


def test_parse_compound_from_one_string_and_from_argv() -> None:
    expected = (
        QueryTerm("text", "a cat", 1.0),
        QueryTerm("text", "a hat", 1.0),
        QueryTerm("text", "blurry", -1.0),
    )
    assert parse_query(['"a cat" + "a hat" - "blurry"']).terms == expected
    assert parse_query(["a cat", "+", "a hat", "-", "blurry"]).terms == expected
    assert parse_query(["a cat + a hat - blurry"]).terms == expected


def test_parse_weights_and_images(tmp_path: Path) -> None:
    img = make_photo(tmp_path / "cat.jpg")
    query = parse_query([f'2:"beach" + 0.5:sunset - {img}'])
    assert query.terms == (
        QueryTerm("text", "beach", 2.0),
        QueryTerm("text", "sunset", 0.5),
        QueryTerm("image", str(img), -1.0),
    )


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([""], "empty"),
        (["   "], "empty"),
        ([], "empty"),
        (["+ -"], "Two operators|no terms"),
        (["- blurry"], "only subtracts"),
        (["a + + b"], "Two operators"),
        (["2:"], "after the colon"),
        (["./missing/photo.jpg"], "does not exist"),
    ],
)
def test_parse_errors(parts: list[str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_query(parts)


def test_terms_that_cancel_out(engine: Engine, photos: Path) -> None:
    engine.index([photos])
    with pytest.raises(QueryError, match="cancel"):
        engine.search('"a dog" - "a dog"', top_k=3)
