"""A trained model of the space read back from a run folder or a checkpoint file (``nni-kws quantize --model``)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from torch import nn

from nni_kws.files import load_torch

from .arch import arch_file_space, build_model, load_arch

__all__ = ["load_trained_model"]


def load_trained_model(path: str | Path, *, arch: str | Path | None = None, preset: str | None = None) -> nn.Module:
    """A trained frozen model from a run folder or a checkpoint file.

    ``path``: a file saved with ``torch.save`` (a whole model, a ``state_dict``, or a Lightning checkpoint
    of :class:`~nni_kws.training.KwsModule`), or a folder holding one (``model.pt``, ``model.pth``,
    ``checkpoints/last.ckpt``, ...). Unless the file holds a whole model, the architecture comes from
    ``arch`` or the ``arch.json`` next to the weights (or one or two folders up), and its space from that file
    (:func:`~nni_kws.space.arch.arch_file_space`: preset, front end, coarse blocks, classes; ``preset`` overrides
    the file's).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model folder or checkpoint not found: {path}")
    weights = path if path.is_file() else _find_weights(path)
    obj = load_torch(weights, weights_only=False, hint="give another model file or folder")  # names a broken file
    if isinstance(obj, nn.Module):
        return obj
    if not isinstance(obj, Mapping):
        raise ValueError(f"{weights}: not a model, state_dict or Lightning checkpoint")
    state = obj.get("state_dict", obj)
    for prefix in ("model.", "_model."):  # a Lightning checkpoint of KwsModule (NNI's wrapper keeps it in _model)
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    arch_file = Path(arch) if arch is not None else next(
        (d / "arch.json" for d in (weights.parent, *list(weights.parents)[1:3]) if (d / "arch.json").exists()), None)
    if arch_file is None:
        raise FileNotFoundError(f"no arch.json next to {weights} (or give --arch; a peer trained with `nni-kws train "
                                "--baseline` is read by nni_kws.baselines.load_trained_baseline)")
    if not arch_file.exists():
        raise FileNotFoundError(f"architecture file not found: {arch_file}")
    space = arch_file_space(arch_file, preset=preset)
    model = build_model(load_arch(arch_file, space), space)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        details = " ".join(line.strip() for line in str(err).splitlines()[1:])  # the first only names the class
        reason = details[:300] + ("..." if len(details) > 300 else "") or str(err)
        raise ValueError(f"{weights} does not fit the architecture and space of {arch_file}: {reason}") from None
    return model


def _find_weights(folder: Path) -> Path:
    for name in ("model.pt", "model.pth", "model.ckpt", "checkpoints/last.ckpt"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for pattern in ("*.pt", "*.pth", "*.ckpt", "checkpoints/*.ckpt") for p in folder.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no model file (model.pt, *.ckpt, checkpoints/last.ckpt) in {folder}")
    return found[0]
