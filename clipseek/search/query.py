"""Queries: parsing compound queries, embedding them, and ranking the index.

A query is a weighted sum of unit vectors, one per term (a text or an image),
normalised again; the score of an image is its cosine similarity with that
vector. So ``"a cat" + "a hat" - "blurry"`` finds cats in hats that are sharp.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from clipseek.errors import ImageReadError, QueryError
from clipseek.photos.imaging import is_image_name, open_image
from clipseek.photos.pathtext import display_path, json_path_fields, unescape_display
from clipseek.store import Hit, ImageIndex, path_id

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from clipseek.models import Embedder
    from clipseek.models.calibration import Calibration
    from clipseek.search.filters import Filters

QUERY_HELP = """\
A query is one or more terms joined by + and -, each term optionally weighted:

  "a dog playing in the park"          plain text
  "a cat" + "a hat" - "blurry"         add and subtract concepts
  2:"beach" + "sunset"                 weight a term (default 1; from -100 to 100)
  ~/Pictures/cat.jpg + "in the snow"   an image path is a term too

Operators must stand apart from the words ("a - b", not "a-b"), so hyphenated
words stay text."""

MAX_TOP_K = 10_000
#: Largest weight a term may have. Weights only matter relative to each other, so a
#: hundred to one is already extreme; beyond, sums overflow to inf and scores to NaN.
MAX_WEIGHT = 100.0
_WEIGHT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)):(.*)$", re.S)


@dataclass(frozen=True)
class QueryTerm:
    kind: Literal["text", "image"]
    value: str
    weight: float = 1.0

    def __str__(self) -> str:
        shown = display_path(self.value) if self.kind == "image" else f'"{self.value}"'
        return shown if self.weight == 1 else f"{self.weight:g}:{shown}"


@dataclass(frozen=True)
class Query:
    terms: tuple[QueryTerm, ...]

    def __str__(self) -> str:
        out = ""
        for i, term in enumerate(self.terms):
            sign = "-" if term.weight < 0 else "+"
            shown = QueryTerm(term.kind, term.value, abs(term.weight))
            out += (f" {sign} " if i else ("-" if sign == "-" else "")) + str(shown)
        return out

    @classmethod
    def text(cls, text: str) -> Query:
        return parse_query([text])

    @classmethod
    def image(cls, path: str) -> Query:
        return cls((_image_term(path, 1.0),))


def _image_term(value: str, weight: float) -> QueryTerm:
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.exists(path):
        # A name shown with \xHH escapes (a file name that is not UTF-8, as the app
        # writes it into the query box) stands for the file with those bytes.
        raw = unescape_display(path)
        if raw is not None and os.path.exists(raw):
            path = raw
        else:
            raise QueryError(f"The query image {display_path(value)} does not exist.")
    if not os.path.isfile(path):
        raise QueryError(f"The query image {display_path(value)} is not a file.")
    return QueryTerm("image", path, weight)


def in_folder(in_dir: str, index: Any) -> str:
    """The folder an ``in`` filter names, absolute.

    Only inside the indexed folders (where links resolve inside them too) is a folder that
    is not there named as such. Anywhere else, through a link that leads out of them
    included, the disk is not looked at: the answer comes from the index alone, so it is
    the same whether such a folder exists or not."""
    folder = os.path.abspath(os.path.expanduser(in_dir))
    if not os.path.isdir(folder) and really_inside(folder, index.roots):
        raise QueryError(f"--in {display_path(in_dir)}: no such folder.")
    return folder


def really_inside(folder: str, roots: Sequence[str]) -> bool:
    """Whether ``folder`` lies inside one of ``roots``, by name and with links resolved."""
    real = os.path.realpath(folder)
    return any(
        _inside(folder, root) and _inside(real, os.path.realpath(root)) for root in roots if root
    )


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _looks_like_image(value: str) -> bool:
    expanded = os.path.expanduser(value)
    if os.path.isfile(expanded):
        return True
    raw = unescape_display(expanded)
    if raw is not None and os.path.isfile(raw):
        return True
    return is_image_name(value) and (os.sep in value or value.startswith(("~", ".")))


def _tokens(parts: Sequence[str]) -> list[str]:
    if len(parts) != 1:
        return [p.strip() for p in parts]
    text = parts[0]
    try:
        return shlex.split(text)
    except ValueError:  # an apostrophe ("a dog's toy") is text, not a broken quote
        return [text]


def parse_query(parts: Sequence[str], *, allow_images: bool = True) -> Query:
    """Parse a query given as one string or as separate command-line words.

    ``allow_images=False`` keeps every term text: a front end that takes queries from other
    people (the web server) must not let them name files on its machine, nor learn from
    the answer whether a path exists.
    """
    if not parts or not any(p.strip() for p in parts):
        raise QueryError('The query is empty; describe what you are looking for, e.g. "a red car".')
    tokens = _tokens(parts)
    terms: list[QueryTerm] = []
    sign = 1.0
    words: list[str] = []

    def close_term() -> None:
        nonlocal words
        if not words:
            return
        raw = " ".join(words).strip()
        words = []
        weight = 1.0
        match = _WEIGHT.match(raw)
        if match:
            weight = _weight(match.group(1))
            raw = match.group(2).strip()
        if not raw:
            raise QueryError('A weighted term needs something after the colon, e.g. 2:"beach".')
        if weight == 0:
            raise QueryError(
                f"The term {raw!r} has weight 0, which leaves it out; give it a weight from "
                "-100 to 100 other than 0 (a negative one steers away from it) or drop it."
            )
        if allow_images and _looks_like_image(raw):
            terms.append(_image_term(raw, sign * weight))
        else:
            terms.append(QueryTerm("text", raw, sign * weight))

    for token in tokens:
        if token in ("+", "-"):
            if not words and terms:
                raise QueryError(f"Two operators in a row near '{token}'; put a term between them.")
            close_term()
            sign = -1.0 if token == "-" else 1.0
        elif token:
            words.append(token)
    if not words and terms and tokens and tokens[-1] in ("+", "-"):
        raise QueryError(f"The query ends with '{tokens[-1]}'; put a term after it.")
    close_term()
    if not terms:
        raise QueryError("The query has operators but no terms.")
    if not any(t.weight > 0 for t in terms):
        raise QueryError("The query only subtracts; add at least one term to search for.")
    return Query(tuple(terms))


def _weight(text: str) -> float:
    weight = float(text)
    if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise QueryError(
            f"The weight {shown} is too large; use a number from -{MAX_WEIGHT:g} to "
            f'{MAX_WEIGHT:g} (weights count relative to each other, e.g. 2:"beach").'
        )
    return weight


# --------------------------------------------------------------------------- searching


@dataclass(frozen=True)
class SearchResult:
    rank: int
    path: str
    score: float
    id: str
    width: int | None = None
    height: int | None = None
    size: int | None = None
    mtime_ns: int | None = None
    #: When the picture was taken (ISO 8601), and whether that is EXIF or the file's time.
    taken: str = ""
    taken_source: str = ""
    camera: str = ""
    taken_local: int | None = None

    @classmethod
    def from_hit(cls, rank: int, hit: Hit) -> SearchResult:
        meta = hit.metadata

        def number(key: str) -> int | None:
            value = meta.get(key)
            return int(value) if isinstance(value, int | float) else None

        return cls(
            rank=rank,
            path=hit.path,
            score=hit.score,
            id=hit.id,
            width=number("width"),
            height=number("height"),
            size=number("size"),
            mtime_ns=number("mtime_ns"),
            taken=str(meta.get("taken", "")),
            taken_source=str(meta.get("taken_source", "")),
            camera=str(meta.get("camera", "")),
            taken_local=number("taken_local"),
        )


@dataclass
class SearchResponse:
    query: str
    model: str
    results: list[SearchResult]
    missing: int = 0
    notes: list[str] = field(default_factory=list)
    #: The model family's scale when the query was plain text (see
    #: :func:`clipseek.models.calibration.calibrated_query`): each hit's JSON then says
    #: how good a match it is, as the app and the web page do; None otherwise.
    calibration: Calibration | None = None

    @property
    def total_results(self) -> int:
        return len(self.results)

    def to_json(self) -> dict[str, Any]:
        scale = self.calibration
        return {
            "query": self.query,
            "model": self.model,
            "results": [
                {
                    "rank": r.rank,
                    **json_path_fields(r.path),
                    # JSON has no NaN; a score is never one, and a broken vector must not
                    # make the output unreadable for scripts
                    "score": round(r.score, 6) if math.isfinite(r.score) else 0.0,
                    "match": round(scale.match(r.score), 3) if scale else None,
                    "verdict": scale.verdict(r.score) if scale else None,
                    "taken": r.taken or None,
                    "taken_source": r.taken_source or None,
                    "camera": r.camera or None,
                }
                for r in self.results
            ],
            "total_results": self.total_results,
        }


SORTS = ("score", "date")


def check_sort(sort: str) -> str:
    if sort not in SORTS:
        raise QueryError(f"--sort must be one of {', '.join(SORTS)}, not {sort!r}.")
    return sort


def check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise QueryError(f"--top-k must be a whole number, not {top_k!r}.")
    if top_k < 1:
        raise QueryError(f"--top-k must be at least 1, not {top_k}.")
    if top_k > MAX_TOP_K:
        raise QueryError(f"--top-k must be at most {MAX_TOP_K}, not {top_k}.")
    return top_k


def encode_image(model: Embedder, image: Image.Image) -> np.ndarray:
    """The embedding of one image already decoded to RGB (a file, an upload, a paste)."""
    return model.encode_image(image)


class Searcher:
    """Embeds queries with a model and ranks one index by cosine similarity."""

    def __init__(self, index: ImageIndex, model: Embedder, max_megapixels: float | None = None):
        self.index = index
        self.model = model
        self.max_megapixels = max_megapixels

    def embed(self, query: Query) -> tuple[np.ndarray, list[str]]:
        """The query's unit vector, and notes for the user (e.g. truncated text)."""
        import numpy as np

        notes: list[str] = []
        vectors: list[np.ndarray] = []
        weights: list[float] = []
        texts = [t for t in query.terms if t.kind == "text"]
        if texts:
            encoded = self.model.encode_texts([t.value for t in texts])
            for term, vector, cut in zip(texts, encoded.vectors, encoded.truncated, strict=True):
                vectors.append(vector)
                weights.append(term.weight)
                if cut:
                    preview = term.value if len(term.value) <= 40 else term.value[:37] + "..."
                    notes.append(
                        f'The text "{preview}" is longer than CLIP\'s {self.model.context_length} '
                        "tokens; only its beginning was used."
                    )
        for term in query.terms:
            if term.kind == "image":
                vectors.append(self.image_vector(term.value))
                weights.append(term.weight)
        combined = np.zeros(self.model.dim, dtype=np.float64)
        for vector, weight in zip(vectors, weights, strict=True):
            combined += weight * vector.astype(np.float64)
        norm = float(np.linalg.norm(combined))
        if not math.isfinite(norm):
            raise QueryError("The query's weights are too large to combine; use smaller ones.")
        if norm < 1e-6:
            raise QueryError("The query's terms cancel each other out; change a weight or a term.")
        return (combined / norm).astype(np.float32), notes

    def image_vector(self, path: str) -> np.ndarray:
        """An image's embedding: the stored one when the file is indexed and unchanged."""
        stored = self.index.get([path_id(path)]).get(path_id(path))
        if stored is not None:
            vector, meta = stored
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st and meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns:
                return vector
        try:
            image = open_image(
                path, max_megapixels=self.max_megapixels, min_size=self.model.image_size
            )
        except ImageReadError as exc:
            raise QueryError(f"The query image {exc.path} cannot be used: {exc.reason}.") from None
        return encode_image(self.model, image)

    def search(
        self,
        query: Query,
        top_k: int,
        in_dir: str | None = None,
        exclude: Sequence[str] = (),
        filters: Filters | None = None,
        sort: str = "score",
    ) -> SearchResponse:
        vector, notes = self.embed(query)
        response = self.search_vector(
            vector, top_k, in_dir=in_dir, exclude=exclude, filters=filters, sort=sort
        )
        response.query = str(query)
        response.notes[:0] = notes
        return response

    def search_vector(
        self,
        vector: np.ndarray,
        top_k: int,
        in_dir: str | None = None,
        exclude: Sequence[str] = (),
        filters: Filters | None = None,
        sort: str = "score",
    ) -> SearchResponse:
        """Rank by cosine similarity, dropping files that vanished since they were indexed.

        ``filters`` go into the store's query, so the top-k is exact among the pictures
        that match; ``sort="date"`` then orders that top-k by the date taken, oldest first.
        """
        top_k = check_top_k(top_k)
        check_sort(sort)
        clauses: list[dict[str, Any]] = []
        if filters is not None and not filters.empty:
            found = filters.clauses(self.index.cameras)
            if found is None:
                known = ", ".join(self.index.cameras[:8]) or "none recorded yet"
                return SearchResponse(
                    query="",
                    model=self.model.spec.name,
                    results=[],
                    notes=[
                        f"No indexed picture was taken with a camera matching "
                        f"{filters.camera!r} (cameras in the index: {known})."
                    ],
                )
            clauses = found
        folder = in_folder(in_dir, self.index) if in_dir is not None else None
        skip = {os.path.abspath(p) for p in exclude}
        want = top_k + len(skip)
        n = want + 8  # no count first: a short answer already says the index has no more
        while True:
            hits = self.index.query(vector, n, under=folder, clauses=clauses)
            kept: list[Hit] = []
            missing = 0
            for hit in hits:
                if hit.path in skip:
                    continue
                if not os.path.exists(hit.path):
                    missing += 1
                    continue
                kept.append(hit)
            if not hits and folder is not None:
                raise QueryError(
                    f"--in {display_path(in_dir)}: nothing inside this folder is indexed; "
                    f"run `clipseek index {display_path(folder)}` first."
                )
            if len(kept) >= top_k or len(hits) < n:
                break
            n = n * 2 + missing
        results = [SearchResult.from_hit(i, hit) for i, hit in enumerate(kept[:top_k], start=1)]
        if sort == "date":
            results.sort(key=lambda r: (r.taken_local is None, r.taken_local or 0, r.rank))
        notes = []
        if clauses and not results and filters is not None:
            notes.append(
                f"No indexed picture matches the filters ({filters.describe()}). An index built "
                "before clipseek read dates and cameras learns them on its next `clipseek index`."
            )
        if missing:
            notes.append(
                f"{missing} result(s) were dropped because the files no longer exist; "
                "run `clipseek index` again to tidy the index."
            )
        return SearchResponse(
            query="", model=self.model.spec.name, results=results, missing=missing, notes=notes
        )
