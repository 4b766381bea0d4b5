"""The API's request and response bodies, as its OpenAPI schema shows them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from clipseek.server.validation import no_bool

MAX_TOP_K = 200
DEFAULT_TOP_K = 5
MAX_QUERY_CHARS = 1000
ID_PATTERN = r"^[0-9a-f]{40}$"

ImageId = Annotated[str, PathParam(pattern=ID_PATTERN, description="An id from a search result.")]


class SearchRequest(BaseModel):
    """A text search, compound queries included (``"a cat" + "a hat" - "blurry"``)."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        json_schema_extra={"examples": [{"query": "a dog playing in the park", "top_k": 5}]},
    )

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description='What to look for; terms may be joined with + and - and weighted (2:"beach").',
    )
    top_k: Annotated[int, BeforeValidator(no_bool)] = Field(
        DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="How many results."
    )
    in_: str | None = Field(
        None,
        alias="in",
        max_length=4096,
        description="Only images inside this folder (a path on the server, inside an "
        "indexed folder).",
    )
    after: str | None = Field(
        None, max_length=32, description="Taken in or after: YYYY, YYYY-MM or YYYY-MM-DD."
    )
    before: str | None = Field(
        None, max_length=32, description="Taken before the start of: YYYY, YYYY-MM or YYYY-MM-DD."
    )
    camera: str | None = Field(
        None, max_length=200, description="Camera make or model contains this (any case)."
    )
    min_size: str | None = Field(
        None, max_length=32, description="At least WIDTHxHEIGHT pixels, e.g. 1000x800."
    )
    sort: str = Field(
        "score",
        max_length=16,
        description='"score" (best first) or "date" (the top-k, oldest taken first).',
    )


class SearchHit(BaseModel):
    id: str = Field(
        description="Stable id of the indexed file; use it with /images and /thumbnails."
    )
    rank: int
    score: float = Field(description="Cosine similarity between the query and the image.")
    match: float | None = Field(
        None,
        description="For a text search, how well the image matches on the model family's "
        "own scale, 0 to 1: 0.5 where the text fits the picture (CLIP's and SigLIP's cosines "
        "differ; this does not; see docs/MODELS.md). Null for a search by image, whose "
        "scores are only comparable with each other.",
    )
    verdict: str | None = Field(
        None,
        description='The match in a word: "strong" (match ≥ 0.75), "good" (≥ 0.5), '
        '"fair" (≥ 0.25) or "weak"; null when match is.',
    )
    path: str = Field(
        description="The file's path. Bytes that are not UTF-8 appear as the escapes "
        "\\udc80-\\udcff (Python's os.fsencode turns it back into the exact bytes)."
    )
    path_b64: str | None = Field(
        None,
        description="Only for names that are not UTF-8: the exact bytes of the path, base64.",
    )
    image: str | None = Field(
        description="A JPEG thumbnail as a data: URL, or null if the file cannot be read now."
    )
    thumbnail_url: str
    image_url: str
    width: int | None = None
    height: int | None = None
    taken: str | None = Field(
        None, description="When it was taken, ISO 8601 local time; null when unknown."
    )
    taken_source: str | None = Field(
        None, description='"exif", or "mtime" when the date is the file\'s time.'
    )
    camera: str | None = Field(None, description="Camera make and model from EXIF, or null.")


class SearchResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query": '"a dog playing in the park"',
                    "model": "ViT-B/32",
                    "results": [
                        {
                            "id": "5f1c0d0c4a6f3f1e0b6f2b8f9d1e2a3b4c5d6e7f",
                            "rank": 1,
                            "score": 0.312,
                            "match": 0.633,
                            "verdict": "good",
                            "path": "/home/ana/Pictures/park/IMG_0420.jpg",
                            "image": "data:image/jpeg;base64,/9j/4AAQSkZJRg...",
                            "thumbnail_url": "/thumbnails/5f1c0d0c4a6f3f1e0b6f2b8f9d1e2a3b4c5d6e7f",
                            "image_url": "/images/5f1c0d0c4a6f3f1e0b6f2b8f9d1e2a3b4c5d6e7f",
                            "width": 4032,
                            "height": 3024,
                            "taken": "2024-07-14T10:00:00",
                            "taken_source": "exif",
                            "camera": "Google Pixel 7",
                        }
                    ],
                    "total_results": 1,
                    "notes": [],
                }
            ]
        }
    )

    query: str
    model: str
    results: list[SearchHit]
    total_results: int
    notes: list[str] = Field(default_factory=list, description="Things the user should know.")


class Health(BaseModel):
    status: str = Field(description='"ok", or "no index" before anything was indexed.')
    model: str
    indexed_images: int
    index: str = Field(description="Index folder, or the Chroma server's URL.")
    remote: bool = Field(description="True when the index is on a Chroma server.")
    version: str
    max_upload_bytes: int = Field(description="Largest image /search/image accepts.")
    message: str | None = None


class ErrorBody(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (409, "There is no index yet, or it was built with another model."),
        (413, "The request body is larger than the server accepts."),
        (422, "The request is not valid; `detail` says why."),
        (503, "The index (e.g. a Chroma server) cannot be reached."),
    )
}
