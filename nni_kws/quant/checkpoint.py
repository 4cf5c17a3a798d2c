"""Per-epoch checkpoints of quantization-aware fine-tuning, so that ``quantize_model(resume=True)`` continues.

One file (``last.pt``) holds, after each finished epoch: the wrapped model's ``state_dict`` (weights,
BN statistics, the quantizer's step sizes and ranges, NNI's scale buffers), the optimizer state (by
parameter name) and the scheduler state, the step and epoch counters, extra quantizer state, and every
random state the next epoch draws from (torch's global generator, the loader's and its sampler's
generators and, for the Speech Commands training set, its augmentation generator), so a resumed run
repeats exactly what the uninterrupted run would have done. A fingerprint of the run's settings guards
against resuming a different run.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from nni_kws.files import load_torch, save_torch

__all__ = ["EpochCheckpoint", "model_digest", "loader_seed"]

_logger = logging.getLogger(__name__)


def _generators(loader: DataLoader) -> dict[str, torch.Generator]:
    """The generators a training epoch draws from, besides torch's global one."""
    gens = {}
    if isinstance(loader.generator, torch.Generator):
        gens["loader"] = loader.generator
    # a shuffling sampler with a generator of its own (``training.reseed_loaders`` gives it one)
    sampler_gen = getattr(getattr(loader, "sampler", None), "generator", None)
    if isinstance(sampler_gen, torch.Generator) and sampler_gen is not loader.generator:
        gens["sampler"] = sampler_gen
    # SpeechCommands keeps its augmentation generator in ``_gen`` (built lazily; workers=0 only).
    dataset_gen = getattr(loader.dataset, "_gen", None)
    if isinstance(dataset_gen, torch.Generator):
        gens["dataset"] = dataset_gen
    return gens


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict``, also filling buffers still ``None`` here (NNI's QAT/LSQ create scales and tracked
    ranges on the first training forward; a fresh model has not run one yet)."""
    result = model.load_state_dict(state, strict=False)
    modules = dict(model.named_modules())
    for key in result.unexpected_keys:
        owner, _, name = key.rpartition(".")
        module = modules.get(owner)
        if module is None or name not in module._buffers or module._buffers[name] is not None:
            raise ValueError(f"{path}: unexpected entry {key!r} for this model")
        module._buffers[name] = state[key].clone()
    if result.missing_keys:
        raise ValueError(f"{path}: no entries for {result.missing_keys[:5]}")


def _parameter_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[str]:
    """The names of the optimizer's parameters, in the order its ``state_dict`` numbers them."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, Any]:
    """``optimizer.state_dict()`` keyed by parameter name instead of position.

    Why: the order in which NNI's evaluator hands the quantizer's parameters to the optimizer follows
    Python's per-process string hashing, and a ``state_dict`` maps its moments by position: restored in
    another process, step sizes would get each other's Adam moments (all are one-element tensors, so
    nothing would complain)."""
    order, state = _parameter_names(optimizer, model), optimizer.state_dict()
    return {"state": {order[i]: value for i, value in state["state"].items()},
            "param_groups": [{**group, "params": [order[i] for i in group["params"]]}
                             for group in state["param_groups"]]}


def _load_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, saved: dict[str, Any],
                          path: Path) -> None:
    """Restore :func:`_optimizer_state` into ``optimizer``, whatever order this process gave its parameters."""
    order = _parameter_names(optimizer, model)
    index = {name: i for i, name in enumerate(order)}
    groups, start = [], 0
    try:
        for group, current in zip(saved["param_groups"], optimizer.param_groups, strict=True):
            if sorted(group["params"]) != sorted(order[start:start + len(current["params"])]):
                raise ValueError("its parameter groups hold other parameters")
            # load_state_dict pairs a group's listed entries with this optimizer's parameters position by position
            groups.append({**group, "params": list(range(start, start + len(current["params"])))})
            start += len(current["params"])
        optimizer.load_state_dict({"state": {index[name]: value for name, value in saved["state"].items()},
                                   "param_groups": groups})
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: optimizer state of another model ({e}); delete it to restart the "
                         "quantization") from None


def model_digest(model: nn.Module) -> str:
    """A short digest of ``model``'s state (parameters and buffers): a checkpoint's fingerprint names the float
    model it fine-tunes, so a resume from another model (of the same architecture) is refused."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def loader_seed(loader: DataLoader) -> int | None:
    """The seed of ``loader``'s own shuffling generator (the run's seed for the data modules' loaders), or None."""
    generator = getattr(loader, "generator", None)
    return generator.initial_seed() if isinstance(generator, torch.Generator) else None


@dataclass
class EpochCheckpoint:
    """Where and what to checkpoint; ``resume``: continue from ``<folder>/last.pt`` when it exists."""
    folder: Path
    fingerprint: dict[str, Any]
    resume: bool = False
    #: extra state: ``name -> (get, set)``, e.g. the quantizer's step counter
    extra: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.folder) / "last.pt"

    def save(self, epoch: int, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             loader: DataLoader) -> None:
        """Write the state after ``epoch`` epochs (atomically: a kill while writing keeps the previous file)."""
        state = {"fingerprint": self.fingerprint, "epoch": epoch, "step": step, "model": model.state_dict(),
                 "optimizer": _optimizer_state(optimizer, model),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "torch_rng": torch.get_rng_state(),
                 "generators": {k: g.get_state() for k, g in _generators(loader).items()},
                 "extra": {k: get() for k, (get, _) in self.extra.items()}}
        save_torch(state, self.path)

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             loader: DataLoader) -> tuple[int, int]:
        """Restore the last checkpoint if resuming (else nothing); returns ``(epochs done, steps done)``."""
        if not self.resume or not self.path.is_file():
            return 0, 0
        state = load_torch(self.path, weights_only=False, hint="delete it to restart the quantization")
        if state.get("fingerprint") != self.fingerprint:
            diff = sorted(k for k in {**self.fingerprint, **state.get("fingerprint", {})}
                          if self.fingerprint.get(k) != state.get("fingerprint", {}).get(k))
            raise ValueError(f"{self.path}: checkpoint of another quantization run (settings differ: {diff}); "
                             "delete it or use another checkpoint folder")
        _load_model_state(model, state["model"], self.path)
        _load_optimizer_state(optimizer, model, state["optimizer"], self.path)
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if "dataset" in state["generators"] and not isinstance(getattr(loader.dataset, "_gen", None),
                                                               torch.Generator):
            loader.dataset[0]  # builds the dataset's lazy augmentation generator, to restore into
        gens = _generators(loader)
        for name, value in state["generators"].items():
            if name not in gens:
                raise ValueError(f"{self.path}: saved with a {name} generator that this run's training loader lacks")
            gens[name].set_state(value)
        for name, (_, set_) in self.extra.items():
            if name in state["extra"]:  # a checkpoint of an older version may lack a newer entry
                set_(state["extra"][name])
        _logger.info("resuming quantization from %s after epoch %d (step %d)", self.path, state["epoch"],
                     state["step"])
        return state["epoch"], state["step"]
