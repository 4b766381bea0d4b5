"""``/duplicates``: groups of near-identical pictures (lists only; nothing is deleted)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from clipseek.photos.pathtext import dumps
from clipseek.server.schemas import ERRORS
from clipseek.server.state import State
from clipseek.server.validation import duplicate_threshold, search_folder

router = APIRouter()


@router.get(
    "/duplicates",
    summary="Groups of near-identical pictures (lists only; nothing is deleted)",
    responses={
        200: {
            "description": '{"threshold": 0.95, "groups": [{"count": 2, "items": [{"id", '
            '"path", "size", "width", "height", "taken", "similarity", "thumbnail_url", '
            '"image_url"}]}]}, largest group first.'
        },
        **{k: ERRORS[k] for k in (409, 422, 503)},
    },
)
def duplicates(
    state: State,
    threshold: Annotated[
        float, Query(description="Cosine similarity to count as a copy: above 0, at most 1.")
    ] = 0.95,
    in_: Annotated[
        str | None,
        Query(alias="in", max_length=4096, description="Only pictures inside this folder."),
    ] = None,
) -> Response:
    limit = duplicate_threshold(threshold)
    folder = (
        search_folder(in_, state.roots(), state.engine.holds_pictures_under)
        if in_ is not None
        else None
    )
    groups = []
    for group in state.engine.duplicates(limit, in_dir=folder):
        data = group.to_json()
        for item in data["items"]:
            item["thumbnail_url"] = f"/thumbnails/{item['id']}"
            item["image_url"] = f"/images/{item['id']}"
        groups.append(data)
    payload = {"threshold": limit, "groups": groups}
    return Response(dumps(payload), media_type="application/json")
