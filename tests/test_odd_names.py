"""File names that are not UTF-8, in every face: one rule (clipseek/photos/pathtext.py).

JSON round-trips to the exact bytes, display text escapes visibly, the clipboard gets
a shell word for the exact bytes, and nothing raises. Three kinds of name: Latin-1,
lone UTF-8 continuation bytes, and a name made only of invalid bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pictures import make_photo

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX byte file names")

ODD = [b"latin1_\xe9.bmp", b"cont_\x80\xbf.bmp", b"\xff\xfe\xfd.bmp"]
PLAIN = ["plain.bmp", "caf\u00e9 au lait.bmp"]


def _odd_paths(root: Path) -> list[str]:
    return [os.fsdecode(os.path.join(os.fsencode(root), name)) for name in ODD]


@pytest.fixture
def odd_library(tmp_path: Path) -> Path:
    root = tmp_path / "odd"
    for i, name in enumerate(PLAIN):
        make_photo(root / name, seed=i)
    for i, path in enumerate(_odd_paths(root)):
        make_photo(Path(path), seed=10 + i)
    return root


@pytest.fixture
def odd_engine(odd_library: Path, settings):
    from clipseek.engine import Engine

    engine = Engine(settings)
    summary = engine.index([str(odd_library)])
    assert summary.new == len(ODD) + len(PLAIN) and not summary.failed
    return engine


# --------------------------------------------------------------------------- the rule


def test_rule_round_trips_and_never_raises() -> None:
    from clipseek.photos.pathtext import (
        display_path,
        dumps,
        json_path_fields,
        shell_path,
        unescape_display,
    )

    for raw in [b"/p/" + name for name in ODD] + [b"/p/caf\xc3\xa9.bmp", b"/p/it's \\x41.bmp"]:
        path = os.fsdecode(raw)
        shown = display_path(path)
        shown.encode("utf-8")  # printable anywhere
        text = dumps(json_path_fields(path))
        text.encode("utf-8")
        loaded = json.loads(text)
        assert os.fsencode(loaded["path"]) == raw
        if "path_b64" in loaded:
            assert base64.b64decode(loaded["path_b64"]) == raw
        clip = shell_path(path)
        clip.encode("utf-8")
        if b"\\x41" not in raw:  # a literal backslash-x name is the one ambiguous display
            assert unescape_display(shown) in (None, path)
        if clip == path:  # valid UTF-8 names are copied as they are
            continue
        echoed = subprocess.run(
            ["bash", "-c", f"printf %s {clip}"], capture_output=True, check=True
        ).stdout
        assert echoed == raw, clip
    assert display_path(os.fsdecode(b"/p/latin1_\xe9.bmp")) == "/p/latin1_\\xe9.bmp"
    assert shell_path(os.fsdecode(b"/p/latin1_\xe9.bmp")) == "$'/p/latin1_\\xe9.bmp'"
    assert shell_path("/p/plain name.bmp") == "/p/plain name.bmp"
    assert "path_b64" not in json_path_fields("/p/café.bmp")


# --------------------------------------------------------------------------- CLI


def test_query_json_and_save_round_trip_the_exact_bytes(
    runner, cli_env, odd_library: Path, tmp_path: Path
) -> None:
    from clipseek.cli.app import app

    assert runner.invoke(app, ["index", str(odd_library)]).exit_code == 0
    result = runner.invoke(app, ["query", "a photo", "-k", "10", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    got = {os.fsencode(r["path"]) for r in payload["results"]}
    assert {os.fsencode(p) for p in _odd_paths(odd_library)} <= got
    for r in payload["results"]:
        assert os.path.exists(os.fsencode(r["path"]))
        if "path_b64" in r:
            assert base64.b64decode(r["path_b64"]) == os.fsencode(r["path"])
    assert "\\udce9" in result.stdout  # escaped in the JSON text, not a literal \\xe9

    table = runner.invoke(app, ["query", "a photo", "-k", "10"])
    assert table.exit_code == 0 and "latin1_\\xe9.bmp" in table.stdout

    out = tmp_path / "saved"
    saved = runner.invoke(app, ["query", "a photo", "-k", "10", "--save", str(out)])
    assert saved.exit_code == 0, saved.output
    (sheet_json,) = out.glob("*.json")
    results = json.loads(sheet_json.read_text(encoding="utf-8"))["results"]
    assert {os.fsencode(p) for p in _odd_paths(odd_library)} <= {
        os.fsencode(r["path"]) for r in results
    }


def test_contact_sheet_uses_a_font_that_draws_accents() -> None:
    from clipseek.search.contact_sheet import _ascii_label, label_font

    font, covers = label_font(14)
    if covers:
        # a TrueType font: é is a real glyph, not the box the bitmap font draws
        assert font.getmask("é").getbbox() != font.getmask("\uffff").getbbox()
    assert _ascii_label("café") == "caf\\xe9"


# --------------------------------------------------------------------------- the app


@pytest.mark.slow  # several seconds of CPU
def test_app_copy_and_similar_on_odd_names(odd_engine, monkeypatch) -> None:
    pytest.importorskip("textual")
    from clipseek.photos.pathtext import shell_path
    from clipseek.tui import system
    from clipseek.tui.app import ClipseekApp
    from tests.support.app import rows, search
    from tests.support.waiting import wait_until_async

    monkeypatch.setattr(system, "clipboard_command", lambda *a, **k: None)
    odd = {os.fsencode(p) for p in _odd_paths(Path(odd_engine.settings.db).parent / "odd")}

    async def run() -> None:
        app = ClipseekApp(engine=odd_engine, preview="halfcell", clock=lambda: 1000.0)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await wait_until_async(lambda: app.model_ready)
            await search(pilot, "a photo")
            found = [r for r in rows(app) if os.fsencode(r.path) in odd]
            assert len(found) == len(ODD)
            results = app.search_screen.query_one("#results")
            for result in found:
                results.highlighted = rows(app).index(result)
                await pilot.pause()
                await pilot.press("c")
                assert app.clipboard == shell_path(result.path)
                echoed = subprocess.run(
                    ["bash", "-c", f"printf %s {app.clipboard}"], capture_output=True
                ).stdout
                assert echoed == os.fsencode(result.path)
                await wait_until_async(lambda: any("\\x" in n.message for n in app._notifications))

            target = found[0]
            results.highlighted = rows(app).index(target)
            token = app.search_screen._token
            await pilot.press("s")
            await wait_until_async(lambda: app.search_screen._token > token and rows(app))
            await pilot.pause()
            box = app.search_screen.query_one("#query")
            box.value.encode("utf-8")  # no lone surrogates in the box
            assert "\\x" in box.value
            similar = [r.path for r in rows(app)]
            assert target.path not in similar
            # the text in the box reads back as the same image
            from clipseek.search.query import parse_query

            (term,) = parse_query([box.value]).terms
            assert term.kind == "image" and term.value == target.path

    asyncio.run(run())


# --------------------------------------------------------------------------- the server


@pytest.mark.slow  # a real server
def test_server_answers_searches_that_rank_odd_names(odd_engine, odd_library) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from tests.support.servers import running_server

    with (
        running_server(odd_engine) as url,
        httpx.Client(base_url=url, timeout=60, trust_env=False) as client,
    ):
        response = client.post("/search", json={"query": "a photo", "top_k": 10})
        assert response.status_code == 200, response.text
        response.content.decode("utf-8")  # valid UTF-8 on the wire
        hits = response.json()["results"]
        by_bytes = {os.fsencode(h["path"]): h for h in hits}
        for path in _odd_paths(odd_library):
            hit = by_bytes[os.fsencode(path)]
            assert base64.b64decode(hit["path_b64"]) == os.fsencode(path)
            assert client.get(hit["thumbnail_url"]).status_code == 200
            assert client.get(hit["image_url"]).status_code == 200
        assert all("path_b64" not in h for h in hits if h["path"].isprintable())
        with open(_odd_paths(odd_library)[0], "rb") as f:
            upload = client.post("/search/image", files={"file": ("q.bmp", f, "image/bmp")})
        assert upload.status_code == 200, upload.text


@pytest.mark.slow  # a real server
def test_server_says_to_send_json_with_its_content_type(odd_engine) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from tests.support.servers import running_server

    with (
        running_server(odd_engine) as url,
        httpx.Client(base_url=url, timeout=60, trust_env=False) as client,
    ):
        body = json.dumps({"query": "a photo"})
        for headers in ({}, {"Content-Type": "text/plain"}):
            response = client.post("/search", content=body, headers=headers)
            assert response.status_code == 422
            detail = response.json()["detail"]
            assert "Content-Type: application/json" in detail, detail
            assert "valid dictionary" not in detail
        good = client.post("/search", content=body, headers={"Content-Type": "application/json"})
        assert good.status_code == 200
