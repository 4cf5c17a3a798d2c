"""Architecture dicts: validation with errors that name the bad label, JSON round trip, freezing."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping

from nni.mutable import Categorical
from torch import nn

from .kws_space import PRESETS, KwsSpace

__all__ = ["InvalidArchitecture", "space_choices", "random_arch", "validate_arch", "load_arch", "save_arch",
           "build_space", "build_model", "search_space_json"]


class InvalidArchitecture(ValueError):
    """An architecture dict that does not belong to the space; the message names the label."""


def build_space(preset: str = "paper", **overrides: Any) -> KwsSpace:
    """A :class:`KwsSpace` from a named preset plus keyword overrides."""
    return KwsSpace(**space_kwargs(preset, **overrides))


def space_kwargs(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a preset, with overrides applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown space preset {preset!r}; choose from {sorted(PRESETS)}")
    return {**PRESETS[preset], **overrides}


def space_choices(space: KwsSpace) -> dict[str, list[Any]]:
    """``{label: candidate values}`` for every decision of the space."""
    choices = {}
    for label, mutable in space.simplify().items():
        if not isinstance(mutable, Categorical):
            raise TypeError(f"label {label!r} is {type(mutable).__name__}; KwsSpace only uses categorical choices")
        choices[label] = list(mutable.values)
    return choices


def random_arch(space: KwsSpace, seed: int | None = None) -> dict[str, Any]:
    """A uniformly random architecture dict (``space.random()`` returns a model, not the dict)."""
    rng = random.Random(seed)
    return {label: rng.choice(values) for label, values in space_choices(space).items()}


def validate_arch(space: KwsSpace, arch: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``arch`` against ``space`` and return it as a plain dict.

    JSON turns nothing into the wrong type for our choices (ints and strings), but users edit
    these files by hand, so every label is checked and the first problem is named.
    """
    if not isinstance(arch, Mapping):
        raise InvalidArchitecture(f"an architecture must be a JSON object of label -> value, got {type(arch).__name__}")
    choices = space_choices(space)
    unknown = sorted(set(arch) - set(choices))
    if unknown:
        raise InvalidArchitecture(f"unknown label {unknown[0]!r} (this space has: {', '.join(sorted(choices))})")
    missing = sorted(set(choices) - set(arch))
    if missing:
        raise InvalidArchitecture(f"missing label {missing[0]!r} (choose from {choices[missing[0]]})")
    for label, values in choices.items():
        if arch[label] not in values or isinstance(arch[label], bool):
            raise InvalidArchitecture(f"label {label!r} has value {arch[label]!r}; allowed values are {values}")
    return {label: arch[label] for label in choices}


def load_arch(path: str | Path, space: KwsSpace | None = None) -> dict[str, Any]:
    """Read an architecture JSON (a bare dict, or ``{"arch": {...}}``) and validate it if a space is given."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"architecture file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise InvalidArchitecture(f"{path}: not valid JSON ({err})") from None
    arch = data.get("arch", data) if isinstance(data, dict) else data
    try:
        return validate_arch(space, arch) if space is not None else dict(arch)
    except InvalidArchitecture as err:
        raise InvalidArchitecture(f"{path}: {err}") from None


def save_arch(arch: Mapping[str, Any], path: str | Path, **extra: Any) -> Path:
    """Write ``{"arch": arch, **extra}`` as JSON (``extra``: space preset, costs, accuracy...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"arch": dict(arch), **extra}, indent=2, sort_keys=False) + "\n")
    return path


def build_model(arch: Mapping[str, Any], space: KwsSpace | None = None, **space_kw: Any) -> nn.Module:
    """A plain torch model (``nn.Conv1d``, no NNI mutables) for ``arch``, with fresh weights."""
    space = space if space is not None else KwsSpace(**space_kw)
    return space.freeze(validate_arch(space, arch))


def search_space_json(space: KwsSpace) -> dict[str, dict[str, Any]]:
    """The space in NNI's HPO search-space format (``nnictl``, tuners): ``{label: {_type, _value}}``."""
    return {label: {"_type": "choice", "_value": values} for label, values in space_choices(space).items()}
