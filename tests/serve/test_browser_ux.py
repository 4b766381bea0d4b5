"""The web page in Chromium: what a hands-on trial found (issue 13)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.browser import result_cards, settled, wait
from tests.support.engines import settings_for
from tests.support.pictures import draw_photo
from tests.support.servers import running_server

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
pytest.importorskip("selenium.webdriver", reason="pip install selenium")

pytestmark = pytest.mark.slow  # Chromium and a real server

PICTURES = {
    "big.png": ((512, 512), 21),
    "portrait.jpg": ((60, 120), 22),
    "2023/pic.jpg": ((80, 60), 23),
    "2024/pic.jpg": ((80, 60), 24),
    "scan.tif": ((90, 60), 25),
}
ODD = b"latin1_\xe9.png"


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, tiny_model_dir, loaded_tiny_model):
    from clipseek.server import serving_engine

    root = tmp_path_factory.mktemp("page") / "photos"
    for name, (size, seed) in PICTURES.items():
        draw_photo(root / name, size, seed)
    draw_photo(Path(os.fsdecode(os.path.join(os.fsencode(root), ODD))), (70, 70), 26)
    settings = settings_for(tiny_model_dir, tmp_path_factory.mktemp("page-db"))
    engine = serving_engine(settings, model_loader=lambda *_: loaded_tiny_model)
    assert engine.index([str(root)]).new == len(PICTURES) + 1
    with running_server(engine) as url:
        yield url, root


def _search(d, url: str, n: int) -> list:
    d.get(f"{url}/?q=a+photo&n={n}")
    wait(d, lambda _: settled(d) and len(result_cards(d)) == n)
    return result_cards(d)


def test_cards_align_show_folders_and_escape_odd_names(browser, page_server):
    from selenium.webdriver.common.by import By

    url, _root = page_server
    d = browser
    d.set_window_size(1280, 900)
    cards = _search(d, url, len(PICTURES) + 1)
    heights = {round(c.rect["height"]) for c in cards}
    assert len(heights) == 1, heights  # a portrait picture does not stretch its card
    by_name: dict[str, list[str]] = {}
    for card in cards:
        name = card.find_element(By.CSS_SELECTOR, ".name").text
        folder = card.find_element(By.CSS_SELECTOR, ".folder").text
        by_name.setdefault(name, []).append(folder)
    assert sorted(by_name["pic.jpg"]) == ["…/photos/2023", "…/photos/2024"]
    assert "latin1_\\xe9.png" in by_name, sorted(by_name)  # an escape, not a box
    d.save_screenshot(str(Path(os.environ.get("CLIPSEEK_SHOTS", "/tmp")) / "page-grid.png"))


def test_modal_fits_at_1280x900_and_on_a_phone(browser, page_server):
    from selenium.webdriver.common.by import By

    url, _root = page_server
    d = browser
    for width, height in ((1280, 900), (390, 844)):
        d.set_window_size(width, height)
        cards = _search(d, url, len(PICTURES) + 1)
        big = next(c for c in cards if c.find_element(By.CSS_SELECTOR, ".name").text == "big.png")
        big.click()
        modal = d.find_element(By.ID, "modal")
        image = d.find_element(By.ID, "modal-image")
        wait(d, lambda _, m=modal: m.get_attribute("open") is not None)
        wait(d, lambda _, i=image: "size=1280" in (i.get_attribute("src") or ""))
        wait(d, lambda _, i=image: d.execute_script("return arguments[0].complete", i))
        scroll = d.execute_script(
            "return [arguments[0].scrollHeight, arguments[0].clientHeight]", modal
        )
        assert scroll[0] <= scroll[1] + 1, (width, scroll)  # nothing to scroll inside
        close = d.execute_script(
            "const r = document.getElementById('modal-close').getBoundingClientRect();"
            "const e = document.documentElement;"
            "return [r.left, r.top, r.right, r.bottom, e.clientWidth, e.clientHeight];"
        )
        left, top, right, bottom, view_w, view_h = close
        assert left >= 0 and top >= 0 and right <= view_w and bottom <= view_h, (width, close)
        shots = Path(os.environ.get("CLIPSEEK_SHOTS", "/tmp"))
        d.save_screenshot(str(shots / f"page-modal-{width}.png"))
        d.find_element(By.ID, "modal-close").click()
    d.set_window_size(1280, 900)


def test_a_tiff_example_shows_no_broken_preview(browser, page_server):
    from selenium.webdriver.common.by import By

    url, root = page_server
    d = browser
    d.get(url + "/")
    d.find_element(By.ID, "file").send_keys(str(root / "scan.tif"))
    chip = d.find_element(By.ID, "image-chip")
    wait(d, lambda _: settled(d) and result_cards(d))
    wait(d, lambda _: "no-preview" in (chip.get_attribute("class") or ""))
