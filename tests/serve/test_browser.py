"""The web page in a real browser: Debian's headless Chromium driven by Selenium.

Selenium is given the chromedriver path, so Selenium Manager never runs and nothing is
downloaded; the browser only ever talks to the test server on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from serve_support import PHOTOS

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
webdriver_mod = pytest.importorskip("selenium.webdriver", reason="pip install selenium")

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _chromium() -> str | None:
    override = os.environ.get("CLIPSEEK_TEST_CHROMIUM")
    if override:
        return override
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    from selenium.webdriver.chrome.service import Service

    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary on this machine (Debian: apt-get install chromium)")
    driver_path = os.environ.get("CLIPSEEK_TEST_CHROMEDRIVER") or shutil.which("chromedriver")
    assert driver_path, (
        f"Chromium is installed ({binary}) but chromedriver is not; "
        "install it with: apt-get install chromium-driver"
    )
    options = webdriver_mod.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver_mod.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _cards(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def _settled(driver) -> bool:
    from selenium.webdriver.common.by import By

    grid = driver.find_element(By.ID, "results")
    return grid.get_attribute("aria-busy") is None


def _severe_console_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_search_grid_modal_and_result_count(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(served.url + "/")
    assert d.title == "clipseek"
    status = d.find_element(By.ID, "status")
    _wait(d, lambda _: "images" in status.text)
    assert status.text.startswith(f"{len(PHOTOS)} images")

    # type a query: the grid fills with every photo (the default count, 12, is more)
    box = d.find_element(By.ID, "query")
    box.send_keys("a sunny beach with palm trees", Keys.ENTER)
    _wait(d, lambda _: _settled(d) and len(_cards(d)) == len(PHOTOS))
    cards = _cards(d)
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
    _wait(d, lambda _: modal.get_attribute("open") is not None)
    assert d.find_element(By.ID, "modal-path").text == first_path
    assert d.find_element(By.ID, "modal-score").text == f"score {scores[0]:.3f}"
    image = d.find_element(By.ID, "modal-image")
    _wait(d, lambda _: "thumbnails/" in (image.get_attribute("src") or ""))
    _wait(d, lambda _: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    href = d.find_element(By.ID, "modal-open").get_attribute("href")
    assert href == f"{served.url}/images/{_id_of(first_path)}"
    d.find_element(By.ID, "modal-close").click()
    _wait(d, lambda _: modal.get_attribute("open") is None)

    # change the result count with the keyboard: Home = 1, two steps right = 3
    slider = d.find_element(By.ID, "count")
    slider.send_keys(Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert d.find_element(By.ID, "count-value").text == "3"
    _wait(d, lambda _: _settled(d) and len(_cards(d)) == 3)
    assert "n=3" in d.current_url
    assert _cards(d)[0].get_attribute("title") == first_path

    assert _severe_console_messages(d) == []


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
    _wait(d, lambda _: chip.is_displayed() and len(_cards(d)) == 4 and _settled(d))
    assert d.find_element(By.ID, "chip-name").text == "dog.webp"
    assert _cards(d)[0].get_attribute("title") == example  # the image itself ranks first

    # a query the server refuses shows its message, and the grid empties
    box = d.find_element(By.ID, "query")
    box.clear()
    box.send_keys("+ -", Keys.ENTER)
    message = d.find_element(By.ID, "message")
    _wait(d, lambda _: message.get_attribute("data-state") == "error")
    assert "operators" in message.text
    assert _cards(d) == []
    assert not chip.is_displayed()
    assert [m for m in _severe_console_messages(d) if "422" not in m] == []


def test_phone_width_layout(browser, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.set_window_size(390, 844)
    try:
        d.get(served.url + "/")
        d.find_element(By.ID, "query").send_keys("a city at night", Keys.ENTER)
        _wait(d, lambda _: _settled(d) and len(_cards(d)) == len(PHOTOS))
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
