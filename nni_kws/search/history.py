"""The search's per-epoch record: metrics, argmax architecture, its exact and expected costs and the
architecture probabilities, one JSON line per epoch in ``history.jsonl`` (kept across a resume)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, cast

import pytorch_lightning as pl
import torch
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule

from .strategy import arch_probs, argmax_arch

__all__ = ["SearchHistory"]


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if key.startswith(("prob/", "expected/", "exact/")):  # recorded separately
            continue
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class SearchHistory(pl.Callback):
    """Once per epoch: log expected costs and write one JSON line to ``path`` with the epoch,
    metrics, the argmax architecture, its exact costs, the expected costs and the probabilities.

    Probabilities, the argmax architecture and costs exist for the differentiable strategies
    only (RandomOneShot's "architecture" would be a random sample); metrics are always recorded. The records are also
    kept in :attr:`records`.
    """

    def __init__(self, path: str | Path | None = None, cost_model: Any = None) -> None:
        self.path = Path(path) if path is not None else None
        self.cost_model = cost_model
        self.records: list[dict[str, Any]] = []
        self._loaded = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a restored checkpoint, current_epoch is the first epoch still to run.
        self.load(before_epoch=trainer.current_epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A checkpoint of the last epoch (a search resumed after its supernet was trained) starts no training.
        if not self._loaded:
            self.load(before_epoch=trainer.current_epoch)

    def load(self, before_epoch: int) -> None:
        """Keep the records of epochs ``< before_epoch`` from an earlier (interrupted) run: the
        record of an epoch is written just before its checkpoint, so a crash in between leaves one
        record too many."""
        self._loaded = True
        if self.path is None or not self.path.exists():
            return
        lines = []
        for line in self.path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # the last line, cut short by a kill
                continue
        self.records = [r for r in lines if r.get("epoch", -1) < before_epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def summary(self, trainer: pl.Trainer, module: BaseOneShotLightningModule) -> dict[str, Any]:
        record: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step,
                                  "metrics": _floats(trainer.callback_metrics)}
        if isinstance(module, DartsLightningModule):
            with torch.no_grad():
                probs = arch_probs(module)
                record["arch"] = argmax_arch(probs)
                record["probs"] = {label: {str(v): round(float(p), 6) for v, p in dist.items()}
                                   for label, dist in probs.items()}
                if self.cost_model is not None:
                    record["expected"] = {k: float(v) for k, v in self.cost_model.expected(probs).items()
                                          if v is not None}
        if self.cost_model is not None and "arch" in record:
            record["exact"] = {k: v for k, v in self.cost_model.exact(record["arch"]).items() if v is not None}
        return record

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        module = cast(BaseOneShotLightningModule, pl_module)
        record = self.summary(trainer, module)
        log = {f"expected/{k}": float(v) for k, v in record.get("expected", {}).items()}
        log.update({f"exact/{k}": float(v) for k, v in record.get("exact", {}).items()})
        if log:
            pl_module.log_dict(log)
        self.records.append(record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
