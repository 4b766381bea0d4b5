"""The ``in`` filter gives one answer for every folder outside the index, also for a
folder reached through a link that leads out of it (issue 25, item 6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx

from tests.support.engines import counting_loader
from tests.support.engines import settings_for as make_settings
from tests.support.pictures import draw_photo
from tests.support.servers import running_server

pytestmark = pytest.mark.slow  # servers and processes


@pytest.fixture
def linked_server(tmp_path, tiny_model_dir, loaded_tiny_model):
    """A server over photos/ that holds a link to a folder of pictures elsewhere (indexed
    through the link) and, added after indexing, a link to /etc."""
    from clipseek.server import serving_engine

    photos = tmp_path / "photos"
    for i, name in enumerate(("a.jpg", "b.png", "sub/c.jpg")):
        draw_photo(photos / name, (64 + i, 48), i)
    elsewhere = tmp_path / "elsewhere"
    draw_photo(elsewhere / "trip" / "d.jpg", (70, 50), 7)
    (elsewhere / "empty").mkdir()
    (photos / "nas").symlink_to(elsewhere)
    settings = make_settings(tiny_model_dir, tmp_path / "db")
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, []))
    assert engine.index([str(photos)]).new == 4
    (photos / "etclink").symlink_to("/etc")
    with running_server(engine) as url:
        yield url, photos


def test_in_through_a_link_leading_out_gives_one_answer(linked_server) -> None:
    url, photos = linked_server
    outside = [
        "/etc",
        "/nonexistent",
        f"{photos}/etclink",
        f"{photos}/etclink/ssh",
        f"{photos}/etclink/nosuchdir",
        f"{photos}/nas/empty",
        f"{photos}/nas/nosuchdir",
    ]
    assert os.path.isdir("/etc")
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as c:
        answers = {}
        for folder in outside:
            search = c.post("/search", json={"query": "x", "in": folder})
            dups = c.get("/duplicates", params={"in": folder})
            with open(photos / "a.jpg", "rb") as fh:
                upload = c.post(
                    "/search/image",
                    files={"file": ("q.jpg", fh, "image/jpeg")},
                    data={"in": folder},
                )
            answers[folder] = {
                (r.status_code, r.json()["detail"].replace(folder, "FOLDER"))
                for r in (search, dups, upload)
            }
        assert all(len(a) == 1 for a in answers.values()), answers
        assert len({next(iter(a)) for a in answers.values()}) == 1, answers
        # what the index holds through the link is still searchable by folder
        trip = c.post("/search", json={"query": "x", "in": f"{photos}/nas/trip", "top_k": 9})
        assert trip.status_code == 200 and trip.json()["total_results"] == 1
        assert c.get("/duplicates", params={"in": f"{photos}/nas/trip"}).status_code == 200
        # inside the indexed folders themselves, a missing folder may be named
        missing = c.post("/search", json={"query": "x", "in": f"{photos}/nosuchdir"})
        assert missing.status_code == 422 and "no folder" in missing.json()["detail"]


def test_cli_in_gives_one_answer_for_folders_outside_the_index(
    tmp_path: Path, runner, cli_env
) -> None:
    from clipseek.cli.app import app

    photos = tmp_path / "photos"
    draw_photo(photos / "a.jpg", (64, 48), 1)
    draw_photo(photos / "b.jpg", (64, 48), 1)
    assert runner.invoke(app, ["index", str(photos)]).exit_code == 0
    (photos / "etclink").symlink_to("/etc")
    answers = {}
    for folder in ("/etc", "/nonexistent", f"{photos}/etclink/ssh", f"{photos}/etclink/nope"):
        query = runner.invoke(app, ["query", "x", "--in", folder])
        dups = runner.invoke(app, ["duplicates", "--in", folder])
        answers[folder] = (
            query.exit_code,
            query.output.replace(folder, "FOLDER"),
            dups.exit_code,
            dups.output.replace(folder, "FOLDER"),
        )
    assert len(set(answers.values())) == 1, answers
    missing = runner.invoke(app, ["query", "x", "--in", str(photos / "nope")])
    assert missing.exit_code == 1 and "no such folder" in missing.output
