"""Benchmark 9's comparison with rclip, the command-line peer (ONNX Runtime, no torch).

Same files, same machine, A/B interleaved, fresh processes (wall time from outside):

- the first full index of a folder (rclip indexes the working folder before it answers,
  so its figure includes one query at the end);
- a cold one-shot text query on that index (``rclip --no-indexing`` against
  ``clipseek query``), with peak RSS;
- a second run over the unchanged folder (``clipseek index``; rclip's check for changes
  with a query, its only way to run it).

rclip lives in its own environment, since it pins its own numpy and onnxruntime::

    python -m venv /tmp/rclip-venv && /tmp/rclip-venv/bin/pip install rclip==3.3.0
    python benchmarks/bench_rclip.py --rclip-python /tmp/rclip-venv/bin/python

Neither tool's weights can be downloaded here. clipseek gets the random ViT-B/32 stand-in
of the other benchmarks; rclip gets random weights of its own model's shape (open_clip
``ViT-B-32-256``: 256 px input, 30% more FLOPs per image than 224 px), exported to the
files rclip looks for in ``RCLIP_DATADIR`` with input name ``input``, so it runs offline
exactly as it would with its own files. Both exports keep their weights beside the graph
(ONNX Runtime maps them), so neither session build is slowed by the layout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _common import (
    ROOT,
    cache_root,
    compile_sources,
    header,
    median,
    temp_dir,
    use_standin_cache,
    wall_and_peak,
)

MODEL = "ViT-B/32"
RCLIP_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # rclip.model_download.MODEL_SUBDIR
QUERY = "a dog playing in the park"
#: The issue's 50 files were 26 photos and drawings and 24 12 MP JPEGs.
JPEG_SHARE = 24 / 50


def mixed_folder(count: int) -> Path:
    """``count`` files, 48% of them 12 MP JPEGs and the rest 640×480 PNGs, cycling over
    64 pictures of each kind. Each file ends in its own few bytes after the image (which
    decoders ignore): both tools fingerprint a file by its ends and reuse the vector of
    bytes they have seen, so files that were exact copies would be embedded only once."""
    from clipseek.testing import write_photo_corpus

    jpegs = write_photo_corpus(cache_root() / "corpus-jpeg-4000x3000", 64, (4000, 3000), "jpg", 0)
    pngs = write_photo_corpus(cache_root() / "corpus-png-640x480", 64, (640, 480), "png", 7)
    folder = cache_root() / f"distinct-{count}"
    if (folder / ".ready").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    n_jpeg = round(count * JPEG_SHARE)
    for i in range(count):
        source = jpegs[i % len(jpegs)] if i < n_jpeg else pngs[i % len(pngs)]
        tail = b"\0clipseek-bench %d\0" % i
        (folder / f"{i:05d}{source.suffix}").write_bytes(source.read_bytes() + tail)
    (folder / ".ready").write_text("ok")
    return folder


def rclip_models() -> Path:
    """A folder holding rclip's model files: stand-ins of its model's shapes."""
    target = cache_root() / "rclip-standin"
    if (target / ".ready").exists():
        return target
    print("  exporting rclip's stand-in model (once; not timed)…", flush=True)
    import open_clip
    import torch

    from clipseek.models import resolve_model
    from clipseek.models.export import (
        _image_module,
        _onnx_export,
        _text_module,
        _weights_beside,
        find_export,
    )

    shutil.rmtree(target, ignore_errors=True)
    models = target / RCLIP_SUBDIR
    models.mkdir(parents=True)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-256", pretrained=None).eval()
    text, _trimmed = _text_module(model)  # clipseek's own text tower, read at the end marker
    pixels = torch.zeros((2, 3, 256, 256))
    tokens = torch.zeros((2, 77), dtype=torch.long)
    _onnx_export(_image_module(model), pixels, models / "visual.onnx", "input", {0: "batch"})
    _onnx_export(text, tokens, models / "textual.onnx", "input", {0: "batch"})
    for name in ("visual.onnx", "textual.onnx"):
        _weights_beside(models / name)
    export = find_export(resolve_model(MODEL))
    assert export is not None, "clipseek's export is made first"
    (target / "tokenizer").mkdir()
    shutil.copy(export.path("bpe_simple_vocab_16e6.txt.gz"), target / "tokenizer")
    (target / ".ready").write_text("ok")
    return target


def rclip_datadir(models: Path, into: Path) -> Path:
    """A fresh ``RCLIP_DATADIR``: the model files linked in, no database yet."""
    for item in models.iterdir():
        if not item.name.startswith("."):
            (into / item.name).symlink_to(item)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rclip-python", required=True, type=Path, help="rclip's python")
    parser.add_argument("--sizes", default="50,500", help="comma-separated file counts")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; medians are reported")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rclip = [str(args.rclip_python), "-m", "rclip"]
    version = subprocess.run([*rclip, "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        raise SystemExit(f"{args.rclip_python} cannot run rclip: {version.stderr[-500:]}")

    header("clipseek beside rclip: first index, cold query, unchanged re-run")
    print(f"# {version.stdout.strip()}")
    use_standin_cache()
    os.environ["XDG_CACHE_HOME"] = str(cache_root() / "xdg-cache")  # clipseek's export
    compile_sources(ROOT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    clipseek = [sys.executable, "-m", "clipseek"]
    folders = {n: mixed_folder(n) for n in sizes}
    with temp_dir("warm-") as db:  # a user's first run exports; the next picks the runtime
        for _ in range(2):
            subprocess.run(
                [*clipseek, "index", str(folders[sizes[0]]), "--db", str(db), "-m", MODEL],
                env=env,
                capture_output=True,
                check=True,
            )
    models = rclip_models()

    rows: dict[tuple[str, str, int], list[tuple[float, float]]] = {}

    def record(what: str, tool: str, n: int, wall: float, rss: float) -> None:
        rows.setdefault((what, tool, n), []).append((wall, rss))
        print(f"  {what} {n} {tool}: {wall:.2f} s, {rss:,.0f} MB", flush=True)

    for r in range(args.repeat):
        for n in sizes:
            folder = folders[n]
            with temp_dir("cs-db-") as db, temp_dir("rclip-data-") as data:
                renv = {**env, "RCLIP_DATADIR": str(rclip_datadir(models, data))}
                first = ["clipseek", "rclip"] if (r + n) % 2 == 0 else ["rclip", "clipseek"]
                index_cmds = {  # rclip indexes its working folder before it answers
                    "clipseek": ([*clipseek, "index", str(folder), "--db", str(db)], env, None),
                    "rclip": ([*rclip, "-f", "-t", "1", QUERY], renv, folder),
                }
                query = [*clipseek, "query", QUERY, "--db", str(db), "--top-k", "5", "--json"]
                query_cmds = {
                    "clipseek": (query, env, None),
                    "rclip": ([*rclip, "-f", "-t", "5", "--no-indexing", QUERY], renv, folder),
                }
                steps = [
                    ("first index", index_cmds),
                    ("cold query", query_cmds),
                    ("unchanged re-run", index_cmds),
                ]
                for what, cmds in steps:
                    for tool in first:
                        cmd, tool_env, cwd = cmds[tool]
                        if tool == "clipseek":
                            cmd = [*cmd, "-m", MODEL]
                        w, m, out = wall_and_peak(cmd, tool_env, cwd)
                        if what == "cold query" and not out.strip():
                            raise SystemExit(f"{tool} answered nothing")
                        record(what, tool, n, w, m)

    print(f"\nmedians of {args.repeat}, fresh processes, wall time from outside:\n")
    print("| what | files | clipseek s | rclip s | clipseek ÷ rclip | clipseek MB | rclip MB |")
    print("|---|---|---|---|---|---|---|")
    for what in ("first index", "cold query", "unchanged re-run"):
        for n in sizes:
            cw = median([w for w, _ in rows[(what, "clipseek", n)]])
            rw = median([w for w, _ in rows[(what, "rclip", n)]])
            cm = median([m for _, m in rows[(what, "clipseek", n)]])
            rm = median([m for _, m in rows[(what, "rclip", n)]])
            print(
                f"| {what} | {n} | {cw:.2f} | {rw:.2f} | {cw / rw:.2f}× | {cm:,.0f} | {rm:,.0f} |"
            )
    print("\nfirst index, throughput (files ÷ process wall), clipseek ÷ rclip:")
    for n in sizes:
        ratios = [
            rw / cw
            for (cw, _), (rw, _) in zip(
                rows[("first index", "clipseek", n)], rows[("first index", "rclip", n)], strict=True
            )
        ]
        each = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"  {n} files: {median(ratios):.2f}× (per repeat: {each})")
    print(f"\n# load average at the end: {os.getloadavg()[0]:.1f}; goal: ≥ 2× rclip's throughput")


if __name__ == "__main__":
    main()
