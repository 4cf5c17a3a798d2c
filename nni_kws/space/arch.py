"""Architecture dicts: validation with errors that name the bad label, the ``arch.json`` schema,
space names (``small-mfcc``), a readable summary, freezing."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping

from nni.mutable import Categorical
from torch import nn

from nni_kws.files import write_json

from .kws_space import PRESETS, KwsSpace
from .labels import FRONTEND_LABEL, block_label, depth_label, expand_label, kernel_label, parse_label, stride_label

__all__ = ["InvalidArchitecture", "active_arch", "space_choices", "random_arch", "validate_arch", "load_arch",
           "save_arch", "SPACE_KEYS", "arch_file_meta", "arch_file_space", "build_space", "build_model",
           "search_space_json", "space_name", "parse_space_name", "space_by_name", "describe_arch"]


class InvalidArchitecture(ValueError):
    """An architecture dict that does not belong to the space; the message names the label."""


def build_space(preset: str = "paper", **overrides: Any) -> KwsSpace:
    """A :class:`KwsSpace` from a named preset plus keyword overrides."""
    return KwsSpace(**space_kwargs(preset, **overrides))


def space_name(preset: str, frontend: str = "raw") -> str:
    """The name of a space as in ``search_spaces/<name>.json``: ``small`` (raw front end), ``small-mfcc``."""
    return preset if frontend == "raw" else f"{preset}-{frontend}"


def parse_space_name(name: str) -> tuple[str, str]:
    """``(preset, frontend)`` of a :func:`space_name`: ``'small'`` -> ``('small', 'raw')``."""
    preset, _, frontend = name.partition("-")
    return preset, frontend or "raw"


def space_by_name(name: str, **overrides: Any) -> KwsSpace:
    """The space of a :func:`space_name`: ``'small'`` -> preset small, ``'small-mfcc'`` -> with the MFCC front end
    (``overrides``: other constructor arguments, e.g. the data's ``num_classes``)."""
    preset, frontend = parse_space_name(name)
    return build_space(preset, **({"frontend": frontend} if frontend != "raw" else {}), **overrides)


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
        value = arch[label]
        # `3.0 == 3` and `True == 1` in Python, but a float kernel size or a bool breaks model building
        if value not in values or not any(type(value) is type(v) for v in values):
            raise InvalidArchitecture(f"label {label!r} has value {value!r}; allowed values are {values}")
    return {label: arch[label] for label in choices}


# The arch.json schema: {"arch": {label: value}, "preset": str, "frontend": str, ...extra metadata}.
# A bare {label: value} dict is accepted on reading (users write those by hand); its labels are never
# taken for metadata (a raw-front-end arch has a label called "frontend", whose value names a front end,
# not a space: such a dict belongs to the 'raw' space, which arch_file_meta says).


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"architecture file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidArchitecture(f"{path}: not valid JSON ({err})") from None


def load_arch(path: str | Path, space: KwsSpace | None = None) -> dict[str, Any]:
    """Read an architecture JSON (a bare dict, or ``{"arch": {...}}``) and validate it if a space is given."""
    path = Path(path)
    data = _read_json(path)
    arch = data.get("arch", data) if isinstance(data, dict) else data
    try:
        return validate_arch(space, arch) if space is not None else dict(arch)
    except (InvalidArchitecture, TypeError, ValueError) as err:
        named = data.get("preset") if isinstance(data, dict) else None
        other_labels = space is not None and isinstance(arch, Mapping) and set(arch) != set(space_choices(space))
        hint = f" (its labels are another space's: the file names preset {named!r})" if named and other_labels else ""
        raise InvalidArchitecture(f"{path}: {err}{hint}") from None


def arch_file_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of an ``arch.json`` (``preset``, ``frontend``, ...): ``{}`` for a bare arch dict, except that
    one with a ``frontend`` label comes from the space that searches the front end (``frontend='raw'``)."""
    data = _read_json(Path(path))
    if isinstance(data, dict) and isinstance(data.get("arch"), dict):
        return {k: v for k, v in data.items() if k != "arch"}
    return {"frontend": "raw"} if isinstance(data, dict) and FRONTEND_LABEL in data else {}


#: The keys of an ``arch.json`` that name the space its architecture belongs to (the rest is metadata).
SPACE_KEYS = ("preset", "frontend", "coarse", "num_classes")


def save_arch(arch: Mapping[str, Any], path: str | Path, *, preset: str, frontend: str = "raw", coarse: bool = False,
              num_classes: int = 12, **extra: Any) -> Path:
    """Write ``arch.json``: the arch with the identity of its space (:data:`SPACE_KEYS`) and ``extra`` metadata,
    atomically."""
    identity = {"preset": preset, "frontend": frontend, "coarse": coarse, "num_classes": num_classes}
    return write_json(path, {"arch": dict(arch), **identity, **extra})


def arch_file_space(path: str | Path, **overrides: Any) -> KwsSpace:
    """The space of the architecture in ``path``: its :data:`SPACE_KEYS` (preset ``'paper'`` and the space's
    defaults where the file has none), each replaced by an override that is not None."""
    meta = arch_file_meta(path)
    identity = {k: meta.get(k) if overrides.get(k) is None else overrides[k] for k in SPACE_KEYS}
    identity = {k: v for k, v in identity.items() if v is not None}
    return build_space(identity.pop("preset", "paper"), **identity)


def build_model(arch: Mapping[str, Any], space: KwsSpace | None = None, **space_kw: Any) -> nn.Module:
    """A plain torch model (``nn.Conv1d``, no NNI mutables) for ``arch``, with fresh weights."""
    space = space if space is not None else KwsSpace(**space_kw)
    return space.freeze(validate_arch(space, arch))


def search_space_json(space: KwsSpace) -> dict[str, dict[str, Any]]:
    """The space in NNI's HPO search-space format (``nnictl``, tuners): ``{label: {_type, _value}}``."""
    return {label: {"_type": "choice", "_value": values} for label, values in space_choices(space).items()}


def active_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` without the labels of blocks beyond their stage's depth (``s{stage}_i{block}...`` with ``block >=
    s{stage}_depth``): they build nothing, so two architectures that differ only there are one network."""
    def active(label: str) -> bool:
        parsed = parse_label(label)
        if parsed is None or parsed.block is None:
            return True
        depth = arch.get(depth_label(parsed.stage))
        return depth is None or parsed.block < int(depth)
    return {label: value for label, value in arch.items() if active(label)}


def describe_arch(arch: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(part, choice)]`` of an architecture dict: front end, then per stage its active blocks
    (``s{i}_depth`` of them) as ``k{kernel} e{expansion}`` and its searched stride; labels it does not know are
    listed as they are."""
    rows, used = [], set()
    if FRONTEND_LABEL in arch:
        rows.append(("front end", str(arch[FRONTEND_LABEL])))
        used.add(FRONTEND_LABEL)
    parsed = {label: p for label in arch if (p := parse_label(label))}
    for i in sorted({p.stage for p in parsed.values()}):
        n_blocks = sum(1 for p in parsed.values() if p.stage == i and p.kind in ("block", "kernel"))
        depth = int(arch.get(depth_label(i), n_blocks or 1))
        blocks = []
        for j in range(depth):
            if block_label(i, j) in arch:  # coarse space: one choice per block, e.g. 'k5e2'
                blocks.append(str(arch[block_label(i, j)]))
            else:
                blocks.append(f"k{arch.get(kernel_label(i, j), '?')} e{arch.get(expand_label(i, j), '?')}")
        used |= {label for label, p in parsed.items() if p.stage == i}
        stride = f", stride {arch[stride_label(i)]}" if stride_label(i) in arch else ""
        rows.append((f"stage {i}", f"{depth} block{'s' if depth != 1 else ''}{stride}: " + ", ".join(blocks)))
    rows += [(f"`{k}`", str(v)) for k, v in arch.items() if k not in used]
    return rows
