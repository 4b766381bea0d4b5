"""Searching: ``/search`` (text) and ``/search/image`` (an uploaded example)."""

from __future__ import annotations

import base64
import math
import os
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BeforeValidator

from clipseek.errors import ImageReadError
from clipseek.models.calibration import calibrated_query
from clipseek.photos.pathtext import dumps, json_path_fields
from clipseek.search.query import parse_query
from clipseek.server.files import FileRefused, open_indexed
from clipseek.server.schemas import (
    DEFAULT_TOP_K,
    ERRORS,
    MAX_TOP_K,
    SearchHit,
    SearchRequest,
    SearchResult,
)
from clipseek.server.state import ServerState, State
from clipseek.server.validation import no_bool, search_filters, search_folder

if TYPE_CHECKING:
    from clipseek.models.calibration import Calibration
    from clipseek.search.query import SearchResponse
    from clipseek.search.query import SearchResult as SearchHitSource
    from clipseek.server.thumbs import ThumbnailCache

router = APIRouter()


def hit_list(
    state: ServerState, response: SearchResponse, calibration: Calibration | None = None
) -> Response:
    """The answer as JSON; with ``calibration`` (a text search) each hit also says how
    good a match it is on the model family's scale."""
    hits = []
    folders = state.roots() if response.results else []
    for r in response.results:
        hits.append(
            SearchHit(
                id=r.id,
                rank=r.rank,
                score=_finite_score(r.score),
                match=round(calibration.match(r.score), 3) if calibration else None,
                verdict=calibration.verdict(r.score) if calibration else None,
                **json_path_fields(r.path),
                image=_data_url(state.thumbnails, r, folders, state.options.thumbnail_size),
                thumbnail_url=f"/thumbnails/{r.id}",
                image_url=f"/images/{r.id}",
                width=r.width,
                height=r.height,
                taken=r.taken or None,
                taken_source=r.taken_source or None,
                camera=r.camera or None,
            )
        )
    result = SearchResult(
        query=response.query,
        model=response.model,
        results=hits,
        total_results=len(hits),
        notes=list(response.notes),
    )
    # Written by clipseek's own JSON rule, not pydantic's: a file name that is not
    # UTF-8 must come out as \udcXX escapes, where pydantic would raise (a 500).
    payload = result.model_dump(exclude_none=False)
    for hit in payload["results"]:
        if hit.get("path_b64") is None:
            hit.pop("path_b64", None)
    return Response(dumps(payload), media_type="application/json")


@router.post(
    "/search",
    response_model=SearchResult,
    summary="Search by text",
    responses={k: ERRORS[k] for k in (409, 413, 422, 503)},
)
def search(body: SearchRequest, state: State) -> Response:
    query = parse_query([body.query], allow_images=False)
    folder = (
        search_folder(body.in_, state.roots(), state.engine.holds_pictures_under)
        if body.in_ is not None
        else None
    )
    filters, order = search_filters(body.after, body.before, body.camera, body.min_size, body.sort)
    response = state.engine.search(query, body.top_k, in_dir=folder, filters=filters, sort=order)
    # A text query's cosines are read on the model family's scale (not one with a minus).
    scale = state.engine.calibration() if calibrated_query(query.terms) else None
    return hit_list(state, response, scale)


@router.post(
    "/search/image",
    response_model=SearchResult,
    summary="Search by an example image (multipart upload)",
    responses={k: ERRORS[k] for k in (409, 413, 422, 503)},
)
def search_image(
    state: State,
    file: Annotated[UploadFile, File(description="The example image (JPEG, PNG, WebP, ...).")],
    top_k: Annotated[int, BeforeValidator(no_bool), Form(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
    in_: Annotated[str | None, Form(alias="in", max_length=4096)] = None,
    after: Annotated[str | None, Form(max_length=32)] = None,
    before: Annotated[str | None, Form(max_length=32)] = None,
    camera: Annotated[str | None, Form(max_length=200)] = None,
    min_size: Annotated[str | None, Form(max_length=32)] = None,
    sort: Annotated[str, Form(max_length=16)] = "score",
) -> Response:
    data = file.file.read(state.options.max_upload_bytes + 1)
    name = os.path.basename(file.filename or "") or "image"
    label = f"the uploaded image {name}"
    folder = (
        search_folder(in_, state.roots(), state.engine.holds_pictures_under)
        if in_ is not None
        else None
    )
    filters, order = search_filters(after, before, camera, min_size, sort)
    response = state.engine.search_image(
        data,
        top_k,
        in_dir=folder,
        label=label,
        max_megapixels=state.upload_limit,
        filters=filters,
        sort=order,
    )
    response.query = f"image: {name}"
    return hit_list(state, response)


def _data_url(
    thumbs: ThumbnailCache, hit: SearchHitSource, roots: list[str], size: int
) -> str | None:
    try:
        with open_indexed(hit.path, hit.size, hit.mtime_ns, roots, identify=False) as opened:
            data = thumbs.get(opened, size)
    except (FileRefused, ImageReadError, OSError):
        return None  # the hit stays in the list; the page shows a placeholder
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _finite_score(score: float) -> float:
    """JSON has no NaN: a score that is not a number (it never should be) reads as 0."""
    return round(score, 6) if math.isfinite(score) else 0.0
