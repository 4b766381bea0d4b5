"""open_clip's CLIP tokenizer without open_clip or torch, for the ONNX query path.

open_clip's ``SimpleTokenizer`` is OpenAI's byte-level BPE: ftfy, a double HTML unescape,
whitespace collapsed, lowercased, split by one regular expression and merged by rank.
Importing it imports torch (it returns a tensor), so the same steps are repeated here
over the same vocabulary file, which the export copies next to the ONNX files. A test
compares the ids with open_clip's over thousands of varied strings.
"""

from __future__ import annotations

import contextlib
import gzip
import html
import itertools
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

    from clipseek.models.token_slices import TokenSlices

#: How many merges open_clip reads from the file (its vocabulary is 49408 ids).
_MERGES = 49152 - 256 - 2
_SPECIALS = ("<start_of_text>", "<end_of_text>")


@lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters (as open_clip has it)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


#: Text that ftfy returns unchanged: printable ASCII, tabs and newlines, no ``&`` (its
#: fixes are for mojibake, entities, curly quotes, widths, ligatures and control
#: characters). Most queries are such text, and they skip importing ftfy, a noticeable part
#: of a cold query (docs/PERFORMANCE.md); a test checks the claim against ftfy over many
#: generated strings.
_FTFY_IDENTITY = re.compile(r"[\t\n\x20-\x25\x27-\x7e]*")


def _clean(text: str) -> str:
    if not _FTFY_IDENTITY.fullmatch(text):
        import ftfy

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


def _read_merges(bpe_path: str | Path) -> list[str]:
    """The merges open_clip uses, as ``"first second"`` lines: only the start of the file
    is decompressed (the vocabulary holds far more merges than CLIP reads)."""
    needed = _MERGES + 1
    chunks: list[bytes] = []
    newlines = 0
    with gzip.open(bpe_path) as fh:
        while newlines <= needed:
            chunk = fh.read(1 << 18)
            if not chunk:
                break
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    lines = b"".join(chunks).decode("utf-8").split("\n", needed + 1)
    return lines[1:needed]


class ClipTokenizer:
    """Token ids equal to ``open_clip.SimpleTokenizer`` (clean="lower", no reduction)."""

    def __init__(self, bpe_path: str | Path, context_length: int = 77) -> None:
        import regex

        merges = _read_merges(bpe_path)
        self._byte_encoder = _bytes_to_unicode()
        vocab = list(self._byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab.extend(merge.replace(" ", "") for merge in merges)
        vocab.extend(_SPECIALS)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        # Keyed by the file's own "first second" line: building 48,894 tuples as keys
        # took most of a cold query's tokenizer set-up.
        self._ranks = dict(zip(merges, range(len(merges)), strict=True))
        self._cache: dict[str, str] = {t: t for t in _SPECIALS}
        self._pat = regex.compile(
            "|".join(_SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self.sot_token_id = self.encoder[_SPECIALS[0]]
        self.eot_token_id = self.encoder[_SPECIALS[1]]
        self.context_length = context_length

    def _bpe(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word: tuple[str, ...] = (*token[:-1], token[-1] + "</w>")
        if len(word) == 1:
            return token + "</w>"
        ranks = self._ranks
        inf = float("inf")
        while len(word) > 1:
            pairs = {f"{a} {b}" for a, b in itertools.pairwise(word)}
            bigram = min(pairs, key=lambda pair: ranks.get(pair, inf))
            if bigram not in ranks:
                break
            first, second = bigram.split(" ")
            merged: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    break
                merged.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        result = " ".join(word)
        self._cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without start and end markers."""
        ids: list[int] = []
        encoder, byte_encoder = self.encoder, self._byte_encoder
        for token in self._pat.findall(_clean(text)):
            token = "".join(byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(encoder[piece] for piece in self._bpe(token).split(" "))
        return ids

    def token_count(self, text: str) -> int:
        """Tokens the text needs, start and end markers included."""
        return len(self.encode(text)) + 2

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """N×context_length int64 ids (zero padded, cut with an end marker, as open_clip
        does), and for each text whether it was cut."""
        import numpy as np

        length = self.context_length
        out = np.zeros((len(texts), length), dtype=np.int64)
        truncated: list[bool] = []
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            truncated.append(len(ids) > length)
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            out[row, : len(ids)] = ids
        return out, truncated


def supported(tokenizer: object) -> str | None:
    """Why ``tokenizer`` (open_clip's, for a model) cannot be reproduced here, or None."""
    if type(tokenizer).__name__ != "SimpleTokenizer":
        return f"its tokenizer is {type(tokenizer).__name__}, not CLIP's byte-level BPE"
    if getattr(tokenizer, "reduction_fn", None) is not None:
        return "its tokenizer reduces long texts instead of cutting them"
    clean = getattr(tokenizer, "clean_fn", None)
    if getattr(clean, "__name__", "") != "_clean_lower":
        return "its tokenizer cleans text in another way"
    if (
        len(getattr(tokenizer, "all_special_ids", ())) != 2
        or getattr(tokenizer, "vocab_size", 0) != 49408
    ):
        return "its tokenizer has another vocabulary"
    return None


def default_bpe_path() -> Path:
    """open_clip's vocabulary file (needs open_clip installed; used when exporting)."""
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


# --------------------------------------------------------------------------- hub tokenizers
#
# SigLIP, SigLIP 2 (and other open_clip models whose text_cfg names an ``hf_tokenizer_name``)
# tokenise with a Hugging Face tokenizer: open_clip's HFTokenizer cleans the text, then calls
# transformers' fast tokenizer with ``max_length=context_length, padding="max_length",
# truncation=True``. A fast tokenizer is the ``tokenizers`` library's model (the
# ``tokenizer.json`` of the model's snapshot) plus four settings from
# ``tokenizer_config.json``: the pad token and the padding and truncation sides. The same
# steps here need neither transformers nor torch; a test compares the ids with open_clip's
# over thousands of varied strings.

HUB_TOKENIZER_FILE = "tokenizer.json"
HUB_TOKENIZER_CONFIG = "tokenizer_config.json"
#: Texts tokenised by one slice of the model: a query's few share one; a long batch is
#: taken in parts so that each slice stays small.
_SLICE_TEXTS = 16


def _basic_clean(text: str) -> str:
    """open_clip's ``basic_clean``: ftfy, a double HTML unescape, stripped."""
    if not _FTFY_IDENTITY.fullmatch(text):
        import ftfy

        text = ftfy.fix_text(text)
    return html.unescape(html.unescape(text)).strip()


#: str.translate table of open_clip's ``canonicalize_text``: ASCII punctuation removed.
_PUNCTUATION = str.maketrans("", "", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def clean_text(text: str, how: str) -> str:
    """open_clip's clean functions by name: ``canonicalize`` (SigLIP: punctuation removed,
    lower case), ``whitespace`` or ``lower``."""
    text = _basic_clean(text)
    if how == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    elif how == "lower":
        text = text.lower()
    elif how != "whitespace":
        raise ValueError(f"unknown clean function {how!r}")
    return " ".join(text.split()).strip()


def _token_name(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def hub_tokenizer_settings(folder: str | Path) -> dict[str, object]:
    """The settings transformers would read from a snapshot's tokenizer_config.json (and
    special_tokens_map.json): pad token, padding and truncation sides."""
    import json

    folder = Path(folder)
    config: dict[str, object] = {}
    for name in ("special_tokens_map.json", HUB_TOKENIZER_CONFIG):
        try:
            loaded = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict):
            config.update(loaded)
    return {
        "pad_token": _token_name(config.get("pad_token")),
        "sep_token": _token_name(config.get("sep_token")),
        "padding_side": str(config.get("padding_side") or "right"),
        "truncation_side": str(config.get("truncation_side") or "right"),
    }


class HubTokenizer:
    """Token ids equal to open_clip's ``HFTokenizer`` for a ``tokenizer.json``, without
    transformers: ``(ids N×context_length int64, truncated)`` like :class:`ClipTokenizer`.

    Given the file's slice tables (:mod:`clipseek.models.token_slices`, written by the
    export), it never loads the whole vocabulary unless a text holds an added token."""

    def __init__(
        self,
        path: str | Path,
        context_length: int,
        *,
        clean: str = "whitespace",
        pad_token: str | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        sep_token: str | None = None,
        strip_sep_token: bool = False,
        slices: TokenSlices | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self._source = path
        self._slices = slices
        self._whole: Tokenizer | None = None
        if slices is not None:
            self._tok = slices.shell
        # A path, or the file's JSON itself (open_clip's own tokenizer, when exporting).
        elif isinstance(path, str) and path.lstrip().startswith("{"):
            self._tok = self._whole = Tokenizer.from_str(path)
        else:
            self._tok = self._whole = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.context_length = int(context_length)
        self.clean = clean
        pad_id = self._tok.token_to_id(pad_token) if pad_token else None
        self.pad_id = int(pad_id) if pad_id is not None else 0
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self._specials = int(self._tok.num_special_tokens_to_add(False))
        sep = self._tok.token_to_id(sep_token) if strip_sep_token and sep_token else None
        self._sep_id = sep
        self._sep_token = sep_token

    @classmethod
    def from_folder(
        cls, folder: str | Path, context_length: int, **overrides: object
    ) -> HubTokenizer:
        """The tokenizer of a snapshot or model folder (``tokenizer.json`` and config)."""
        settings = {**hub_tokenizer_settings(folder), **overrides}
        return cls(Path(folder) / HUB_TOKENIZER_FILE, context_length, **settings)  # type: ignore[arg-type]

    @classmethod
    def from_export(cls, path: Path, context_length: int, **settings: object) -> HubTokenizer:
        """An export's tokenizer, read through its slice tables where they are sound.

        An export written before the tables existed, or whose tables are damaged, gets them
        now, best effort: the export folder is clipseek's cache, not the index, and where it
        cannot be written the file is read whole, as before."""
        from clipseek.models.token_slices import SLICES_FILE, read_slices, write_slices

        tables = path.with_name(SLICES_FILE)
        slices, settled = read_slices(tables, path)
        if not settled:  # missing (an older export) or damaged: written again
            keep = [str(settings.get(k) or "") for k in ("pad_token", "sep_token")]
            with contextlib.suppress(Exception):  # a cache: else read whole, as before
                write_slices(path, tables, keep=keep)
                slices, _ = read_slices(tables, path)
        return cls(path, context_length, slices=slices, **settings)  # type: ignore[arg-type]

    @property
    def sliced(self) -> bool:
        """Whether texts are tokenised through slice tables (the whole file unread)."""
        return self._slices is not None

    def settings(self) -> dict[str, object]:
        """What an export records beside the tokenizer file to rebuild this tokenizer."""
        return {
            "clean": self.clean,
            "pad_token": self._tok.id_to_token(self.pad_id),
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "sep_token": self._sep_token,
            "strip_sep_token": self._sep_id is not None,
        }

    def _whole_file(self) -> Tokenizer:
        if self._whole is None:
            from tokenizers import Tokenizer

            whole = Tokenizer.from_file(str(self._source))
            whole.no_padding()
            whole.no_truncation()
            self._whole = whole
        return self._whole

    def to_str(self) -> str:
        return self._whole_file().to_str()

    def _tokenizer_for(self, cleaned: Sequence[str]) -> Tokenizer:
        if self._slices is not None:
            sliced = self._slices.tokenizer_for(cleaned)
            if sliced is not None:
                return sliced
        return self._whole_file()

    def _encode(self, tok: Tokenizer, text: str) -> tuple[list[int], bool]:
        encoding = tok.encode(text, add_special_tokens=False)
        room = max(0, self.context_length - self._specials)
        cut = len(encoding.ids) > room
        if cut:
            encoding.truncate(room, direction=self.truncation_side)
        ids = list(tok.post_process(encoding).ids)[: self.context_length]
        return ids, cut

    def token_count(self, text: str) -> int:
        """Tokens the text needs, special tokens included."""
        cleaned = clean_text(text, self.clean)
        encoding = self._tokenizer_for([cleaned]).encode(cleaned, add_special_tokens=True)
        return len(encoding.ids)

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        import numpy as np

        cleaned = [clean_text(text, self.clean) for text in texts]
        length = self.context_length
        out = np.full((len(texts), length), self.pad_id, dtype=np.int64)
        truncated: list[bool] = []
        tok = self._whole_file() if self._slices is None else None
        for row, text in enumerate(cleaned):
            if tok is None or (self._slices is not None and row % _SLICE_TEXTS == 0):
                tok = self._tokenizer_for(cleaned[row : row + _SLICE_TEXTS])
            ids, cut = self._encode(tok, text)
            truncated.append(cut)
            if self.padding_side == "left":
                out[row, length - len(ids) :] = ids
            else:
                out[row, : len(ids)] = ids
        if self._sep_id is not None:  # open_clip zeroes the separator (strip_sep_token)
            out[out == self._sep_id] = 0
        return out, truncated


_CLEAN_NAMES = {
    "_clean_canonicalize": "canonicalize",
    "_clean_whitespace": "whitespace",
    "_clean_lower": "lower",
}


def hub_tokenizer_of(tokenizer: object) -> HubTokenizer | None:
    """A :class:`HubTokenizer` equal to ``tokenizer``: clipseek's own (as the torch runtime
    holds it) or open_clip's ``HFTokenizer`` over a fast transformers tokenizer; else None."""
    own = getattr(tokenizer, "hub", None)
    if isinstance(own, HubTokenizer):
        return own
    if type(tokenizer).__name__ != "HFTokenizer" or getattr(tokenizer, "tokenizer_mode", ""):
        return None
    inner = getattr(tokenizer, "tokenizer", None)
    backend = getattr(inner, "backend_tokenizer", None)
    clean = _CLEAN_NAMES.get(getattr(getattr(tokenizer, "clean_fn", None), "__name__", ""))
    if backend is None or clean is None:
        return None
    return HubTokenizer(
        backend.to_str(),
        int(getattr(tokenizer, "context_length", 0) or 64),
        clean=clean,
        pad_token=getattr(inner, "pad_token", None),
        padding_side=str(getattr(inner, "padding_side", "right")),
        truncation_side=str(getattr(inner, "truncation_side", "right")),
        sep_token=getattr(inner, "sep_token", None),
        strip_sep_token=bool(getattr(tokenizer, "strip_sep_token", False)),
    )
