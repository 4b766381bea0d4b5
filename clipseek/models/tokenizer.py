"""open_clip's CLIP tokenizer without open_clip or torch, for the ONNX query path.

open_clip's ``SimpleTokenizer`` is OpenAI's byte-level BPE: ftfy, a double HTML unescape,
whitespace collapsed, lowercased, split by one regular expression and merged by rank.
Importing it imports torch (it returns a tensor), so the same steps are repeated here
over the same vocabulary file, which the export copies next to the ONNX files. A test
compares the ids with open_clip's over thousands of varied strings.
"""

from __future__ import annotations

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
