"""Help pages in words a user types, and shell completion for values.

Typer labels every option with its Python type (``<bool>``, ``<list[Path]>``,
``<int range> [x>=1]``); a person reading ``clipseek index --help`` needs to know
what to type instead: a FOLDER, a number N, a model NAME, or nothing for a flag.
The command classes here relabel the parameters when Click asks for them, so the
rule is in one place and every command (including ``--help`` itself and the
completion options) follows it.

The completers are plain functions of what was typed so far; they import nothing
heavy, because a shell runs them on every Tab.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import typer.core

#: How each parameter's value is named in help pages (by the function argument's name).
METAVARS = {
    "db": "FOLDER",
    "model": "NAME",
    "device": "DEVICE",
    "precision": "PRECISION",
    "chroma_url": "URL",
    "preview": "MODE",
    "exclude": "GLOB",
    "batch_size": "N",
    "max_megapixels": "MP",
    "workers": "N",
    "threads": "N",
    "image": "FILE",
    "top_k": "N",
    "in_dir": "FOLDER",
    "save": "FOLDER",
    "host": "ADDRESS",
    "port": "PORT",
    "folders": "FOLDERS",
    "terms": "TERMS",
    "after": "DATE",
    "before": "DATE",
    "camera": "NAME",
    "min_size": "WxH",
    "sort": "score|date",
    "threshold": "SIMILARITY",
    "backend": "auto|torch|onnx",
    "allowed_host": "NAME",
}


def _label(param: Any) -> str:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    label = METAVARS.get(param.name or "")
    if label is None:
        kind = getattr(getattr(param, "type", None), "name", "text")
        label = {"integer": "N", "float": "NUMBER", "path": "PATH", "boolean": ""}.get(kind, "TEXT")
    return label


def _range(param: Any) -> str | None:
    bounds = param if hasattr(param, "min") else getattr(param, "type", None)  # Typer < 0.29
    low, high = getattr(bounds, "min", None), getattr(bounds, "max", None)
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return None


def plain_labels(params: list[Any]) -> list[Any]:
    """Give each parameter a word for its value instead of its Python type (once).

    Typer 0.29 asks the parameter (``display_type_rich`` and friends); earlier releases
    ask its Click type and ``make_metavar``, so those are set too where a type exists
    (copied first: Click shares type objects between parameters)."""
    for param in params:
        if getattr(param, "_clipseek_labelled", False):
            continue
        label = _label(param)
        legacy = getattr(param, "type", None) is not None
        if legacy:
            param.type = copy.copy(param.type)
        if isinstance(param, typer.core.TyperArgument):
            name = label or (param.name or "").upper()
            many = param.nargs != 1
            param.metavar = name
            param.display_type_rich = lambda ctx, label="": None
            param._rich_display_name = lambda name=name, many=many: name + ("..." if many else "")
            usage = f"{name}..." if many else name
            if not param.required:
                usage = f"[{usage}]"
            param._usage_display_name = lambda usage=usage: usage
            if legacy:
                param.type.get_metavar = lambda *args, **kwargs: ""
                param.make_metavar = lambda ctx=None, usage=False, name=name, shown=usage: (
                    shown if usage else name
                )
        else:
            param.display_type_rich = lambda ctx, label=label: label or None
            if legacy and label:
                param.metavar = label
        if hasattr(param, "_get_number_range_help_str"):
            param._get_number_range_help_str = lambda param=param: _range(param)
        if legacy and hasattr(param.type, "_describe_range"):
            param.type._describe_range = lambda param=param: _range(param) or ""
        param._clipseek_labelled = True
    return params


class PlainCommand(typer.core.TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return plain_labels(super().get_params(ctx))


class PlainGroup(typer.core.TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return plain_labels(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            plain_labels(command.get_params(ctx))
        return command


# --------------------------------------------------------------------------- completion


def complete_model(incomplete: str) -> list[str]:
    """Model names from the catalogue (the names `clipseek models` shows)."""
    # Lazy: only shell completion needs the model catalogue.
    from clipseek.models.catalogue import CATALOG

    names = [entry.name for entry in CATALOG]
    names += ["hf-hub:", "local-dir:"]
    if incomplete.startswith("local-dir:"):
        return ["local-dir:" + p for p in complete_folder(incomplete.removeprefix("local-dir:"))]
    return [n for n in names if n.lower().startswith(incomplete.lower())]


def _complete(incomplete: str, *, folders_only: bool) -> list[str]:
    expanded = os.path.expanduser(incomplete) if incomplete else ""
    parent, prefix = os.path.split(expanded)
    typed_parent = incomplete[: len(incomplete) - len(prefix)]
    try:
        with os.scandir(parent or ".") as entries:
            found = []
            for entry in entries:
                if not entry.name.startswith(prefix):
                    continue
                if entry.name.startswith(".") and not prefix.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if is_dir:
                    found.append(typed_parent + entry.name + os.sep)
                elif not folders_only:
                    found.append(typed_parent + entry.name)
    except OSError:
        return []
    return sorted(found)


def complete_folder(incomplete: str) -> list[str]:
    return _complete(incomplete, folders_only=True)


def complete_path(incomplete: str) -> list[str]:
    return _complete(incomplete, folders_only=False)


def complete_choices(*choices: str):  # -> Callable[[str], list[str]]
    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete)]

    return complete
