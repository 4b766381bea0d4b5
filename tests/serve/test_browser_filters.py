"""The web page's filter row in headless Chromium: the filters reach the server, the dates
and cameras show, and the row fits a laptop window and a phone."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytest.importorskip("selenium.webdriver", reason="pip install selenium")

from tests.support.browser import result_cards, settled, wait

pytestmark = pytest.mark.slow  # Chromium and a real server


def _set(driver, element_id: str, value: str) -> None:
    """Set a field as a person would end up with, and tell the page (month inputs take
    keystrokes in a locale-dependent order, so the value is set directly)."""
    driver.execute_script(
        "const f = document.getElementById(arguments[0]); f.value = arguments[1];"
        "f.dispatchEvent(new Event(f.tagName === 'SELECT' ? 'change' : 'input'));",
        element_id,
        value,
    )


def _names(driver) -> set[str]:
    from selenium.webdriver.common.by import By

    return {c.find_element(By.CSS_SELECTOR, ".name").text for c in result_cards(driver)}


def test_filter_row_narrows_sorts_and_shows_dates(browser, exif_server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    client, _, _, _ = exif_server
    d = browser
    d.set_window_size(1280, 900)
    d.get(f"{client.base_url}/ui")
    d.find_element(By.ID, "query").send_keys("a yellow circle", Keys.ENTER)
    wait(d, lambda _: settled(d) and len(result_cards(d)) == 12)

    _set(d, "f-after", "2024-06")
    _set(d, "f-before", "2024-09")
    wait(d, lambda _: settled(d) and _names(d) == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"})
    assert d.find_element(By.ID, "f-clear").is_displayed()

    _set(d, "f-after", "")
    _set(d, "f-before", "")
    _set(d, "f-camera", "eos")
    _set(d, "f-sort", "date")
    wait(d, lambda _: settled(d) and [c.get_attribute("title") for c in result_cards(d)] != [])
    wait(d, lambda _: _names(d) == {"old.jpg", "winter.jpg"})
    cards = result_cards(d)
    assert [c.find_element(By.CSS_SELECTOR, ".name").text for c in cards] == [
        "old.jpg",
        "winter.jpg",
    ]
    assert "2019" in cards[0].find_element(By.CSS_SELECTOR, ".taken").text
    cards[0].click()
    modal = d.find_element(By.ID, "modal")
    wait(d, lambda _: modal.get_attribute("open") is not None)
    assert "2019" in d.find_element(By.ID, "modal-taken").text
    assert "Canon EOS R5" in d.find_element(By.ID, "modal-camera").text
    d.find_element(By.ID, "modal-close").click()
    wait(d, lambda _: modal.get_attribute("open") is None)

    # a bad size is the server's sentence on the page, not a broken grid
    _set(d, "f-size", "big")
    message = d.find_element(By.ID, "message")
    wait(d, lambda _: "min_size takes WIDTHxHEIGHT" in message.text)

    # the row fits: no sideways scrolling at 1280×900 nor on a phone
    for width, height in ((1280, 900), (390, 844)):
        d.set_window_size(width, height)
        overflow = d.execute_script(
            "const r = document.getElementById('filters').getBoundingClientRect();"
            "return [r.right, document.documentElement.clientWidth,"
            " document.documentElement.scrollWidth];"
        )
        assert overflow[0] <= overflow[1] + 1 and overflow[2] <= overflow[1] + 1, (width, overflow)
    d.set_window_size(1280, 900)
    d.find_element(By.ID, "f-clear").click()
    wait(d, lambda _: settled(d) and len(result_cards(d)) == 12)
