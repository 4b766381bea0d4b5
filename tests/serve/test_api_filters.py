"""Photo filters, sort by date and near-duplicates over the REST API of `clipseek serve`,
against a real uvicorn server and pictures with known EXIF (the shipped shapes model)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install '.[serve]'")
import httpx

from clipseek.testing import make_scene

pytestmark = pytest.mark.slow  # a real server


def _names(payload: dict) -> list[str]:
    return [Path(r["path"]).name for r in payload["results"]]


def _search(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/search", json={"query": "a yellow circle", "top_k": 50, **body})


def test_filters_narrow_results_exactly(exif_server) -> None:
    client, photos, _, _ = exif_server
    summer = _search(client, after="2024-06", before="2024-09")
    assert summer.status_code == 200, summer.text
    assert set(_names(summer.json())) == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"}
    pixel = _search(client, camera="PIXEL", **{"in": str(photos)})
    assert set(_names(pixel.json())) == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"}
    assert _names(_search(client, after="2024", camera="eos").json()) == ["winter.jpg"]
    big = _search(client, min_size="300x200").json()
    assert big["results"] and all(r["width"] >= 300 for r in big["results"])
    assert not {"beach-1.jpg", "winter.jpg"} & set(_names(big))  # the library is 160×120
    none = _search(client, camera="hasselblad").json()
    assert none["results"] == [] and "hasselblad" in none["notes"][0]


def test_hits_carry_date_and_camera(exif_server) -> None:
    client, _, _, _ = exif_server
    hits = {Path(r["path"]).name: r for r in _search(client, top_k=200).json()["results"]}
    assert hits["old.jpg"]["taken"] == "2019-05-05T05:05:05"
    assert hits["old.jpg"]["taken_source"] == "exif"
    assert "Canon EOS R5" in hits["winter.jpg"]["camera"]
    assert hits["no-exif.jpg"]["taken_source"] == "mtime"
    assert hits["no-exif.jpg"]["camera"] is None  # unknown is null, not ""


def test_sort_by_date_orders_oldest_first(exif_server) -> None:
    client, _, _, _ = exif_server
    r = _search(client, sort="date", camera="o")  # every EXIF picture: Google and Canon
    assert r.status_code == 200, r.text
    taken = [hit["taken"] for hit in r.json()["results"]]
    assert len(taken) == 5 and taken == sorted(taken)
    assert _names(r.json())[0] == "old.jpg"


def test_image_search_takes_the_same_fields(exif_server) -> None:
    client, _, _, _ = exif_server
    buf = io.BytesIO()
    make_scene("a yellow circle", size=(160, 120), seed=1).save(buf, "PNG")
    files = {"file": ("q.png", buf.getvalue(), "image/png")}
    form = {"top_k": "20", "after": "2024-06", "before": "2024-09", "sort": "date"}
    r = client.post("/search/image", files=files, data=form)
    assert r.status_code == 200, r.text
    assert set(_names(r.json())) == {"beach-1.jpg", "beach-2.jpg", "blue.jpg"}
    taken = [hit["taken"] for hit in r.json()["results"]]
    assert taken == sorted(taken)
    bad = client.post("/search/image", files=files, data={"sort": "name"})
    assert bad.status_code == 422 and "sort must be one of" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"after": "last summer"}, "after takes a date as YYYY"),
        ({"before": "2024-13"}, "before 2024-13: no such month"),
        ({"after": "2024-09", "before": "2024-06"}, "is not before"),
        ({"min_size": "big"}, "min_size takes WIDTHxHEIGHT"),
        ({"sort": "name"}, "sort must be one of score, date"),
        ({"sort": None}, "sort:"),
        ({"camera": "x" * 500}, "camera:"),
        ({"after": 2024}, "after:"),
    ],
)
def test_bad_filter_values_are_422_with_a_sentence(exif_server, body, needle) -> None:
    client, _, _, _ = exif_server
    r = _search(client, **body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert needle in detail and "--" not in detail and "Traceback" not in detail


def test_duplicates_finds_the_planted_copies(exif_server) -> None:
    client, photos, planted, singles = exif_server
    # Only the planted folder: the EXIF library's yellow circles look alike to the shapes model.
    r = client.get("/duplicates", params={"threshold": 0.95, "in": str(photos / "dups")})
    assert r.status_code == 200, r.text
    payload = r.json()
    assert payload["threshold"] == 0.95
    found = _group_names(payload)
    assert all(any(g <= p for p in planted) for g in found)  # only real copies
    assert not set(singles) & set().union(*found)
    assert len(found) >= len(planted) - 1  # one cropped star falls just under 0.95
    counts = [g["count"] for g in payload["groups"]]
    assert counts == sorted(counts, reverse=True)
    item = payload["groups"][0]["items"][0]
    assert item["thumbnail_url"] == f"/thumbnails/{item['id']}"
    assert client.get(item["thumbnail_url"]).status_code == 200
    everywhere = _group_names(client.get("/duplicates").json())  # default threshold 0.95
    assert all(g in everywhere for g in found)
    strict = _group_names(client.get("/duplicates", params={"threshold": 1}).json())
    assert len(strict) < len(everywhere)


def _group_names(payload: dict) -> list[set[str]]:
    return [{Path(i["path"]).name for i in g["items"]} for g in payload["groups"]]


@pytest.mark.parametrize("threshold", ["0", "1.5", "-1", "nan", "lots"])
def test_duplicates_threshold_is_checked(exif_server, threshold) -> None:
    client, _, _, _ = exif_server
    r = client.get("/duplicates", params={"threshold": threshold})
    assert r.status_code == 422, r.text
    assert "threshold" in r.json()["detail"] and "--" not in r.json()["detail"]


def test_duplicates_folder_outside_the_index_is_refused_like_search(exif_server, tmp_path) -> None:
    client, _, _, _ = exif_server
    existing = tmp_path / "elsewhere"
    existing.mkdir()
    answers = []
    for folder in (str(existing), "/nonexistent/folder", "/etc"):
        dup = client.get("/duplicates", params={"in": folder})
        found = _search(client, **{"in": folder})
        assert dup.status_code == found.status_code == 422
        assert dup.json()["detail"] == found.json()["detail"]
        answers.append(dup.json()["detail"].replace(folder, "FOLDER"))
    assert len(set(answers)) == 1  # says nothing about whether the folder exists
    relative = client.get("/duplicates", params={"in": "photos"})
    assert relative.status_code == 422 and "absolute" in relative.json()["detail"]
