"""Issue 24: ``clipseek serve`` on a local index reads like the app (the direct reader over
the vector cache: no snapshot, no chromadb on the search path), follows another writer's
commits from what they appended, and never writes the index."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx

from tests.support.engines import counting_loader, settings_for
from tests.support.files import file_hashes
from tests.support.pictures import draw_photo
from tests.support.servers import running_server

pytestmark = pytest.mark.slow  # a real uvicorn server on a loopback port


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def _found(client: httpx.Client) -> set[str]:
    r = client.post("/search", json={"query": "a picture", "top_k": 50})
    assert r.status_code == 200, r.text
    return {hit["path"] for hit in r.json()["results"]}


def test_a_writers_commit_is_seen_by_the_next_search(
    tmp_path: Path, tiny_model_dir: Path, loaded_tiny_model, monkeypatch
) -> None:
    from clipseek.engine import Engine
    from clipseek.server import serving_engine
    from clipseek.store import vector_cache
    from clipseek.store.direct import DirectIndex

    snaps = tmp_path / "snaps"
    snaps.mkdir()
    monkeypatch.setenv("CLIPSEEK_SNAPSHOT_DIR", str(snaps))
    first, later = tmp_path / "photos" / "first", tmp_path / "photos" / "later"
    for i in range(4):
        draw_photo(first / f"a{i}.jpg", (64 + i, 48), 20 + i)
        draw_photo(later / f"b{i}.png", (60, 50 + i), 40 + i)
    settings = settings_for(tiny_model_dir, tmp_path / "db")
    loader = counting_loader(loaded_tiny_model, [])
    assert Engine(settings, model_loader=loader).index([str(first)]).new == 4
    caught_up: list[int] = []
    real = vector_cache._caught_up

    def spy(previous, manifest, con, same_files):
        caught_up.append(manifest.rows - previous.manifest.rows)
        return real(previous, manifest, con, same_files)

    monkeypatch.setattr(vector_cache, "_caught_up", spy)
    engine = serving_engine(settings, model_loader=loader)
    with (
        running_server(engine) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=60) as c,
    ):
        assert {Path(p).parent for p in _found(c)} == {first}
        # Another process's index run (here: a writer engine of its own) adds four.
        assert Engine(settings, model_loader=loader).index([str(first), str(later)]).new == 4
        found = _found(c)
        assert len(found) == 8 and {Path(p).parent for p in found} == {first, later}
        assert c.get("/").json()["indexed_images"] == 8
        inside = c.post("/search", json={"query": "x", "in": str(later)}).json()["results"]
        assert {Path(h["path"]).parent for h in inside} == {later}
        newest = inside[0]["id"]
        assert c.get(f"/thumbnails/{newest}").status_code == 200
    index = engine.store._direct_indexes[engine.open_index().name]
    assert isinstance(index, DirectIndex)
    assert index.unavailable is None and index.from_cache
    assert caught_up == [4]  # the new rows only, read once
    assert engine.store._snapshot is None and list(snaps.iterdir()) == []


def test_serving_writes_nothing_to_the_index(served) -> None:
    db = Path(served.engine.settings.db)
    before = file_hashes(db)
    with httpx.Client(base_url=served.url, trust_env=False, timeout=60) as c:
        assert c.get("/health").status_code == 200
        hits = c.post("/search", json={"query": "a beach", "top_k": 5}).json()["results"]
        assert hits
        trips = served.path_of("trips")
        assert c.post("/search", json={"query": "x", "in": trips}).status_code == 200
        r = c.post("/search/image", files={"file": ("q.png", _png(), "image/png")})
        assert r.status_code == 200, r.text
        assert c.get(f"/images/{hits[0]['id']}").status_code == 200
        assert c.get(f"/thumbnails/{hits[1]['id']}").status_code == 200
        assert c.get("/duplicates").status_code == 200
    assert file_hashes(db) == before
    assert served.engine.store._snapshot is None  # nothing went through Chroma


def test_the_serving_engine_reads_the_files_unless_the_index_is_a_chroma_server(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from clipseek.server import serving_engine

    local = serving_engine(settings_for(tiny_model_dir, tmp_path / "db"))
    assert local.store.direct and local.store.approximate and not local.quick_start
    url = "http://127.0.0.1:9"
    remote = serving_engine(settings_for(tiny_model_dir, tmp_path / "unused", chroma_url=url))
    assert remote.store.is_remote and not remote.store.direct and not remote.store.approximate
