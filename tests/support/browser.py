"""Headless Chromium for the web page, driven by Selenium.

Selenium is given the chromedriver path, so Selenium Manager never runs and nothing is
downloaded; the browser only ever talks to a test server on 127.0.0.1. The ``browser``
fixture is in tests/serve/conftest.py.
"""

from __future__ import annotations

import os
import shutil

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


def chromium() -> str | None:
    """The Chromium binary: ``CLIPSEEK_TEST_CHROMIUM``, else the first one on PATH."""
    override = os.environ.get("CLIPSEEK_TEST_CHROMIUM")
    if override:
        return override
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def chromedriver() -> str | None:
    return os.environ.get("CLIPSEEK_TEST_CHROMEDRIVER") or shutil.which("chromedriver")


def wait(driver, condition, timeout: float = 60):
    """Selenium's own wait (it polls the page); returns what ``condition`` returned."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def result_cards(driver) -> list:
    """The result cards on the page."""
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results .card")


def settled(driver) -> bool:
    """Whether the results grid has its answer (no search in flight)."""
    from selenium.webdriver.common.by import By

    grid = driver.find_element(By.ID, "results")
    return grid.get_attribute("aria-busy") is None


def severe_console_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
