"""Text→image retrieval quality: Recall@1/5/10 through every search path clipseek has.

Offline mode (the default; what docs/MODELS.md reports): generated scenes ("a red circle on
a dark background", ...) searched by their captions with the shapes model clipseek ships,
through each runtime (ONNX export, torch) and each reader (the index files read directly,
Chroma), all of which must rank every query's results identically. A query counts as found
at K when a picture showing what its caption says (colour, shape, background) is in its
top K.

    python benchmarks/bench_quality.py --images 192

Dataset mode (never run in CI; needs the data and the model's weights): a folder of images
and their captions, each caption's own image being the one to find, as the Flickr30k and
MSCOCO retrieval benchmarks count it:

    python benchmarks/bench_quality.py --model ViT-B-32:laion2b_s34b_b79k \\
        --dataset ~/data/flickr30k/images --captions ~/data/dataset_flickr30k.json

``--captions`` takes Karpathy's split file (``dataset_flickr30k.json``,
``dataset_coco.json``: the ``test`` split's images and their five sentences), or a text file
of ``FILENAME<TAB>CAPTION`` lines (Crossmodal-3600 converted to that form, for instance).
Add ``--backend torch`` to compare runtimes; the index is kept in ``--work`` between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, header  # noqa: F401  (ROOT puts the checkout on sys.path)

KS = (1, 5, 10)


def recall(
    ranked: Sequence[Sequence[str]], relevant: Callable[[int, str], bool]
) -> dict[int, float]:
    """Recall@K: the share of queries with a relevant result among their first K."""
    out = {}
    for k in KS:
        hits = sum(any(relevant(q, path) for path in paths[:k]) for q, paths in enumerate(ranked))
        out[k] = 100.0 * hits / max(1, len(ranked))
    return out


def _engine(model: str, db: Path, backend: str, direct: bool):
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    settings = load_settings({"model": model, "db": db, "device": "cpu", "precision": "fp32"})
    return Engine(settings, backend=backend, direct=direct)


def _search_all(engine, captions: Sequence[str], top_k: int) -> list[list[str]]:
    return [[r.path for r in engine.search(c, top_k=top_k).results] for c in captions]


def _paths(backends: Sequence[str]) -> list[tuple[str, str, bool]]:
    return [
        (f"{backend}, {'direct reader' if direct else 'Chroma'}", backend, direct)
        for backend in backends
        for direct in (True, False)
    ]


def _read_captions(path: Path, images: Path) -> list[tuple[str, str]]:
    """(caption, image file) pairs from Karpathy's JSON (test split) or a TSV file."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = []
        for image in data["images"]:
            if image.get("split") != "test":
                continue
            file = images / image.get("filepath", "") / image["filename"]
            pairs += [(s["raw"], str(file)) for s in image["sentences"]]
        return pairs
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            name, caption = line.split("\t", 1)
            pairs.append((caption.strip(), str(images / name.strip())))
    return pairs


def offline(args: argparse.Namespace, work: Path) -> None:
    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import export_model, find_export
    from clipseek.testing import fixture_model_spec, generate_dataset

    model = fixture_model_spec()
    scenes = generate_dataset(work / "scenes", args.images, seed=args.seed)
    by_path = {str(p.resolve()): s for p, s in scenes}
    captions = sorted({s.caption for _, s in scenes})
    db = work / "db"
    t = time.perf_counter()
    _engine(model, db, "torch", direct=False).index([work / "scenes"])
    print(f"# indexed {len(scenes)} scenes in {time.perf_counter() - t:.1f} s (torch fp32)")
    spec = resolve_model(model)
    if find_export(spec) is None:
        export_model(load_model(spec, device="cpu", precision="fp32"))

    def relevant(q: int, path: str) -> bool:
        from clipseek.testing import parse_caption

        colour, shape, background = parse_caption(captions[q])
        scene = by_path.get(str(Path(path).resolve()))
        return scene is not None and scene.matches(colour, shape, background)

    _report(captions, relevant, model, db, ["onnx", "torch"])


def dataset(args: argparse.Namespace, work: Path) -> None:
    pairs = _read_captions(Path(args.captions).expanduser(), Path(args.dataset).expanduser())
    if not pairs:
        raise SystemExit(f"No captions found in {args.captions} for images in {args.dataset}.")
    missing = [f for _, f in pairs if not os.path.isfile(f)]
    if missing:
        raise SystemExit(f"{len(missing)} captioned images are missing, e.g. {missing[0]}.")
    captions = [c for c, _ in pairs]
    targets = [str(Path(f).resolve()) for _, f in pairs]
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for file in sorted(set(targets)):  # only the split's images are indexed
        link = folder / Path(file).name
        if not link.exists():
            link.symlink_to(file)
    db = work / f"db-{args.model.replace('/', '-').replace(':', '-')}"
    t = time.perf_counter()
    indexing = "torch" if args.backend == "torch" else "onnx"
    _engine(args.model, db, indexing, direct=False).index([folder])
    print(f"# indexed {len(set(targets))} images in {time.perf_counter() - t:.1f} s")

    def relevant(q: int, path: str) -> bool:
        return os.path.realpath(path) == targets[q]

    backends = ["onnx", "torch"] if args.backend == "both" else [args.backend]
    _report(captions, relevant, args.model, db, backends)


def _report(
    captions: Sequence[str],
    relevant: Callable[[int, str], bool],
    model: str,
    db: Path,
    backends: Sequence[str],
) -> None:
    rankings: dict[str, list[list[str]]] = {}
    timings: dict[str, float] = {}
    for label, backend, direct in _paths(backends):
        engine = _engine(model, db, backend, direct)
        t = time.perf_counter()
        rankings[label] = _search_all(engine, captions, max(KS))
        timings[label] = time.perf_counter() - t
        runtime = engine.model().backend
        if runtime != backend:
            raise SystemExit(f"{label}: the engine ran {runtime}, not {backend}.")
    print(f"\n{len(captions)} captions, model {model}\n")
    print("| search path | R@1 | R@5 | R@10 | seconds |")
    print("|---|---|---|---|---|")
    for label, ranked in rankings.items():
        r = recall(ranked, relevant)
        print(f"| {label} | {r[1]:.1f} | {r[5]:.1f} | {r[10]:.1f} | {timings[label]:.1f} |")
    first_label, first = next(iter(rankings.items()))
    for label, ranked in rankings.items():
        differing = sum(a != b for a, b in zip(first, ranked, strict=True))
        print(f"# {label} against {first_label}: {differing} of {len(first)} rankings differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=192, help="generated scenes (offline)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", help="folder of a dataset's images (dataset mode)")
    parser.add_argument("--captions", help="Karpathy JSON or FILENAME<TAB>CAPTION lines")
    parser.add_argument("--model", default=None, help="dataset mode: the model to measure")
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch", "both"))
    parser.add_argument("--work", help="keep the index and exports here between runs")
    args = parser.parse_args()
    header("text→image retrieval quality, Recall@1/5/10")
    work = Path(args.work).expanduser() if args.work else Path(tempfile.mkdtemp(prefix="q-"))
    work.mkdir(parents=True, exist_ok=True)
    # A private cache and data folder: nothing of the user's is read or written.
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    os.environ["CLIPSEEK_CONFIG"] = str(work / "no-config.toml")
    os.environ.setdefault("CLIPSEEK_NO_EXPORT", "1")  # exports are made explicitly here
    if args.dataset:
        if not (args.captions and args.model):
            raise SystemExit("Dataset mode needs --captions and --model as well as --dataset.")
        dataset(args, work)
    else:
        offline(args, work)


if __name__ == "__main__":
    main()
