"""A BPE ``tokenizer.json`` kept as sorted tables, so a query builds only the slice of the
model its own text can use.

Loading SigLIP 2's 256,000-token tokenizer whole with the tokenizers library costs a cold
query about a second and 200 MB (docs/MODELS.md). Yet BPE starts from a piece's characters
and only ever joins neighbours, so every symbol it can form from a piece is a substring of
that piece, and every merge it can apply joins two such substrings into a third. The
export therefore keeps the vocabulary and the merges as hash-sorted arrays
(:data:`SLICES_FILE`); for each call a BPE model of the tokens that are substrings of the
text's pieces, with the merges between them in their original order, runs inside the file's
own normaliser, pre-tokeniser, post-processor and added tokens. The tokenizers library then
takes the very steps it would take with the whole model, so the ids are the same.

Only plain BPE is sliced (no subword prefix or word suffix, no dropout); other models, and a
text in which an added token appears (the library splits those out before the model sees
it), use the whole file. The tables are checked against the whole tokenizer when written, and
a damaged or foreign file is passed over, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.fileio import write_whole

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

#: Written beside ``tokenizer.json`` in an export.
SLICES_FILE = "tokenizer.slices.npz"
_FORMAT = 1

#: More candidate substrings than this in one call (a very long text without spaces): the
#: whole tokenizer is cheaper than hashing them all.
_MAX_CANDIDATES = 200_000

#: Texts the written tables must tokenise exactly as the whole file does.
_CHECKS = (
    "a dog playing on a beach",
    "ein hund spielt am strand bei sonnenuntergang",
    "un café crème à côté de la fenêtre",
    "niño jugando en la playa",
    "собака играет на пляже",
    "ビーチで遊ぶ犬",
    "海滩上玩耍的狗",
    "해변에서 노는 개",
    "كلب يلعب على الشاطئ",
    "🐶 on the 🏖️   at dusk",
    "x" * 300,
)


def _hash(token: str) -> int:
    raw = token.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def _pair(merge: Any) -> tuple[str, str] | None:
    """A merge as the tokenizers library reads it: ``[a, b]`` or the older ``"a b"``."""
    if isinstance(merge, str):
        parts = merge.split(" ")
        return (parts[0], parts[1]) if len(parts) == 2 else None
    if isinstance(merge, list) and len(merge) == 2 and all(isinstance(p, str) for p in merge):
        return merge[0], merge[1]
    return None


def sliceable(data: dict[str, Any]) -> bool:
    """Whether a parsed ``tokenizer.json`` is a BPE this module slices exactly."""
    model = data.get("model")
    return (
        isinstance(model, dict)
        and model.get("type") == "BPE"
        and not model.get("dropout")
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
        and isinstance(model.get("vocab"), dict)
        and isinstance(model.get("merges"), list)
    )


def _shell(data: dict[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    """The file without its vocabulary and merges, but with the tokens that do not come
    from a text's own pieces: the unknown token, the byte fallbacks, the added tokens and
    ``keep`` (the pad token), each with its own id."""
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    wanted = [model.get("unk_token"), *keep]
    wanted += [t.get("content") for t in data.get("added_tokens") or [] if isinstance(t, dict)]
    if model.get("byte_fallback"):
        wanted += [f"<0x{b:02X}>" for b in range(256)]
    shell = {**data, "padding": None, "truncation": None}
    shell["model"] = {
        **model,
        "vocab": {t: vocab[t] for t in wanted if isinstance(t, str) and t in vocab},
        "merges": [],
    }
    return shell


def write_slices(source: Path, target: Path, keep: Sequence[str] = ()) -> bool:
    """Write the tables of the BPE ``tokenizer.json`` at ``source`` to ``target``.

    Returns False where the model is not a BPE this module slices, or where the slices do
    not give the whole file's ids for the check texts: the file written then says so, and
    the tokenizer is read whole, as before. False too where the file could not be written
    (a full disk, a read-only folder)."""
    import numpy as np
    from tokenizers import Tokenizer

    raw = source.read_bytes()
    data = json.loads(raw)
    vocab: dict[str, int] = {}
    pairs: list[tuple[str, str] | None] = []
    if isinstance(data, dict) and sliceable(data):
        vocab = data["model"]["vocab"]
        pairs = [_pair(m) for m in data["model"]["merges"]]
    if not vocab or any(p is None or p[0] not in vocab or p[1] not in vocab for p in pairs):
        _save(target, _unsliced(raw))
        return False
    tokens = list(vocab)
    hashes = np.fromiter((_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
    order = np.argsort(hashes, kind="stable")
    encoded = [tokens[i].encode("utf-8", "surrogatepass") for i in order]
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    left = np.fromiter((vocab[p[0]] for p in pairs), dtype=np.uint64, count=len(pairs))  # type: ignore[index]
    right = np.fromiter((vocab[p[1]] for p in pairs), dtype=np.uint64, count=len(pairs))  # type: ignore[index]
    keys = (left << np.uint64(32)) | right
    ranks = np.arange(len(pairs), dtype=np.int64)
    # The library keeps the last of two equal merges (a map filled in order).
    by_key = np.lexsort((ranks, keys))
    last = np.ones(len(by_key), dtype=bool)
    last[:-1] = keys[by_key][1:] != keys[by_key][:-1]
    by_key = by_key[last]
    shell = json.dumps(_shell(data, keep), ensure_ascii=False).encode("utf-8")
    tables = {
        "format": np.array([_FORMAT], dtype=np.int64),
        "source_size": np.array([len(raw)], dtype=np.int64),
        "max_chars": np.array([max((len(t) for t in tokens), default=1)], dtype=np.int64),
        "hashes": hashes[order],
        "ids": np.fromiter((vocab[tokens[i]] for i in order), dtype=np.int64, count=len(order)),
        "offsets": offsets,
        "blob": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "merge_keys": keys[by_key],
        "merge_ranks": ranks[by_key],
        "shell": np.frombuffer(shell, dtype=np.uint8),
    }
    slices = TokenSlices(tables)
    whole = Tokenizer.from_str(raw.decode("utf-8"))
    names = [t for t in keep if t] + [t["content"] for t in data.get("added_tokens") or []]
    exact = all(slices.shell.token_to_id(n) == whole.token_to_id(n) for n in names)
    for text in _CHECKS if exact else ():
        sliced = slices.tokenizer_for([text])
        if sliced is None or sliced.encode(text).ids != whole.encode(text).ids:
            exact = False
            break
    return _save(target, tables if exact else _unsliced(raw)) and exact


def _unsliced(raw: bytes) -> dict[str, np.ndarray]:
    """Tables that say "read this file whole", so that nobody tries to slice it again."""
    import numpy as np

    return {
        "format": np.array([_FORMAT], dtype=np.int64),
        "source_size": np.array([len(raw)], dtype=np.int64),
    }


def _save(target: Path, tables: dict[str, np.ndarray]) -> bool:
    """Written whole or not at all (a reader sees all of it or none); False if it could not
    be written."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **tables)
    return write_whole(target, buffer.getvalue())


def read_slices(path: Path, source: Path) -> tuple[TokenSlices | None, bool]:
    """The tables at ``path`` and whether the file is settled.

    The tables are None where the file says the tokenizer is read whole, and where it is
    missing, damaged, of another format or made from another ``source``; in those last
    cases it is not settled, and is worth writing again. Tables are used only when they
    read whole (zip members carry CRCs) and hold together."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            tables = {name: z[name] for name in z.files}
        if int(tables["format"][0]) != _FORMAT:
            return None, False
        if int(tables["source_size"][0]) != source.stat().st_size:
            return None, False
        if "hashes" not in tables:
            return None, True
        return TokenSlices(tables), True
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile, EOFError):
        return None, False


class TokenSlices:
    """The tables in memory (about 12 MB for 256,000 tokens) and the file's shell."""

    def __init__(self, tables: dict[str, np.ndarray]) -> None:
        import numpy as np
        from tokenizers import Tokenizer

        self._hashes = tables["hashes"]
        self._ids = tables["ids"]
        self._offsets = tables["offsets"]
        self._blob = tables["blob"].tobytes()
        self._merge_keys = tables["merge_keys"]
        self._merge_ranks = tables["merge_ranks"]
        self._max_chars = int(tables["max_chars"][0])
        n = len(self._hashes)
        if not (
            len(self._ids) == n
            and len(self._offsets) == n + 1
            and int(self._offsets[-1]) == len(self._blob)
            and len(self._merge_ranks) == len(self._merge_keys)
            and bool(np.all(self._hashes[1:] >= self._hashes[:-1]))
            and bool(np.all(self._merge_keys[1:] > self._merge_keys[:-1]))
        ):
            raise ValueError("inconsistent tokenizer tables")
        self._shell_data: dict[str, Any] = json.loads(tables["shell"].tobytes())
        #: The file's normaliser, pre-tokeniser, post-processor and added tokens over a
        #: model of the tokens no text piece gives (pad, unknown, byte fallbacks).
        self.shell: Tokenizer = Tokenizer.from_str(json.dumps(self._shell_data))
        added = [t.get("content") for t in self._shell_data.get("added_tokens") or []]
        self._added = [a for a in added if isinstance(a, str) and a]

    def _pieces(self, text: str) -> list[str] | None:
        """What the model is given for ``text``; None if an added token appears in it."""
        if any(a in text for a in self._added):
            return None
        normaliser, pre = self.shell.normalizer, self.shell.pre_tokenizer
        normalised = normaliser.normalize_str(text) if normaliser is not None else text
        if normalised != text and any(a in normalised for a in self._added):
            return None
        if pre is None:
            return [normalised]
        return [piece for piece, _ in pre.pre_tokenize_str(normalised)]

    def _lookup(self, candidates: set[str]) -> dict[str, int]:
        """The candidates that are tokens, with their ids."""
        import numpy as np

        if not candidates:
            return {}
        words = list(candidates)
        wanted = np.fromiter((_hash(w) for w in words), dtype=np.uint64, count=len(words))
        at = np.searchsorted(self._hashes, wanted)
        found: dict[str, int] = {}
        n = len(self._hashes)
        for k in np.flatnonzero((at < n) & (self._hashes[np.minimum(at, n - 1)] == wanted)):
            raw = words[k].encode("utf-8", "surrogatepass")
            i = int(at[k])
            while i < n and self._hashes[i] == wanted[k]:  # equal hashes: compare the bytes
                if self._blob[self._offsets[i] : self._offsets[i + 1]] == raw:
                    found[words[k]] = int(self._ids[i])
                    break
                i += 1
        return found

    def tokenizer_for(self, texts: Sequence[str]) -> Tokenizer | None:
        """A tokenizer that gives the whole file's ids for each of ``texts`` (as
        ``encode`` would be called on them); None where only the whole file can."""
        import numpy as np
        from tokenizers import Tokenizer

        pieces: list[str] = []
        for text in texts:
            got = self._pieces(text)
            if got is None:
                return None
            pieces += got
        longest = self._max_chars
        if sum(len(p) * min(len(p), longest) for p in pieces) > _MAX_CANDIDATES:
            return None
        candidates = {
            p[i:j]
            for p in pieces
            for i in range(len(p))
            for j in range(i + 1, min(len(p), i + longest) + 1)
        }
        found = self._lookup(candidates)
        splits: list[tuple[str, str]] = []
        keys: list[int] = []
        for token in found:
            for cut in range(1, len(token)):
                a, b = token[:cut], token[cut:]
                if a in found and b in found:
                    splits.append((a, b))
                    keys.append((found[a] << 32) | found[b])
        merges: list[list[str]] = []
        if keys and len(self._merge_keys):
            wanted = np.array(keys, dtype=np.uint64)
            at = np.minimum(np.searchsorted(self._merge_keys, wanted), len(self._merge_keys) - 1)
            hit = self._merge_keys[at] == wanted
            ranks = self._merge_ranks[at]
            chosen = sorted((int(ranks[k]), k) for k in np.flatnonzero(hit))
            merges = [list(splits[k]) for _, k in chosen]
        data = dict(self._shell_data)
        model = dict(data["model"])
        model["vocab"] = {**model["vocab"], **found}
        model["merges"] = merges
        data["model"] = model
        return Tokenizer.from_str(json.dumps(data))
