"""A large store for measuring `clipseek check`, made in minutes by tiling a real one.

    python benchmarks/tile_store.py SOURCE DEST --times 10

SOURCE is a store made by ``bench_store_million.py`` (one collection, its paths under
``/photos``, its vector files settled, labels equal to row ids). DEST gets ``--times``
copies of every record: copy K's paths are under ``/photosK`` (ids, path texts and folder
lists follow the key rule), its vectors those of SOURCE with their coordinates permuted
(distances within a copy are unchanged, so its neighbour links stay valid), its links
and labels offset; then the vector cache is written. Every file is what ``check``
reads at that size; but the copies are separate graphs (only the first has upper
levels), so a search through Chroma reaches the first copy only: the self-search's
verdict on DEST means nothing, its time little. Building a real million-picture store
takes about an hour of writes through Chroma on the 2-core machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipseek.store import chroma_format as cf
from clipseek.store.records import COLLECTION_PREFIX, FAILURES_PREFIX
from clipseek.store.vector_cache import CACHE_PREFIX, write_cache


def _sha1(text: str) -> str:
    return hashlib.sha1(os.fsencode(text)).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--times", type=int, default=10)
    args = parser.parse_args()
    times = args.times
    if args.dest.exists():
        raise SystemExit(f"{args.dest} exists")
    shutil.copytree(args.source, args.dest)
    for part in args.dest.glob(f"{CACHE_PREFIX}*"):
        part.unlink()
    (args.dest / "clipseek-graph-checked.json").unlink(missing_ok=True)
    con = sqlite3.connect(args.dest / "chroma.sqlite3")
    con.create_function("sha1hex", 1, _sha1, deterministic=True)
    ((collection_id, _),) = [
        c for c in cf.collections(con, prefixes=[COLLECTION_PREFIX]) if FAILURES_PREFIX not in c[1]
    ]
    scopes = {scope: segment for scope, segment, _ in cf.segments(con, collection_id)}
    metadata, vector = scopes["METADATA"], scopes["VECTOR"]
    (offset,) = con.execute("SELECT MAX(id) FROM embeddings").fetchone()
    with con:
        for k in range(1, times):
            shift = k * offset
            prefix = f"/photos{k}"
            con.execute(
                "INSERT INTO embeddings (id, segment_id, embedding_id, seq_id, created_at) "
                "SELECT e.id + ?, e.segment_id, sha1hex(? || substr(m.string_value, 8)), "
                "e.seq_id, e.created_at FROM embeddings e JOIN embedding_metadata m "
                "ON m.id = e.id AND m.key = 'path' WHERE e.id <= ? ORDER BY e.id",
                (shift, prefix, offset),
            )
            con.execute(
                "INSERT INTO embedding_metadata (id, key, string_value, int_value, "
                "float_value, bool_value) SELECT id + ?, key, CASE WHEN key = 'path' THEN "
                "? || substr(string_value, 8) ELSE string_value END, int_value, float_value, "
                "bool_value FROM embedding_metadata WHERE id <= ? ORDER BY id",
                (shift, prefix, offset),
            )
            con.execute(
                "INSERT INTO embedding_metadata_array (id, key, string_value, int_value, "
                "float_value, bool_value) SELECT id + ?, key, CASE WHEN string_value = '/' "
                "THEN '/' ELSE ? || substr(string_value, 8) END, int_value, float_value, "
                "bool_value FROM embedding_metadata_array WHERE id <= ? ORDER BY rowid",
                (shift, prefix, offset),
            )
            print(f"records of copy {k} written", flush=True)
    seg = args.dest / vector
    head = cf.hnsw_header(seg)
    count = head.count
    fields = list(cf.HNSW_HEADER_FULL.unpack_from((seg / "header.bin").read_bytes()))
    fields[2] = fields[3] = count * times  # max_elements, cur_element_count
    header = bytearray((seg / "header.bin").read_bytes())
    cf.HNSW_HEADER_FULL.pack_into(header, 0, *fields)
    rng = np.random.default_rng(0)
    level0 = np.fromfile(seg / "data_level0.bin", dtype=np.uint8).reshape(count, head.per_element)
    vectors_at = slice(head.data_offset, head.label_offset)
    temp = args.dest / ".tiled-vectors.f32"
    with (seg / "data_level0.bin").open("ab") as out, temp.open("wb") as cache:
        cache.write(np.ascontiguousarray(level0[:, vectors_at]).tobytes())
        for k in range(1, times):
            rows = level0.copy()
            links = np.ascontiguousarray(rows[:, 4 : 4 + 4 * head.max_m0]).view("<u4")
            links += np.uint32(k * count)
            rows[:, 4 : 4 + 4 * head.max_m0] = links.view(np.uint8)
            labels = np.ascontiguousarray(rows[:, head.label_offset :]).view("<u8")
            labels += np.uint64(k * offset)
            rows[:, head.label_offset :] = labels.view(np.uint8)
            vectors = np.ascontiguousarray(rows[:, vectors_at]).view("<f4")
            vectors = vectors[:, rng.permutation(head.dim)]
            rows[:, vectors_at] = np.ascontiguousarray(vectors).view(np.uint8)
            out.write(rows.tobytes())
            cache.write(vectors.astype("<f4").tobytes())
            print(f"vectors of copy {k} written", flush=True)
    del level0
    (seg / "header.bin").write_bytes(bytes(header))
    norms = np.fromfile(seg / "length.bin", dtype="<f4", count=count)
    np.tile(norms, times).astype("<f4").tofile(seg / "length.bin")
    with (seg / "link_lists.bin").open("ab") as fh:
        fh.write(np.zeros(count * (times - 1), dtype="<u4").tobytes())
    # The label map as Chroma's Rust core writes it (labels are row ids in SOURCE).
    labels_of = {}
    for rowids, ids in cf.record_id_chunks(con, metadata):
        labels_of.update(zip(ids, rowids.tolist(), strict=True))
    _write_label_map(seg / "index_metadata.pickle", labels_of)
    seq = cf.applied_seq(con, metadata)
    con.close()
    # The cache: rows in element order, each row's row id (= its label).
    rowids = np.empty(count * times, dtype=np.int64)
    for start, labels, _, _ in cf.hnsw_chunks(seg, cf.hnsw_header(seg), 65536):
        rowids[start : start + len(labels)] = labels.astype(np.int64)
    matrix = np.memmap(temp, dtype="<f4", mode="r", shape=(count * times, head.dim))
    assert write_cache(args.dest, collection_id, metadata, int(seq or 0), rowids, matrix)
    del matrix
    temp.unlink()
    print(f"{count * times:,} records in {args.dest}")


def _write_label_map(path: Path, labels_of: dict[str, int]) -> None:
    def entries(pairs: list[bytes]) -> bytes:
        out = bytearray()
        for start in range(0, len(pairs), 1000):
            out += b"(" + b"".join(pairs[start : start + 1000]) + b"u"
        return bytes(out) + b"(u"

    def text(value: str) -> bytes:
        data = value.encode()
        return b"X" + len(data).to_bytes(4, "little") + data

    def number(value: int) -> bytes:
        return b"J" + value.to_bytes(4, "little", signed=True)

    id_to_label = [text(i) + number(label) for i, label in labels_of.items()]
    label_to_id = [number(label) + text(i) for i, label in labels_of.items()]
    body = (
        b"\x80\x03}("
        + text("dimensionality")
        + b"N"
        + text("total_elements_added")
        + number(len(labels_of))
        + text("max_seq_id")
        + b"N"
        + text("id_to_label")
        + b"}"
        + entries(id_to_label)
        + text("label_to_id")
        + b"}"
        + entries(label_to_id)
        + text("id_to_seq_id")
        + b"}u."
    )
    path.write_bytes(body)


if __name__ == "__main__":
    main()
