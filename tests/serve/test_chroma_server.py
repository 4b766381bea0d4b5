"""Chroma server mode: the index on a real `chroma run` server on a loopback port.

The test starts the server that ships with the chromadb package, points clipseek at it
with --chroma-url and CLIPSEEK_CHROMA_URL, and checks index, query, incremental
re-index and a stopped server, plus `clipseek serve` in front of it. Telemetry is off
and the server's sockets are checked to be loopback only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipseek.cli.app import app
from tests.support.engines import counting_loader, settings_for
from tests.support.pictures import draw_photo
from tests.support.servers import ChromaServer, running_server, start_chroma

pytestmark = pytest.mark.slow  # `chroma run` processes


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    server = start_chroma(tmp_path / "chroma-data", tmp_path / "chroma.log")
    try:
        yield server
    finally:
        server.stop()


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


def _query_paths(*args: str) -> list[str]:
    result = _cli("query", *args, "--json")
    assert result.exit_code == 0, result.output
    return [r["path"] for r in json.loads(result.stdout)["results"]]


# --------------------------------------------------------------------------- sockets


def _decode(address: str) -> str:
    """An address from /proc/net/tcp[6] (hex, little-endian words) as text."""
    import ipaddress

    host = address.split(":")[0]
    raw = bytes.fromhex(host)
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(ordered))


def _inet_sockets(pid: int) -> list[tuple[str, str, str]]:
    """(protocol, local, remote) for every TCP/UDP socket the process holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                found.append((proto, _decode(fields[1]), _decode(fields[2])))
    return found


def _assert_loopback_only(pid: int) -> None:
    import ipaddress

    if not Path(f"/proc/{pid}/net/tcp").exists():
        return  # not Linux: nothing to inspect
    sockets = _inet_sockets(pid)
    assert sockets, "the server holds no TCP socket?"
    for proto, local, remote in sockets:
        assert ipaddress.ip_address(local).is_loopback, (proto, local, remote)
        remote_ip = ipaddress.ip_address(remote)
        assert remote_ip.is_loopback or remote_ip.is_unspecified, (proto, local, remote)


# --------------------------------------------------------------------------- tests


def test_index_query_reindex_and_stop(chroma_server, photos, tiny_model, monkeypatch):
    from clipseek.config import default_db_path

    url = chroma_server.url
    common = ("--model", tiny_model, "--device", "cpu", "--precision", "fp32")

    result = _cli("index", str(photos), "--chroma-url", url, *common)
    assert result.exit_code == 0, result.output
    assert "12 new, 0 updated, 0 unchanged, 0 removed, 0 failed" in result.stdout

    paths = _query_paths("a beach", "--top-k", "5", "--chroma-url", url, *common)
    assert len(paths) == 5
    assert all(p.startswith(str(photos) + os.sep) for p in paths)
    assert not default_db_path().exists()  # nothing went to the embedded store

    # the environment variable works the same as the flag, for every command
    monkeypatch.setenv("CLIPSEEK_CHROMA_URL", url)
    monkeypatch.setenv("CLIPSEEK_MODEL", tiny_model)
    info = _cli("info", "--json")
    assert info.exit_code == 0, info.output
    facts = json.loads(info.stdout)
    assert facts["remote"] is True and facts["location"] == url
    assert [i["images"] for i in facts["indexes"]] == [12]

    # incremental: one changed, one new, one deleted; the rest untouched
    draw_photo(photos / "beach.jpg", (64, 48), seed=99)
    os.utime(photos / "beach.jpg", ns=(time.time_ns(), time.time_ns() + 10**9))
    draw_photo(photos / "new" / "added.png", (50, 40), seed=42)
    (photos / "city.png").unlink()
    result = _cli("index", str(photos), "--device", "cpu", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert "1 new, 1 updated, 10 unchanged, 1 removed, 0 failed" in result.stdout

    paths = _query_paths("anything", "--top-k", "50")
    assert len(paths) == 12
    assert str(photos / "new" / "added.png") in paths
    assert str(photos / "city.png") not in paths
    result = _cli("index", str(photos))
    assert "0 new, 0 updated, 12 unchanged, 0 removed" in result.stdout

    _assert_loopback_only(chroma_server.process.pid)

    # a stopped server is one clear sentence, and the index survives a restart
    chroma_server.stop()
    result = _cli("query", "a beach")
    assert result.exit_code == 1
    assert f"Cannot reach the Chroma server at {url}" in result.output
    assert "Is `chroma run` running there?" in result.output
    assert "Traceback" not in result.output

    again = start_chroma(chroma_server.path, chroma_server.log)
    try:
        assert len(_query_paths("anything", "--top-k", "50", "--chroma-url", again.url)) == 12
    finally:
        again.stop()


def test_serve_in_front_of_a_chroma_server(
    chroma_server, photos, tiny_model_dir, loaded_tiny_model, tmp_path
):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")

    from clipseek.server import serving_engine

    settings = settings_for(tiny_model_dir, tmp_path / "unused", chroma_url=chroma_server.url)
    engine = serving_engine(settings, model_loader=counting_loader(loaded_tiny_model, []))
    engine.index([str(photos / "sub")])
    with running_server(engine) as base, httpx.Client(base_url=base, trust_env=False) as c:
        health = c.get("/").json()
        assert health["remote"] is True
        assert health["index"] == chroma_server.url
        assert health["indexed_images"] == 4
        body = c.post("/search", json={"query": "a forest", "top_k": 3}).json()
        assert body["total_results"] == 3
        first = body["results"][0]
        r = c.get(first["thumbnail_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert not (tmp_path / "unused").exists()
