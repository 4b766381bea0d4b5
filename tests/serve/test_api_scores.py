"""The web API's and page's scores on the model family's scale.

A text search's hits carry ``match`` (0 to 1, 0.5 where the text fits the picture) and
``verdict`` from :meth:`Engine.calibration`, beside the exact raw ``score``; a search by
image carries null for both. The page draws its bars from ``match``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import result_cards, settled, severe_console_messages, wait
from tests.support.engines import engine_with, settings_for
from tests.support.servers import running_server

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow  # real servers (and Chromium)


@pytest.fixture(scope="module")
def family_servers(tmp_path_factory: pytest.TempPathFactory, served_photos, tiny_model_dir):
    """A CLIP and a SigLIP stand-in, each on its own index of the served photos:
    {family: (client, engine)}."""
    from contextlib import ExitStack

    from clipseek.models import load_model, resolve_model
    from clipseek.testing import build_tiny_siglip

    siglip_dir = build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"), seed=1)
    out = {}
    with ExitStack() as stack:
        for family, model_dir in (("clip", tiny_model_dir), ("siglip", siglip_dir)):
            model = load_model(
                resolve_model(f"local-dir:{model_dir}"), device="cpu", precision="fp32"
            )
            settings = settings_for(model_dir, tmp_path_factory.mktemp(f"db-{family}"))
            engine = engine_with(settings, model)
            assert not engine.index([str(served_photos)]).failed
            url = stack.enter_context(running_server(engine))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=120, trust_env=False))
            out[family] = (client, engine)
        yield out


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_text_hits_carry_the_family_match_and_image_hits_none(
    family_servers, served_photos: Path, family: str
):
    client, engine = family_servers[family]
    scale = engine.calibration()
    assert scale.family == family
    r = client.post("/search", json={"query": "a sunny beach", "top_k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 5
    for hit in hits:
        assert hit["match"] == pytest.approx(scale.match(hit["score"]), abs=1e-3)
        assert hit["verdict"] == scale.verdict(hit["score"])
    # A difference of texts is not on that scale.
    r = client.post("/search", json={"query": '"a sunny beach" - "a city"', "top_k": 3})
    assert r.status_code == 200, r.text
    assert {h["match"] for h in r.json()["results"]} == {None}
    with open(served_photos / "forest.jpg", "rb") as fh:
        r = client.post(
            "/search/image", files={"file": ("forest.jpg", fh, "image/jpeg")}, data={"top_k": "3"}
        )
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert [(h["match"], h["verdict"]) for h in hits] == [(None, None)] * 3
    assert hits[0]["score"] > 0.99  # the raw score is still there, exact


def test_same_relative_match_same_json_in_each_family(family_servers):
    """The scale each server reads its hits on puts the same match at the two families'
    different cosines (the JSON's match comes from it, as the test above holds)."""
    scales = {family: engine.calibration() for family, (_, engine) in family_servers.items()}
    for position in (0.2, 0.5, 0.8):
        clip_cos = scales["clip"].cosine_at(position)
        siglip_cos = scales["siglip"].cosine_at(position)
        assert abs(clip_cos - siglip_cos) > 0.01
        assert scales["clip"].match(clip_cos) == pytest.approx(scales["siglip"].match(siglip_cos))


def test_page_bars_and_modal_follow_the_family_match(browser, family_servers, served_photos: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    client, engine = family_servers["siglip"]
    scale = engine.calibration()
    d = browser
    d.get(str(client.base_url) + "/")
    d.find_element(By.ID, "query").send_keys("a sunny beach", Keys.ENTER)
    wait(d, lambda _: settled(d) and len(result_cards(d)) > 1)
    for card in result_cards(d):
        score = float(card.find_element(By.CSS_SELECTOR, ".score").text)
        fill = card.find_element(By.CSS_SELECTOR, ".bar span")
        width = float(fill.get_attribute("style").split("width:")[1].split("%")[0])
        assert width == pytest.approx(100 * scale.match(score), abs=0.2)
        title = card.find_element(By.CSS_SELECTOR, ".score-row").get_attribute("title")
        assert title.lower().startswith(f"{scale.verdict(score)} match")
    result_cards(d)[0].click()
    modal_score = d.find_element(By.ID, "modal-score")
    wait(d, lambda _: "match" in modal_score.text)
    top = float(result_cards(d)[0].find_element(By.CSS_SELECTOR, ".score").text)
    assert modal_score.text == f"score {top:.3f} · {scale.verdict(top)} match"
    assert severe_console_messages(d) == []
