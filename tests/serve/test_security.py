"""`clipseek serve` against hostile input (issue 12), over real sockets to a real uvicorn.

Each test here changes files under its own indexed folder, so these use servers of their
own; the shared session server is only read (by the fuzz test).
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx

from clipseek.store import path_id
from tests.support.engines import counting_loader, settings_for
from tests.support.pictures import draw_photo
from tests.support.servers import PHOTOS, running_server

pytestmark = pytest.mark.slow  # real uvicorn servers on loopback ports


@pytest.fixture
def own_server(tmp_path, tiny_model_dir, loaded_tiny_model) -> Iterator[tuple[str, Path, object]]:
    """A server over a small folder of its own: (url, photos folder, engine)."""
    from clipseek.server import serving_engine

    photos = tmp_path / "photos"
    for i, name in enumerate(("a.jpg", "b.png", "c.jpg", "d.tif", "sub/e.jpg")):
        draw_photo(photos / name, (64 + i, 48), i)
    settings = settings_for(tiny_model_dir, tmp_path / "db", max_megapixels=1.0)
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, []))
    assert engine.index([str(photos)]).new == 5
    with running_server(engine) as url:
        yield url, photos, engine


def raw_get(url: str, path: str, headers: dict[str, str] | None = None):
    """GET exactly ``path`` (no client-side normalising); returns (status, headers, body)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- 1. files


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside every indexed folder that must never be served."""
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    return path


def _swap_for_link(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("route", ["images", "thumbnails"])
def test_a_photo_replaced_by_a_link_to_a_secret_is_not_served(own_server, secret, route):
    url, photos, _ = own_server
    photo = photos / "a.jpg"
    _swap_for_link(photo, secret)
    status, _, body = raw_get(url, f"/{route}/{path_id(str(photo))}")
    assert status in (404, 410)  # outside the indexed folders, or no longer the same file
    assert b"secret-hash" not in body and b"root:" not in body
    assert b"since it was indexed" in body or b"outside the indexed folders" in body


def test_a_link_to_a_secret_with_the_same_size_and_time_is_still_refused(own_server, tmp_path):
    """Matching size and mtime is not enough: the file must lie inside an indexed folder."""
    url, photos, _ = own_server
    photo = photos / "b.png"
    decoy = tmp_path / "outside-image.png"
    shutil.copy2(photo, decoy)  # same bytes, size and modification time, outside the index
    st = photo.stat()
    os.utime(decoy, ns=(st.st_atime_ns, st.st_mtime_ns))
    _swap_for_link(photo, decoy)
    status, _, body = raw_get(url, f"/images/{path_id(str(photo))}")
    assert status == 404
    assert b"outside the indexed folders" in body


def test_a_folder_swapped_for_a_link_outside_is_refused(own_server, tmp_path):
    url, photos, _ = own_server
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(photos / "sub", elsewhere)
    st = (photos / "sub" / "e.jpg").stat()
    os.utime(elsewhere / "e.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.rmtree(photos / "sub")
    (photos / "sub").symlink_to(elsewhere)
    status, _, _ = raw_get(url, f"/images/{path_id(str(photos / 'sub' / 'e.jpg'))}")
    assert status == 404


def test_a_changed_file_a_fifo_and_a_non_image_are_410_never_a_hang(own_server):
    url, photos, _ = own_server
    changed = photos / "c.jpg"
    with changed.open("ab") as fh:
        fh.write(b"more bytes")  # size differs from the index's record
    fifo = photos / "a.jpg"
    fifo.unlink()
    os.mkfifo(fifo)  # opening a FIFO for reading would block without O_NONBLOCK
    text = photos / "b.png"
    st = text.stat()
    text.write_bytes(b"x" * st.st_size)  # same size and time, but no longer an image
    os.utime(text, ns=(st.st_atime_ns, st.st_mtime_ns))
    for name in ("c.jpg", "a.jpg", "b.png"):
        for route in ("images", "thumbnails"):
            started = time.monotonic()
            status, _, body = raw_get(url, f"/{route}/{path_id(str(photos / name))}")
            assert status == 410, (name, route, body)
            assert time.monotonic() - started < 10
    # a search still answers, with no thumbnail for the files that changed
    r = httpx.post(f"{url}/search", json={"query": "x", "top_k": 10}, trust_env=False)
    assert r.status_code == 200
    images = {h["path"]: h["image"] for h in r.json()["results"]}
    assert images[str(photos / "c.jpg")] is None
    assert images[str(photos / "b.png")] is None
    assert images[str(photos / "sub" / "e.jpg")].startswith("data:image/jpeg")


def test_an_unchanged_photo_is_served_whole_from_the_checked_file(own_server):
    url, photos, _ = own_server
    status, headers, body = raw_get(url, f"/images/{path_id(str(photos / 'a.jpg'))}")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    assert body == (photos / "a.jpg").read_bytes()
    assert int(headers["content-length"]) == len(body)
    status, headers, _ = raw_get(url, f"/images/{path_id(str(photos / 'd.tif'))}")
    assert status == 200 and headers["content-type"] == "image/jpeg"  # converted


def test_a_photo_indexed_through_a_link_inside_the_folder_is_served(
    tmp_path, tiny_model_dir, loaded_tiny_model
):
    from clipseek.server import serving_engine

    photos = tmp_path / "photos"
    draw_photo(photos / "real" / "x.jpg", (64, 64), 1)
    (photos / "alias").symlink_to(photos / "real")
    settings = settings_for(tiny_model_dir, tmp_path / "db")
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, []))
    engine.index([str(photos)])
    with running_server(engine) as url:
        for name in ("real/x.jpg", "alias/x.jpg"):
            status, _, body = raw_get(url, f"/images/{path_id(str(photos / name))}")
            if status == 404:  # the scanner keeps one name per folder it walks
                assert b"No indexed image" in body
            else:
                assert status == 200 and body == (photos / "real" / "x.jpg").read_bytes()


# --------------------------------------------------------------------------- 2. the `in` field


def test_in_gives_one_answer_for_any_folder_outside_the_index(own_server):
    url, photos, _ = own_server
    answers = {}
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as c:
        for folder in ("/nonexistent", "/etc", "~root/.ssh", "/root/.ssh", "/proc/self"):
            r = c.post("/search", json={"query": "x", "in": folder})
            answers[folder] = (r.status_code, r.json()["detail"].replace(folder, "FOLDER"))
        assert len(set(answers.values())) == 2, answers  # relative ~root: "not absolute"
        assert {status for status, _ in answers.values()} == {422}
        assert answers["/nonexistent"] == answers["/etc"] == answers["/root/.ssh"]
        inside = c.post("/search", json={"query": "x", "in": str(photos / "sub"), "top_k": 9})
        assert inside.status_code == 200 and inside.json()["total_results"] == 1
        traversal = c.post("/search", json={"query": "x", "in": f"{photos}/../../../etc"})
        assert traversal.json()["detail"] == answers["/etc"][1].replace(
            "FOLDER", f"{photos}/../../../etc"
        )
        r = c.post("/search", json={"query": "x", "in": str(photos) + "/\x00"})
        assert r.status_code == 422


# --------------------------------------------------------------------------- 3. Host header


def test_host_header_must_name_this_server(served, tiny_model_dir, loaded_tiny_model):
    port = urlparse(served.url).port
    for host, status in (
        ("attacker.example", 400),
        (f"attacker.example:{port}", 400),
        ("localhost.attacker.example", 400),
        (f"localhost:{port}", 200),
        ("127.0.0.1", 200),
        (f"[::1]:{port}", 200),
        ("10.1.2.3", 200),  # an IP address cannot be rebound
    ):
        got, _, body = raw_get(served.url, "/health", {"Host": host})
        assert got == status, (host, body)
        if status == 400:
            assert b"--allowed-host" in body
    from clipseek.server import serving_engine
    from clipseek.server.app import ServerOptions

    engine = serving_engine(
        settings_for(tiny_model_dir, served.engine.settings.db),
        model_loader=counting_loader(loaded_tiny_model, []),
    )
    options = ServerOptions(allowed_hosts=("photos.home.arpa",))
    with running_server(engine, options) as url:
        assert raw_get(url, "/health", {"Host": "photos.home.arpa:8000"})[0] == 200
        assert raw_get(url, "/health", {"Host": "attacker.example"})[0] == 400


@pytest.mark.parametrize(
    ("bind", "extra", "header", "ok"),
    [
        ("127.0.0.1", (), "localhost", True),
        ("0.0.0.0", (), "evil.example", False),
        ("0.0.0.0", (), "192.168.1.20:8000", True),
        ("myhost.lan", (), "MyHost.lan.:8000", True),
        ("127.0.0.1", ("*",), "anything.example", True),
        ("127.0.0.1", (), None, True),
    ],
)
def test_allowed_host_rules(bind, extra, header, ok):
    from clipseek.server.security import allowed_hosts, host_allowed

    assert host_allowed(header, allowed_hosts(bind, extra)) is ok


# --------------------------------------------------------------------------- 4. slow clients


@pytest.fixture
def strict_server(served, tiny_model_dir, loaded_tiny_model) -> Iterator[str]:
    from clipseek.server import serving_engine
    from clipseek.server.app import ServerOptions
    from clipseek.server.security import Limits

    engine = serving_engine(
        settings_for(tiny_model_dir, served.engine.settings.db),
        model_loader=counting_loader(loaded_tiny_model, []),
    )
    limits = Limits(header_timeout=1.0, body_timeout=1.5, keep_alive=1, max_connections=40)
    with running_server(engine, ServerOptions(limits=limits)) as url:
        yield url


def _connect(url: str) -> socket.socket:
    u = urlparse(url)
    return socket.create_connection((u.hostname, u.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_slowloris_connections_are_closed_at_the_header_deadline(strict_server):
    socks = []
    try:
        for i in range(25):
            s = _connect(strict_server)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow-%d: " % i)
            socks.append(s)
        started = time.monotonic()
        answers = [_read_all(s) for s in socks]  # returns once the server closes
        elapsed = time.monotonic() - started
    finally:
        for s in socks:
            s.close()
    assert elapsed < 8
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[0]
    assert all(b'"detail": "The request headers did not arrive within 1 s."' in a for a in answers)
    # and the server still answers normally
    assert httpx.get(f"{strict_server}/health", trust_env=False).status_code == 200


def test_trickling_headers_does_not_extend_the_deadline(strict_server):
    s = _connect(strict_server)
    try:
        started = time.monotonic()
        closed = False
        for byte in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-A: " + b"a" * 100:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - started > 6:
                break
        if not closed:
            answer = _read_all(s)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 6
    finally:
        s.close()


def test_a_body_that_never_arrives_is_408(strict_server):
    s = _connect(strict_server)
    try:
        s.sendall(
            b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"query": '
        )
        started = time.monotonic()
        answer = _read_all(s)
        assert time.monotonic() - started < 8
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"body did not arrive" in answer


def test_an_idle_keep_alive_connection_is_closed(strict_server):
    s = _connect(strict_server)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        started = time.monotonic()
        answer = _read_all(s)  # the 200, then the close after the keep-alive timeout
        assert time.monotonic() - started < 8
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 200")


def test_malformed_http_is_a_json_400(strict_server):
    s = _connect(strict_server)
    try:
        s.sendall(b"GARBAGE\x00 / HTTP/9\r\n\r\n")
        answer = _read_all(s)
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'{"detail": "The request is not valid HTTP."}' in answer


# --------------------------------------------------------------------------- 8. upload limit


def test_the_upload_limit_follows_serve_options(served, tiny_model_dir, loaded_tiny_model):
    import io

    from PIL import Image

    from clipseek.server import serving_engine
    from clipseek.server.app import ServerOptions

    out = io.BytesIO()
    Image.new("L", (1500, 1000)).save(out, "PNG")  # 1.5 MP
    engine = serving_engine(
        settings_for(tiny_model_dir, served.engine.settings.db, max_megapixels=4.0),
        model_loader=counting_loader(loaded_tiny_model, []),
    )
    for limit, status in ((1.0, 422), (2.0, 200)):
        with (
            running_server(engine, ServerOptions(upload_max_megapixels=limit)) as url,
            httpx.Client(base_url=url, trust_env=False, timeout=60) as c,
        ):
            r = c.post("/search/image", files={"file": ("big.png", out.getvalue())})
            assert r.status_code == status, r.text
            if status == 422:
                assert (
                    f"above the {limit:g} MP limit; raise it with --max-megapixels"
                    in (r.json()["detail"])
                )


# --------------------------------------------------------------------------- 7 and 9 via the API


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"query": "x", "top_k": True}, "top_k: Value error, Input should be a whole number"),
        ({"query": '9999999999999999999999999999999999:"x"'}, "weight"),
        ({"query": "1000000:\"x\" + 1000000:'y'"}, "weight"),
    ],
)
def test_sly_values_are_refused(client_for_served, body, expected):
    r = client_for_served.post("/search", json=body)
    assert r.status_code == 422, r.text
    assert expected in r.json()["detail"]


@pytest.fixture
def client_for_served(served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=60, trust_env=False) as c:
        yield c


# --------------------------------------------------------------------------- fuzz


def _fuzz_requests(rng: random.Random, ids: list[str]) -> Iterator[tuple[str, str, dict, bytes]]:
    """Malformed and hostile requests: (method, raw path, headers, body)."""
    paths = [
        "/",
        "/health",
        "/ui",
        "/search",
        "/search/image",
        "/docs",
        "/openapi.json",
        "/static/app.js",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/images/../../etc/passwd",
        "/thumbnails/%2F%2Fetc%2Fpasswd",
        "//etc/passwd",
        "/images/" + "0" * 40,
        "/images/" + "g" * 40,
        "/nope",
        "/search?x=" + "%00" * 10,
        "/thumbnails/" + "f" * 4000,
    ]
    paths += [f"/images/{i}" for i in ids[:3]] + [f"/thumbnails/{i}?size=40" for i in ids[:3]]
    bodies = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'{"query": null}',
        b'{"query": "x", "top_k": 1e999}',
        b'{"query": "x", "top_k": NaN}',
        b'{"query": "x", "top_k": -1}',
        b'{"query": "x", "in": "/etc"}',
        b'{"query": "x", "in": "\\u0000"}',
        b'{"query": "' + b"9" * 400 + b':x"}',
        b'{"query": "x\\ud800"}',
        b'{"query": "a" , "query": "b"}',
        b'{"query": {"$ne": 1}}',
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe\x00garbage",
        b'{"query": "1e308:\\"a\\" + 1e308:\\"b\\""}',
        b'{"query": "beach", "top_k": 3}',
        b'{"query": "a \\"cat\\" + 2:\\"hat\\"", "top_k": 200}',
        b'{"query": "x", "top_k": true}',
        b'{"query": "x", "in": "/proc/self/cwd"}',
        b"--boundary\r\nContent-Disposition: form-data; name=file; filename=../../x\r\n\r\nzz",
    ]
    content_types = [
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=boundary",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-32",
    ]
    for _ in range(240):
        roll = rng.random()
        if roll < 0.45:
            method, path = "GET", rng.choice(paths)
        elif roll < 0.85:
            method = "POST"
            path = rng.choice(["/search", "/search", "/search/image", "/search?top_k=3"])
        else:
            method = rng.choice(["PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"])
            path = rng.choice(paths)
        headers = {"Content-Type": rng.choice(content_types)}
        if rng.random() < 0.1:
            headers["X-Big"] = "a" * rng.choice([100, 8000])
        if rng.random() < 0.1:
            headers["Host"] = rng.choice(["localhost", "evil.example", "127.0.0.1:1", "[::1]"])
        if rng.random() < 0.2:
            headers["Accept"] = rng.choice(["text/html", "*/*;q=abc", "application/json;q=0"])
        if rng.random() < 0.1:
            headers["Range"] = rng.choice(["bytes=0-10", "bytes=-1", "bytes=999999999-"])
        body = rng.choice(bodies) if method in ("POST", "PUT") else b""
        yield method, path, headers, body


def test_fuzz_never_a_500_a_hang_or_a_file_outside_the_index(served):
    """A few hundred malformed requests on loopback: every answer is a 2xx or a 4xx whose
    body is JSON with a ``detail``, and every image sent is one of the indexed files."""
    import json

    rng = random.Random(12)
    ids = [path_id(served.path_of(n)) for n in sorted(PHOTOS)]
    indexed = {(served.photos / n).read_bytes() for n in PHOTOS}
    u = urlparse(served.url)
    seen: dict[int, int] = {}
    for method, path, headers, body in _fuzz_requests(rng, ids):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        status = response.status
        seen[status] = seen.get(status, 0) + 1
        where = (method, path, headers, body[:80], status, data[:200])
        assert 200 <= status < 300 or 400 <= status < 500, where
        kind = response.getheader("content-type", "")
        if status >= 400 and method != "HEAD":
            assert kind.startswith("application/json"), where
            assert isinstance(json.loads(data)["detail"], str | list), where
        if 200 <= status < 300 and kind.startswith("image/") and method == "GET":
            assert data in indexed or kind == "image/jpeg", where
        assert b"root:" not in data
    assert sum(seen.values()) == 240
    assert len([s for s in seen if 200 <= s < 300]) >= 1 and len(seen) >= 4, seen
