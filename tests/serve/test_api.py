"""The REST API of `clipseek serve`, exercised over HTTP against a real uvicorn server."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx

from clipseek.store import path_id
from tests.support.engines import counting_loader, settings_for
from tests.support.servers import PHOTOS, SUBFOLDER, free_port, running_server

pytestmark = pytest.mark.slow  # a real uvicorn server on a loopback port

SHAPE_KEYS = {"image", "score", "path", "id"}


@pytest.fixture(scope="module")
def client(served) -> httpx.Client:
    with httpx.Client(base_url=served.url, timeout=60, trust_env=False) as c:
        yield c


def jpeg_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        return im.size


def search(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/search", json=body)


# --------------------------------------------------------------------------- health and page


def test_health_reports_model_count_and_location(client, served):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    health = r.json()
    assert health["status"] == "ok"
    assert health["indexed_images"] == len(PHOTOS)
    assert health["model"] == served.engine.spec.name
    assert health["index"] == str(served.engine.settings.db)
    assert health["remote"] is False
    assert client.get("/health").json() == health
    assert r.headers["x-content-type-options"] == "nosniff"


def test_browsers_get_the_page_at_root_and_ui(client):
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for path, accept in (("/", browser_accept), ("/ui", "*/*")):
        r = client.get(path, headers={"Accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert 'id="search-form"' in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
    for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        r = client.get(asset)
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert len(r.content) > 1000


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html,application/xhtml+xml,*/*;q=0.8", True),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.9, application/json;q=0.5", True),
        ("text/html;q=0", False),
    ],
)
def test_root_negotiates_html_only_when_preferred(accept, html):
    from clipseek.server.routes.health import prefers_html

    assert prefers_html(accept) is html


def test_openapi_schema_describes_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/", "/search", "/search/image", "/images/{image_id}", "/thumbnails/{image_id}"):
        assert path in paths, path
    request = schema["components"]["schemas"]["SearchRequest"]["properties"]
    assert request["top_k"]["maximum"] == 200 and request["top_k"]["minimum"] == 1
    assert "in" in request
    assert "multipart/form-data" in paths["/search/image"]["post"]["requestBody"]["content"]


# --------------------------------------------------------------------------- text search


def test_search_answers_the_original_shape_with_thumbnails(client, served):
    r = search(client, query="a dog playing in the park", top_k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == '"a dog playing in the park"'
    assert body["total_results"] == 5 == len(body["results"])
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    indexed = {served.path_of(name) for name in PHOTOS}
    for hit in body["results"]:
        assert hit.keys() >= SHAPE_KEYS
        assert hit["path"] in indexed
        assert hit["id"] == path_id(hit["path"])
        assert hit["image"].startswith("data:image/jpeg;base64,")
        width, height = jpeg_size(base64.b64decode(hit["image"].split(",", 1)[1]))
        assert max(width, height) <= 256
        assert hit["image_url"] == f"/images/{hit['id']}"
        assert hit["thumbnail_url"] == f"/thumbnails/{hit['id']}"


def test_search_ranks_like_the_engine(client, served):
    """The API is a face, not a second search: the same query ranks the same ids."""
    from clipseek.search.query import parse_query

    query = '"a cat" + 2:"a hat" - "blurry"'
    body = search(client, query=query, top_k=len(PHOTOS)).json()
    direct = served.engine.search(parse_query([query]), len(PHOTOS))
    assert body["query"] == str(parse_query([query]))
    assert [h["id"] for h in body["results"]] == [r.id for r in direct.results]
    assert [h["score"] for h in body["results"]] == pytest.approx(
        [r.score for r in direct.results], abs=1e-6
    )


def test_top_k_above_the_index_returns_everything(client):
    body = search(client, query="anything", top_k=200).json()
    assert body["total_results"] == len(PHOTOS)


def test_search_in_a_folder(client, served):
    folder = served.path_of(SUBFOLDER)
    body = client.post("/search", json={"query": "a trip", "top_k": 50, "in": folder}).json()
    inside = [n for n in PHOTOS if n.startswith(SUBFOLDER + "/")]
    assert body["total_results"] == len(inside)
    assert all(h["path"].startswith(folder + os.sep) for h in body["results"])


def test_paths_in_a_query_stay_text(client, served):
    """A client must not make the server read its files: an image path is just words."""
    indexed = served.path_of("beach.jpg")
    body = search(client, query=indexed, top_k=3).json()
    assert body["query"] == f'"{indexed}"'
    body = search(client, query="/etc/passwd + ~/secret.jpg", top_k=1).json()
    assert body["query"] == '"/etc/passwd" + "~/secret.jpg"'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "query: This field is required"),
        ({"query": ""}, "query: String should have at least 1 character"),
        ({"query": "   "}, "The query is empty"),
        ({"query": "+ -"}, "operators"),
        ({"query": "x", "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ({"query": "x", "top_k": 201}, "top_k: Input should be less than or equal to 200"),
        ({"query": "x", "top_k": "many"}, "top_k: Input should be a valid integer"),
        ({"query": "x", "topk": 3}, "topk: Extra inputs are not permitted"),
        ({"query": "x" * 1001}, "query: String should have at most 1000 characters"),
        ({"query": "x", "in": "/no/such/folder"}, "/no/such/folder is not inside a folder"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
def test_search_rejects_bad_requests_with_a_clear_422(client, body, expected):
    r = client.post("/search", json=body)
    assert r.status_code == 422, r.text
    assert expected in r.json()["detail"]


def test_search_rejects_broken_json(client):
    r = client.post("/search", content=b'{"query": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == "The body is not valid JSON."


def test_oversized_body_is_refused_by_length(served):
    """Refused from the Content-Length alone, before a byte of the body is read."""
    url = urlparse(served.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("POST", "/search")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(50 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert "larger than this server accepts" in json.loads(response.read())["detail"]
    finally:
        conn.close()


def test_oversized_chunked_body_is_refused_while_streaming(client):
    def chunks():
        yield b'{"query": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "8 KB" in r.json()["detail"]


# --------------------------------------------------------------------------- image search


def test_search_by_uploaded_image_finds_that_image_first(client, served):
    path = served.path_of("forest.jpg")
    with open(path, "rb") as fh:
        r = client.post(
            "/search/image", files={"file": ("forest.jpg", fh, "image/jpeg")}, data={"top_k": "3"}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "image: forest.jpg"
    assert body["total_results"] == 3
    first = body["results"][0]
    assert first["path"] == path
    assert first["score"] > 0.99
    assert body["results"][1]["score"] < first["score"]


def test_image_search_in_a_folder(client, served):
    with open(served.path_of("beach.jpg"), "rb") as fh:
        r = client.post(
            "/search/image",
            files={"file": ("beach.jpg", fh, "image/jpeg")},
            data={"top_k": "10", "in": served.path_of(SUBFOLDER)},
        )
    assert r.status_code == 200, r.text
    paths = [h["path"] for h in r.json()["results"]]
    assert paths and all(p.startswith(served.path_of(SUBFOLDER) + os.sep) for p in paths)


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", size).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("notes.txt", b"just some text, not a picture\n", "a text file, not an image"),
        ("empty.jpg", b"", "empty file"),
        ("page.jpg", b"<!doctype html><html><body>hi</body></html>", "HTML page"),
        (
            "cut.jpg",
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00" + b"\x00" * 40,
            "cannot be used",
        ),
        ("huge.png", _png((1200, 1000)), "above the 1 MP limit"),
    ],
)
def test_bad_uploads_are_a_422_never_a_500(client, name, data, expected):
    r = client.post("/search/image", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert expected in detail
    assert name in detail


def test_upload_errors_in_the_form(client, served):
    r = client.post("/search/image", data={"top_k": "3"})
    assert r.status_code == 422 and "file: This field is required" in r.json()["detail"]
    with open(served.path_of("beach.jpg"), "rb") as fh:
        r = client.post("/search/image", files={"file": ("b.jpg", fh)}, data={"top_k": "0"})
    assert r.status_code == 422 and "top_k" in r.json()["detail"]
    r = client.post("/search/image", json={"file": "beach.jpg"})
    assert r.status_code == 422


def test_upload_over_the_limit_is_413(client):
    r = client.post("/search/image", files={"file": ("big.jpg", b"\xff" * (300 * 1024))})
    assert r.status_code == 413
    assert "256 KB" in r.json()["detail"]


# --------------------------------------------------------------------------- files by id


def test_images_are_served_by_id_as_they_are_on_disk(client, served):
    for name, media in (("beach.jpg", "image/jpeg"), ("city.png", "image/png")):
        path = served.path_of(name)
        r = client.get(f"/images/{path_id(path)}")
        assert r.status_code == 200
        assert r.headers["content-type"] == media
        with open(path, "rb") as fh:
            assert r.content == fh.read()


def test_formats_browsers_cannot_show_are_converted(client, served):
    r = client.get(f"/images/{path_id(served.path_of('scan.tif'))}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert jpeg_size(r.content) == PHOTOS["scan.tif"][0]


def test_thumbnails_fit_the_size_and_never_enlarge(client, served):
    image_id = path_id(served.path_of("with space.jpg"))  # 100×50
    r = client.get(f"/thumbnails/{image_id}", params={"size": 40})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert jpeg_size(r.content) == (40, 20)
    assert jpeg_size(client.get(f"/thumbnails/{image_id}", params={"size": 1024}).content) == (
        100,
        50,
    )
    for size in (8, 5000, "big"):
        r = client.get(f"/thumbnails/{image_id}", params={"size": size})
        assert r.status_code == 422 and "size" in r.json()["detail"]


@pytest.mark.parametrize("route", ["images", "thumbnails"])
def test_unknown_or_malformed_ids_and_traversal_are_refused(client, route):
    r = client.get(f"/{route}/{'0' * 40}")
    assert r.status_code == 404 and "No indexed image" in r.json()["detail"]
    r = client.get(f"/{route}/not-an-id")
    assert r.status_code == 422 and "image_id" in r.json()["detail"]
    url = urlparse(str(client.base_url))
    for attempt in (
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "..",
    ):
        # http.client sends the path exactly as written (httpx would normalise the dots)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            conn.request("GET", f"/{route}/{attempt}")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status in (404, 422), (attempt, response.status)
        assert b"root:" not in body


def test_a_file_deleted_since_indexing_is_410(client, served):
    path = served.path_of("sunset.bmp")
    moved = path + ".away"
    os.rename(path, moved)
    try:
        for route in ("images", "thumbnails"):
            r = client.get(f"/{route}/{path_id(path)}")
            assert r.status_code == 410
            assert "no longer exists" in r.json()["detail"]
        body = search(client, query="sunset", top_k=200).json()
        assert path not in [h["path"] for h in body["results"]]
        assert any("no longer exist" in note for note in body["notes"])
    finally:
        os.rename(moved, path)


# --------------------------------------------------------------------------- concurrency


def test_fifty_concurrent_searches_without_errors_or_reloads(client, served):
    queries = [f"picture number {i % 5}" for i in range(50)]
    expected = {
        q: [h["id"] for h in search(client, query=q, top_k=4).json()["results"]]
        for q in set(queries)
    }

    def one(q: str) -> tuple[str, int, list[str]]:
        r = client.post("/search", json={"query": q, "top_k": 4})
        return q, r.status_code, [h["id"] for h in r.json().get("results", [])]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, queries))
    assert [status for _, status, _ in answers] == [200] * 50
    for q, _, ids in answers:
        assert ids == expected[q]
    assert served.loads == [served.engine.spec.name]  # loaded once, for the whole session


class HeldModel:
    """The tiny model, except that encoding ``HELD`` holds the model until released: it
    sets ``entered`` once a search is inside the model, then waits for ``release``."""

    HELD = "a query that holds the model"

    def __init__(self, model) -> None:
        self._model = model
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def encode_texts(self, texts):
        if self.HELD in texts:
            self.entered.set()
            assert self.release.wait(timeout=120), "the test never released the model"
        return self._model.encode_texts(texts)


def test_inference_runs_off_the_event_loop(served, tiny_model_dir, loaded_tiny_model):
    """While a search is inside the model, the server still answers other requests. Were
    inference run on the event loop, the held search would block it and the health check
    below would time out."""
    from clipseek.server import serving_engine

    held = HeldModel(loaded_tiny_model)
    engine = serving_engine(
        settings_for(tiny_model_dir, served.engine.settings.db), model_loader=lambda *_: held
    )
    result: dict[str, int] = {}
    with (
        running_server(engine) as url,
        httpx.Client(base_url=url, timeout=60, trust_env=False) as c,
    ):

        def held_search() -> None:
            result["status"] = search(c, query=HeldModel.HELD, top_k=2).status_code

        worker = threading.Thread(target=held_search)
        worker.start()
        try:
            assert held.entered.wait(timeout=60), "the search never reached the model"
            assert c.get("/health", timeout=10).status_code == 200
            assert c.get("/static/app.css", timeout=10).status_code == 200
            assert worker.is_alive()  # the search is still inside the model
        finally:
            held.release.set()
            worker.join(timeout=60)
    assert result == {"status": 200}


def test_the_model_loads_once_at_start_up(served, tiny_model_dir, loaded_tiny_model):
    from clipseek.server import serving_engine

    loads: list[str] = []
    settings = settings_for(tiny_model_dir, served.engine.settings.db)
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, loads))
    with running_server(engine) as url:
        assert loads == [engine.spec.name]  # before any request
        with httpx.Client(base_url=url, trust_env=False, timeout=60) as c:
            for _ in range(3):
                assert c.post("/search", json={"query": "x"}).status_code == 200
    assert len(loads) == 1


# --------------------------------------------------------------------------- no index, no store


def test_without_an_index_health_says_so_and_search_is_409(
    tmp_path, tiny_model_dir, loaded_tiny_model
):
    from clipseek.server import serving_engine

    settings = settings_for(tiny_model_dir, tmp_path / "empty-db")
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, []))
    with running_server(engine) as url, httpx.Client(base_url=url, trust_env=False) as c:
        health = c.get("/").json()
        assert health["status"] == "no index" and health["indexed_images"] == 0
        assert "clipseek index" in health["message"]
        r = c.post("/search", json={"query": "a dog"})
        assert r.status_code == 409 and "clipseek index" in r.json()["detail"]
        r = c.post("/search/image", files={"file": ("x.png", _png((8, 8)))})
        assert r.status_code == 409


def test_an_unreachable_chroma_server_is_503(tmp_path, tiny_model_dir, loaded_tiny_model):
    from clipseek.server import serving_engine

    url = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(tiny_model_dir, tmp_path / "unused", chroma_url=url)
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, []))
    with running_server(engine) as base, httpx.Client(base_url=base, trust_env=False) as c:
        r = c.get("/")
        assert r.status_code == 503
        assert f"Cannot reach the Chroma server at {url}" in r.json()["detail"]
        r = c.post("/search", json={"query": "a dog"})
        assert r.status_code == 503
