"""Fixtures for `clipseek serve` and the Chroma server mode: real servers on loopback ports,
and the headless browser for the web page.

One small index (tiny model, a dozen generated pictures) is built once per session and
served by a real uvicorn server in a background thread; the API tests and the browser
test share it. Every server binds 127.0.0.1 on a port the OS picks. The helpers behind
these fixtures are in tests/support (servers, browser).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engines import counting_loader, settings_for
from tests.support.pictures import draw_photo
from tests.support.servers import PHOTOS, Served, running_server


@pytest.fixture(scope="session")
def served_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served") / "photos"
    for name, (size, seed) in PHOTOS.items():
        draw_photo(root / name, size, seed)
    return root


@pytest.fixture(scope="session")
def served(
    served_photos: Path, tiny_model_dir: Path, loaded_tiny_model, tmp_path_factory
) -> Iterator[Served]:
    """The session's server: the photos indexed with the tiny model, small body limits;
    its engine is the one `clipseek serve` builds (which also indexes, through a writer)."""
    from clipseek.server import serving_engine
    from clipseek.server.app import ServerOptions

    db = tmp_path_factory.mktemp("served-db")
    loads: list[str] = []
    settings = settings_for(tiny_model_dir, db, max_megapixels=1.0)
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, loads))
    summary = engine.index([str(served_photos)])
    assert summary.new == len(PHOTOS), summary
    options = ServerOptions(max_upload_bytes=256 * 1024, max_json_bytes=8 * 1024)
    with running_server(engine, options) as url:
        yield Served(url=url, engine=engine, photos=served_photos, loads=loads)


@pytest.fixture(scope="module")
def exif_server(tmp_path_factory: pytest.TempPathFactory):
    """A server on one index: the EXIF library in photos/, planted copies in photos/dups/
    (the shipped shapes model). Yields (client, photos, planted groups, single names)."""
    import httpx

    from clipseek.config import load_settings
    from clipseek.server import serving_engine
    from clipseek.testing import fixture_model_spec
    from tests.support.pictures import EXIF_LIBRARY, plant_duplicates, write_exif_library

    root = tmp_path_factory.mktemp("filters")
    photos = root / "photos"
    write_exif_library(photos)
    planted, singles = plant_duplicates(photos / "dups")
    settings = load_settings(
        {"model": fixture_model_spec(), "db": root / "db", "device": "cpu", "precision": "fp32"}
    )
    engine = serving_engine(settings)
    summary = engine.index([str(photos)])
    assert summary.new == len(EXIF_LIBRARY) + sum(len(g) for g in planted) + len(singles)
    with (
        running_server(engine) as url,
        httpx.Client(base_url=url, timeout=120, trust_env=False) as client,
    ):
        yield client, photos, planted, singles


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Headless Chromium through its chromedriver (skips where Chromium is missing)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    from tests.support.browser import CHROMIUM_FLAGS, chromedriver, chromium

    binary = chromium()
    if binary is None:
        pytest.skip("no Chromium binary on this machine (Debian: apt-get install chromium)")
    driver_path = chromedriver()
    assert driver_path, (
        f"Chromium is installed ({binary}) but chromedriver is not; "
        "install it with: apt-get install chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
