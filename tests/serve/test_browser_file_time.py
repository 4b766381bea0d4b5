"""A date that comes from the file's time, not the photo, is marked as such on the web
page, in the grid and in the picture's window (issue 25, item 20)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from tests.support.browser import result_cards as _cards
from tests.support.browser import settled as _settled
from tests.support.browser import wait as _wait

pytestmark = pytest.mark.slow  # a server and Chromium


def test_file_time_dates_are_marked_on_the_page(browser, exif_server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    client, _, _, _ = exif_server
    d = browser
    d.set_window_size(1280, 900)
    d.get(f"{client.base_url}/ui")
    d.find_element(By.ID, "query").send_keys("a yellow circle", Keys.ENTER)
    _wait(d, lambda _: _settled(d) and len(_cards(d)) == 12)
    by_name = {c.find_element(By.CSS_SELECTOR, ".name").text: c for c in _cards(d)}
    no_exif = by_name["no-exif.jpg"]
    old = by_name["old.jpg"]
    assert "file time" in no_exif.find_element(By.CSS_SELECTOR, ".taken").text
    assert "file time" not in old.find_element(By.CSS_SELECTOR, ".taken").text
    no_exif.click()
    modal = d.find_element(By.ID, "modal")
    _wait(d, lambda _: modal.get_attribute("open") is not None)
    assert "(file time)" in d.find_element(By.ID, "modal-taken").text
    d.find_element(By.ID, "modal-close").click()
