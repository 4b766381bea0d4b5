"""The web page in a real browser: Debian's headless Chromium driven by Selenium.

Selenium is given the chromedriver path, so Selenium Manager never runs and nothing is
downloaded; the browser only ever talks to the test server on 127.0.0.1.
"""

from __future__ import annotations

import os

import pytest

from tests.support.browser import result_cards, settled, severe_console_messages, wait
from tests.support.servers import PHOTOS

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytest.importorskip("selenium.webdriver", reason="pip install selenium")

pytestmark = pytest.mark.slow  # Chromium and a real server


def test_search_grid_modal_and_result_count(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(served.url + "/")
    assert d.title == "clipseek"
    status = d.find_element(By.ID, "status")
    wait(d, lambda _: "images" in status.text)
    assert status.text.startswith(f"{len(PHOTOS)} images")

    # type a query: the grid fills with every photo (the default count, 12, is more)
    box = d.find_element(By.ID, "query")
    box.send_keys("a sunny beach with palm trees", Keys.ENTER)
    wait(d, lambda _: settled(d) and len(result_cards(d)) == len(PHOTOS))
    cards = result_cards(d)
    scores = [float(c.find_element(By.CSS_SELECTOR, ".score").text) for c in cards]
    assert scores == sorted(scores, reverse=True)
    names = {c.find_element(By.CSS_SELECTOR, ".name").text for c in cards}
    assert names == {os.path.basename(n) for n in PHOTOS}
    for card in cards:
        img = card.find_element(By.CSS_SELECTOR, "img")
        assert img.get_attribute("src").startswith("data:image/jpeg;base64,")
        assert d.execute_script("return arguments[0].naturalWidth", img) > 0

    # open the modal on the first result: larger image and the full path
    first_path = cards[0].get_attribute("title")
    cards[0].click()
    modal = d.find_element(By.ID, "modal")
    wait(d, lambda _: modal.get_attribute("open") is not None)
    assert d.find_element(By.ID, "modal-path").text == first_path
    # the raw score, then the match in a word (tests/serve/test_api_scores.py)
    assert d.find_element(By.ID, "modal-score").text.startswith(f"score {scores[0]:.3f} · ")
    image = d.find_element(By.ID, "modal-image")
    wait(d, lambda _: "thumbnails/" in (image.get_attribute("src") or ""))
    wait(d, lambda _: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    href = d.find_element(By.ID, "modal-open").get_attribute("href")
    assert href == f"{served.url}/images/{_id_of(first_path)}"
    d.find_element(By.ID, "modal-close").click()
    wait(d, lambda _: modal.get_attribute("open") is None)

    # change the result count with the keyboard: Home = 1, two steps right = 3
    slider = d.find_element(By.ID, "count")
    slider.send_keys(Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert d.find_element(By.ID, "count-value").text == "3"
    wait(d, lambda _: settled(d) and len(result_cards(d)) == 3)
    assert "n=3" in d.current_url
    assert result_cards(d)[0].get_attribute("title") == first_path

    assert severe_console_messages(d) == []


def _id_of(path: str) -> str:
    from clipseek.store import path_id

    return path_id(path)


def test_search_by_uploaded_image_and_error_state(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(served.url + "/ui?n=4")
    assert d.find_element(By.ID, "count-value").text == "4"
    example = served.path_of("dog.webp")
    d.find_element(By.ID, "file").send_keys(example)
    chip = d.find_element(By.ID, "image-chip")
    wait(d, lambda _: chip.is_displayed() and len(result_cards(d)) == 4 and settled(d))
    assert d.find_element(By.ID, "chip-name").text == "dog.webp"
    assert result_cards(d)[0].get_attribute("title") == example  # the image itself ranks first

    # a query the server refuses shows its message, and the grid empties
    box = d.find_element(By.ID, "query")
    box.clear()
    box.send_keys("+ -", Keys.ENTER)
    message = d.find_element(By.ID, "message")
    wait(d, lambda _: message.get_attribute("data-state") == "error")
    assert "operators" in message.text
    assert result_cards(d) == []
    assert not chip.is_displayed()
    assert [m for m in severe_console_messages(d) if "422" not in m] == []


def test_phone_width_layout(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.set_window_size(390, 844)
    try:
        d.get(served.url + "/")
        d.find_element(By.ID, "query").send_keys("a city at night", Keys.ENTER)
        wait(d, lambda _: settled(d) and len(result_cards(d)) == len(PHOTOS))
        inner = d.execute_script("return window.innerWidth")
        assert d.execute_script("return document.documentElement.scrollWidth") <= inner
        columns = d.execute_script(
            "return getComputedStyle(document.getElementById('results'))"
            ".gridTemplateColumns.split(' ').length"
        )
        assert columns == 2
        button = d.find_element(By.ID, "go")
        assert button.size["width"] > inner * 0.8  # the search button spans the width
    finally:
        d.set_window_size(1280, 900)
