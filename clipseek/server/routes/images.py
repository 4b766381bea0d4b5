"""Indexed files, by the id the index gave them only: ``/images/{id}`` and
``/thumbnails/{id}`` (never by a path a client names)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from clipseek.errors import ImageReadError
from clipseek.photos.pathtext import display_path
from clipseek.server.files import FileRefused, OpenedImage, changed, open_indexed
from clipseek.server.schemas import ErrorBody, ImageId
from clipseek.server.state import ServerState, State
from clipseek.server.thumbs import render_jpeg

router = APIRouter()


def open_by_id(state: ServerState, image_id: str, identify: bool = True) -> OpenedImage:
    """The checked, open file behind an id (see :mod:`clipseek.server.files`)."""
    entry = state.engine.image_entry(image_id)
    if entry is None:
        raise HTTPException(404, f"No indexed image has the id {image_id}.")
    try:
        return open_indexed(
            entry.path, entry.size, entry.mtime_ns, state.roots(), identify=identify
        )
    except FileRefused as exc:
        raise HTTPException(exc.status, exc.detail) from None


@router.get(
    "/images/{image_id}",
    summary="The indexed image itself",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "The file, or a JPEG of it."},
        404: {"model": ErrorBody, "description": "No indexed image has this id."},
        410: {"model": ErrorBody, "description": "The file was deleted since indexing."},
    },
)
def image(image_id: ImageId, state: State) -> Response:
    opened = open_by_id(state, image_id)
    media = opened.media_type
    if media is not None:  # sent from the descriptor that was checked, never the path
        return StreamingResponse(
            opened.chunks(),
            media_type=media,
            headers={
                "Cache-Control": "private, max-age=60",
                "Content-Length": str(opened.size),
            },
        )
    # TIFF and friends: browsers cannot show them, so send a large JPEG instead.
    with opened:
        data = _render(opened, 4096, state.engine.settings.max_megapixels)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.get(
    "/thumbnails/{image_id}",
    summary="A JPEG thumbnail of an indexed image",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"model": ErrorBody, "description": "No indexed image has this id."},
        410: {"model": ErrorBody, "description": "The file was deleted since indexing."},
    },
)
def thumbnail(
    image_id: ImageId,
    state: State,
    size: Annotated[int, Query(ge=16, le=2048, description="Longest side in pixels.")] = 256,
) -> Response:
    with open_by_id(state, image_id, identify=False) as opened:  # decoded in full below
        try:
            data = state.thumbnails.get(opened, size)
        except (ImageReadError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ImageReadError) else str(exc)
            if "--max-megapixels" in reason:  # the limit changed, not the file
                raise HTTPException(
                    422,
                    f"The indexed file {display_path(opened.path)} cannot be read now: {reason}.",
                ) from None
            # same size and time as when it was indexed, yet no longer readable
            refused = changed(opened.path, f" ({reason})")
            raise HTTPException(refused.status, refused.detail) from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


def _render(opened: OpenedImage, size: int, max_megapixels: float | None) -> bytes:
    try:
        return render_jpeg(opened.file, opened.path, size, max_megapixels, quality=90)
    except ImageReadError as exc:
        raise HTTPException(
            422, f"The indexed file {display_path(opened.path)} cannot be read now: {exc.reason}."
        ) from None
