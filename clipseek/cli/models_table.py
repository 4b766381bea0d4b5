"""`clipseek models`: the suggested models as rows and as 80-column text.

Everything here is read from the catalogue, the Hugging Face cache folder, the export
folder and the figures remembered on this machine (the runtime `clipseek index` measured,
what cold queries cost): nothing imports open_clip, torch or ONNX Runtime, so the table
answers in a fraction of a second. Two tables, one row per model in each: the published
figures, then what was measured here, so that each reads well at 80 columns.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipseek.models.catalogue import CATALOG, CatalogEntry, ModelSpec, pareto_optimal
from clipseek.models.runtime import COLD_QUERY_RUNS, ColdQuery

WIDTH = 80
#: Which model to pick for which languages, with the published figures (Immich's
#: Crossmodal-3600 table) and what each costs here: docs/MODELS.md.
MULTILINGUAL_ADVICE = (
    "Languages: the default, ViT-B-32-SigLIP2-256:webli, understands many (Crossmodal-3600 "
    "German 84.4, French 82.3, Spanish 79.0, against 36.6, 56.1, 42.5 for the English-only "
    "ViT-B-32:laion2b_s34b_b79k); it is weaker in Chinese, Japanese, Thai and Hindi. For "
    "English alone, ViT-B-32:laion2b_s34b_b79k's image model is about 1.5× as fast, it "
    "downloads 605 MB against 1.5 GB and answers a cold query in 240 MB against 430 MB; "
    "figures per language in docs/MODELS.md."
)


@dataclass(frozen=True)
class ModelRow:
    entry: CatalogEntry
    spec: ModelSpec
    offline: bool  # the weights are on this machine
    fast_path: tuple[bool, int]  # the ONNX export is ready, and its size in bytes
    images_per_s: float | None  # measured here by --backend auto, if remembered
    backend: str | None  # what that measurement kept ("onnx fp32", "torch bf16")
    cold: ColdQuery | None  # a cold query through the fast path here, if remembered
    pareto: bool
    in_use: bool


def weights_here(entry: CatalogEntry, hub_cache: Path) -> bool:
    """Whether huggingface_hub's cache holds the entry's weights (any snapshot)."""
    snapshots = hub_cache / f"models--{entry.hub.replace('/', '--')}" / "snapshots"
    try:
        folders = list(snapshots.iterdir())
    except OSError:
        return False
    return any((folder / name).is_file() for folder in folders for name in entry.files)


def _measured(spec: ModelSpec) -> tuple[float | None, str | None]:
    from clipseek.models.runtime import cached_choice

    choice = cached_choice(spec)
    if not choice:
        return None, None
    backend, precision = str(choice.get("backend", "")), str(choice.get("precision", ""))
    rate = choice.get(f"{backend}_{precision}_images_per_s")
    if not isinstance(rate, int | float):
        return None, None
    return float(rate), f"{backend} {precision}"


def model_rows(in_use_key: str | None) -> list[ModelRow]:
    from clipseek.models.catalogue import resolve_model
    from clipseek.models.export import export_status
    from clipseek.models.runtime import cold_query
    from clipseek.models.weights import hf_cache_dir

    hub = hf_cache_dir()
    specs = [resolve_model(e.name) for e in CATALOG]
    measured = {e.name: _measured(s) for e, s in zip(CATALOG, specs, strict=True)}
    cost = {n: 1000.0 / r for n, (r, _) in measured.items() if r}
    cold = {e.name: cold_query(s) for e, s in zip(CATALOG, specs, strict=True)}
    cold_cost = {n: (c.seconds, c.peak_mb) for n, c in cold.items() if c is not None}
    pareto = pareto_optimal(CATALOG, cost, cold_cost)
    return [
        ModelRow(
            entry=e,
            spec=s,
            offline=weights_here(e, hub),
            fast_path=export_status(s),
            images_per_s=measured[e.name][0],
            backend=measured[e.name][1],
            cold=cold[e.name],
            pareto=pareto[e.name],
            in_use=s.key == in_use_key,
        )
        for e, s in zip(CATALOG, specs, strict=True)
    ]


def rows_json(rows: list[ModelRow], in_use_source: str) -> list[dict[str, Any]]:
    return [
        {
            "name": r.entry.name,
            "open_clip": r.spec.key,
            "xm3600": r.entry.xm3600,
            "flickr_r1": r.entry.flickr_r1,
            "coco_r1": r.entry.coco_r1,
            "recall_at_1": r.entry.recall_at_1,
            "published_cpu_ms": r.entry.cpu_ms,
            "gflops": r.entry.gflops,
            "download_mb": r.entry.download_mb,
            "licence": r.entry.licence,
            "languages": r.entry.languages,
            "family": r.entry.family,
            "hub": r.entry.hub,
            "note": r.entry.note,
            "offline": r.offline,
            "fast_path": r.fast_path[0],
            "fast_path_bytes": r.fast_path[1],
            "images_per_s": r.images_per_s,
            "backend": r.backend,
            "cold_query_s": _rounded(r.cold and r.cold.seconds, 3),
            "cold_query_cpu_s": _rounded(r.cold and r.cold.cpu_seconds, 3),
            "cold_query_peak_mb": _rounded(r.cold and r.cold.peak_mb, 1),
            "cold_query_runs": r.cold.runs if r.cold else 0,
            "pareto_optimal": r.pareto,
            "in_use": r.in_use,
            "in_use_source": in_use_source if r.in_use else None,
        }
        for r in rows
    ]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(
    rows: list[ModelRow], in_use: str, source: str, default: str, hub_cache: str
) -> list[str]:
    """Plain lines, none wider than :data:`WIDTH`: piped or in a narrow terminal alike."""
    name_w = max(len(r.entry.name) for r in rows)
    lines = [*textwrap.wrap(f"In use: {in_use} ({source}).", WIDTH, break_on_hyphens=False), ""]
    lines.append(
        f" {'published':<{name_w}}  {'XM36':>5} {'F30k':>5} {'MB':>5} {'licence':<10} lang"
    )
    for r in rows:
        mark = ">" if r.in_use else " "
        star = "*" if r.pareto else " "
        lines.append(
            f"{mark}{r.entry.name:<{name_w}} {star}{_num(r.entry.xm3600):>5} "
            f"{_num(r.entry.flickr_r1):>5} {r.entry.download_mb:>5} "
            f"{r.entry.licence:<10} {r.entry.languages}"
        )
    lines += ["", f" {'measured here':<{name_w}}  img/s {'runtime':<10} cold s peak MB here"]
    for r in rows:
        mark = ">" if r.in_use else " "
        here = "fast" if r.fast_path[0] else ("yes" if r.offline else "—")
        cold = r.cold
        lines.append(
            f"{mark}{r.entry.name:<{name_w}}  {_num(r.images_per_s):>5} "
            f"{r.backend or '—':<10} {_num(cold and cold.seconds, 2):>6} "
            f"{_num(cold and cold.peak_mb, 0):>7} {here}"
        )
    legend = [
        "> in use.  * Pareto-optimal: no other listed model is at least as good on every "
        "figure: published quality, download, the cost of an image (img/s once measured "
        "here for every model, else Immich's published CPU time) and, once measured here "
        "for every model, a cold query's time and memory.",
        "XM36: Crossmodal-3600 English, mean text→image R@1/5/10 (Immich's table). "
        "F30k: Flickr30k text→image R@1 (open_clip's table); sources in docs/MODELS.md.",
        "MB: download (fp32 weights). lang: en = English only, multi = many languages.",
        MULTILINGUAL_ADVICE,
        "img/s, runtime: images per second measured on this machine by `clipseek index` "
        "(--backend auto), once per model, and the runtime it keeps; — until then.",
        'cold s, peak MB: a fresh `clipseek query "TEXT"` through the fast path on this '
        "machine, from the process's start to its answer, and its peak memory (the median "
        f"of its last {COLD_QUERY_RUNS}); — until one has run: run one query with "
        "--model NAME once that model's fast path is ready.",
        f"here: fast = fast path ready (ONNX export), yes = weights in {hub_cache}, "
        "— = fetched on first use.",
    ]
    if in_use != default:
        legend.append(
            f"To move to the default, {default}: clipseek index --model {default} FOLDERS "
            "(every image is embedded again; the old index stays until you delete it, and "
            "commands use the default once its index exists)."
        )
    legend.append(
        "Also accepted: any open_clip MODEL:PRETRAINED pair, hf-hub:ORG/REPO or local-dir:PATH."
    )
    lines.append("")
    for paragraph in legend:
        lines.extend(textwrap.wrap(paragraph, WIDTH, break_on_hyphens=False))
    return lines
