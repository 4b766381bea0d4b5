"""The synthetic scene generator shared by tests, benchmarks and the screenshot script."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from clipseek.testing import (
    COLOURS,
    SHAPES,
    Scene,
    generate_dataset,
    make_scene,
    noun_phrase,
    parse_caption,
    random_scene,
)


def test_scene_colour_dominates_the_shape_region() -> None:
    """The named colour is what a viewer sees at the centre of a large, centred shape."""
    for colour, rgb in COLOURS.items():
        image = make_scene(Scene(colour, "square", "dark" if colour != "black" else "light"))
        arr = np.asarray(image, dtype=np.float32)
        # The shape is inside the central square; sample the pixels nearest the named colour.
        distance = np.linalg.norm(arr - np.array(rgb, dtype=np.float32), axis=-1)
        assert (distance < 60).mean() > 0.05, colour


def test_same_seed_same_pixels_other_seed_other_picture() -> None:
    a = np.asarray(make_scene("a blue star", size=(80, 60), seed=3))
    b = np.asarray(make_scene("a blue star", size=(80, 60), seed=3))
    c = np.asarray(make_scene("a blue star", size=(80, 60), seed=4))
    assert a.shape == (60, 80, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_background_tone_follows_the_caption() -> None:
    dark = np.asarray(make_scene("a green circle on a dark background", seed=1)).mean()
    light = np.asarray(make_scene("a green circle on a light background", seed=1)).mean()
    assert light > dark + 60


def test_generate_dataset_names_files_after_their_content(tmp_path: Path) -> None:
    items = generate_dataset(tmp_path / "set", 60, seed=7, size=(64, 48))
    assert len(items) == 60
    names = sorted(p.name for p in (tmp_path / "set").iterdir())
    assert names == sorted(p.name for p, _ in items)
    for path, scene in items:
        assert path.name.startswith(f"{scene.colour}-{scene.shape}-")
        assert path.suffix == ".jpg"
    # Dealt evenly: all 48 colour/shape pairs appear before any repeats.
    assert len({(s.colour, s.shape) for _, s in items[:48]}) == len(COLOURS) * len(SHAPES)


def test_generate_dataset_is_deterministic(tmp_path: Path) -> None:
    first = generate_dataset(tmp_path / "a", 6, seed=2, size=(48, 48))
    second = generate_dataset(tmp_path / "b", 6, seed=2, size=(48, 48))
    assert [p.name for p, _ in first] == [p.name for p, _ in second]
    assert [p.read_bytes() for p, _ in first] == [p.read_bytes() for p, _ in second]


def test_generate_dataset_with_chosen_scenes(tmp_path: Path) -> None:
    items = generate_dataset(tmp_path, 2, scenes=["a red circle", {"colour": "blue"}])
    assert items[0][1].colour == "red" and items[0][1].shape == "circle"
    assert items[1][1].colour == "blue"


def test_captions_parse_and_read_as_english() -> None:
    assert parse_caption("A photo of a red circle on a dark background") == (
        "red",
        "circle",
        "dark",
    )
    assert parse_caption("yellow stripes") == ("yellow", "stripes", None)
    assert parse_caption("two stars") == (None, "star", None)
    assert noun_phrase("orange", "star") == "an orange star"
    assert noun_phrase("red", "stripes") == "red stripes"
    assert noun_phrase("red", None) == "something red"
    assert Scene("white", "cross", "dark").caption == "a white cross on a dark background"


def test_random_scene_keeps_contrast_unless_asked() -> None:
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(300)]
    assert not any(s.colour == "white" and s.background == "light" for s in scenes)
    assert not any(s.colour == "black" and s.background == "dark" for s in scenes)
    assert random_scene(rng, colour="white", background="light").background == "light"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ("a dog in the park", "names no colour"),
        ({"colour": "pink"}, "Unknown colour 'pink'"),
        ({"shape": "hexagon"}, "Unknown shape 'hexagon'"),
        ({"hue": "red"}, "not hue"),
    ],
)
def test_bad_scene_descriptions_are_refused_clearly(parts, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_scene(parts)


def test_bad_sizes_and_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        make_scene("a red circle", size=(8, 8))
    with pytest.raises(ValueError, match="zero or more"):
        generate_dataset(tmp_path, -1)
    with pytest.raises(ValueError, match="only 1 scenes"):
        generate_dataset(tmp_path, 2, scenes=["a red circle"])
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    with pytest.raises(TypeError, match="Describe a scene"):
        make_scene(42)  # type: ignore[arg-type]
