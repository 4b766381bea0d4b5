"""How good a match is, as the app shows it: on the model family's own scale.

CLIP's and SigLIP's text–image cosines live on different scales, so the app's bars and
words come from :meth:`Engine.calibration` (clipseek/models/calibration.py), never from
the raw cosine alone; the raw score stays on screen, exact. A search by example picture
has no published scale, and its bars stay relative to the best hit.
"""

from __future__ import annotations

import io

import pytest

from tests.support.app import make_pictures, pilot_test, search, send_key, text_of
from tests.support.engines import engine_with, settings_for
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.usefixtures("fixed_cells")

PICTURES = ["beach.bmp", "city.bmp", "forest.bmp", "cat.bmp", "dog.bmp"]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir, loaded_tiny_model):
    """Each family's stand-in, loaded: {"clip": (model dir, model), "siglip": (...)}."""
    from clipseek.models import load_model, resolve_model
    from clipseek.testing import build_tiny_siglip

    siglip_dir = build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"), seed=1)
    siglip = load_model(resolve_model(f"local-dir:{siglip_dir}"), device="cpu", precision="fp32")
    return {"clip": (tiny_model_dir, loaded_tiny_model), "siglip": (siglip_dir, siglip)}


@pytest.fixture(scope="module")
def family_libraries(tmp_path_factory: pytest.TempPathFactory, family_models):
    """A few pictures indexed with each family's stand-in: {family: (settings, model)}."""
    pictures = tmp_path_factory.mktemp("score-pictures")
    make_pictures(pictures, PICTURES)
    out = {}
    for family, (model_dir, model) in family_models.items():
        settings = settings_for(model_dir, tmp_path_factory.mktemp(f"db-{family}"))
        summary = engine_with(settings, model).index([pictures])
        assert summary.new == len(PICTURES) and not summary.failed
        out[family] = (settings, model)
    return out


def _row_text(result, fraction: float) -> str:
    from rich.console import Console

    from clipseek.tui.widgets.results import ResultRow

    console = Console(width=60, file=io.StringIO(), color_system=None)
    lines = console.render_lines(ResultRow(result, fraction, "#ffffff", "#888888"), pad=False)
    return "".join(segment.text for segment in lines[0])


def _assert_same_display(clip, siglip) -> None:
    """At each point of the two families' scales the raw cosines differ, each is shown
    exactly, and the bar and the word are the same."""
    from clipseek.search.query import SearchResult
    from clipseek.tui.widgets.results import match_fraction

    scales = {"clip": clip, "siglip": siglip}
    for position in (0.1, 0.3, 0.5, 0.62, 0.8, 1.0):
        cosines = {family: scale.cosine_at(position) for family, scale in scales.items()}
        assert abs(cosines["clip"] - cosines["siglip"]) > 0.01, position
        rows = {}
        for family, cosine in cosines.items():
            result = SearchResult(rank=1, path="/p/beach.jpg", score=cosine, id="x")
            rows[family] = _row_text(result, match_fraction(cosine, 0.9, scales[family]))
            assert f"{cosine:.3f}" in rows[family]
            rows[family] = rows[family].replace(f"{cosine:.3f}", "S")
        assert rows["clip"] == rows["siglip"], position
        assert clip.verdict(cosines["clip"]) == siglip.verdict(cosines["siglip"])
    # The one line each family publishes is "good"; the same raw cosine is not read alike.
    assert clip.verdict(clip.fits) == siglip.verdict(siglip.fits) == "good"
    assert clip.verdict(0.2) != siglip.verdict(0.2)


def test_the_same_relative_match_shows_the_same_on_each_family_scale():
    from clipseek.models.calibration import calibration_for

    clip = calibration_for("clip")
    siglip = calibration_for("siglip", {"logit_scale": 112.0, "logit_bias": -16.5})
    _assert_same_display(clip, siglip)


@pytest.mark.slow  # builds and loads a SigLIP stand-in: seconds
def test_the_stand_ins_show_the_same_for_the_same_relative_match(family_models, tmp_path):
    scales = {}
    for family, (model_dir, model) in family_models.items():
        scale = engine_with(settings_for(model_dir, tmp_path / family), model).calibration()
        assert scale.family == family
        scales[family] = scale
    _assert_same_display(scales["clip"], scales["siglip"])


@pytest.mark.slow  # each family's stand-in indexes and answers in the app: seconds
@pytest.mark.parametrize("family", ["clip", "siglip"])
@pilot_test
async def test_app_bars_follow_the_family_scale_for_text_and_the_best_hit_for_pictures(
    family_libraries, family: str
):
    from clipseek.tui.app import ClipseekApp
    from clipseek.tui.widgets.preview import PreviewPane
    from clipseek.tui.widgets.results import ResultsList

    settings, model = family_libraries[family]
    app = ClipseekApp(engine=engine_with(settings, model), preview="none", clock=lambda: 1000.0)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_until_async(lambda: app.model_ready)
        screen = app.search_screen
        scale = app.engine.calibration()
        assert scale.family == family
        await search(pilot, "a sunny beach")
        results = screen.query_one("#results", ResultsList)
        assert results.calibration == scale
        shown = [results.get_option_at_index(i).prompt for i in range(len(results.results))]
        assert len(shown) == len(PICTURES)
        for row in shown:
            # On the family's scale, not against the best hit (which would fill the top bar).
            assert row.fraction == pytest.approx(scale.match(row.result.score))
        assert shown[0].fraction < 1.0  # random weights: no clear match, and it shows
        pane = screen.query_one(PreviewPane)
        await wait_until_async(lambda: pane.result is not None)
        details = text_of(screen.query_one("#preview-details"))
        top = pane.result.score
        assert f"{top:.3f} {scale.verdict(top)} match" in details

        # A search by example picture: no published scale, so bars against the best hit.
        send_key(app, "s")
        await wait_until_async(lambda: results.calibration is None and screen.response is not None)
        await wait_until_async(lambda: "match" not in text_of(screen.query_one("#preview-details")))
        shown = [results.get_option_at_index(i).prompt for i in range(len(results.results))]
        best = max(row.result.score for row in shown)
        assert shown[0].fraction == pytest.approx(1.0)
        for row in shown:
            assert row.fraction == pytest.approx(max(0.0, row.result.score / best))


def test_only_text_alone_is_read_on_the_family_scale():
    from clipseek.models.calibration import calibrated_query
    from clipseek.search.query import parse_query

    assert calibrated_query(parse_query(["a dog"]).terms)
    assert calibrated_query(parse_query(['"a dog" + 2:"a beach"']).terms)
    assert not calibrated_query(parse_query(['"a dog" - "a cat"']).terms)
    assert not calibrated_query([])


def test_calibration_points_and_their_inverse():
    from clipseek.models.calibration import calibration_for

    clip = calibration_for("clip")
    assert (clip.cosine_at(0.0), clip.fits, clip.cosine_at(1.0)) == pytest.approx(
        (0.16, 0.28, 0.40)
    )
    siglip = calibration_for("siglip", {"logit_scale": 110.0, "logit_bias": -16.0})
    # The model's own 50% line, and 12 logits either side (CLIP's band at its scale 100).
    assert siglip.fits == pytest.approx(16 / 110)
    assert 110 * (siglip.cosine_at(1.0) - siglip.fits) == pytest.approx(12.0)
    for scale in (clip, siglip):
        for m in (0.0, 0.25, 0.5, 0.9, 1.0):
            assert scale.match(scale.cosine_at(m)) == pytest.approx(m)
        assert scale.match(float("nan")) == 0.0
        assert [scale.verdict(scale.cosine_at(m)) for m in (0.1, 0.3, 0.6, 0.8)] == [
            "weak",
            "fair",
            "good",
            "strong",
        ]
    # A broken manifest (a scale that is not positive) falls back to typical values.
    assert calibration_for("siglip", {"logit_scale": 0.0, "logit_bias": -16.0}).fits > 0
