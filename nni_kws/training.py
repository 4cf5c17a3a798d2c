"""Training and evaluation of KWS models with PyTorch Lightning, shared by search, retraining,
quantization and NNI trials.

:class:`KwsModule` subclasses NNI's ``LightningModule`` so the same module serves NNI's one-shot
strategies (inside NNI's ``Lightning`` evaluator), multi-trial evaluators and plain retraining
(:func:`fit`). Recipe after the ICPR code: SGD-Nesterov, cosine schedule, label smoothing.
"""
from __future__ import annotations

import contextlib
import logging
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import nni
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch import LightningModule
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from nni_kws.files import replace_atomically, write_json

__all__ = ["KwsModule", "TrainingDiverged", "DivergenceCheck", "EpochLog", "EpochSeeding", "AtomicCheckpointIO", "fit",
           "train_from_scratch", "accuracy", "make_trainer", "distillation_loss", "seed_everything", "derived_seed",
           "reseed_loaders", "check_finite_weights", "torch_threads"]

_logger = logging.getLogger(__name__)

#: A cross-entropy loss above this has exploded (a 12-class loss starts near 2.5; a diverged SGD
#: run reaches 1e9 within an epoch, a healthy one never leaves single digits).
EXPLODED_LOSS = 1e3


class TrainingDiverged(ValueError):
    """Training produced a non-finite or exploding loss (or weights); a lower learning rate usually helps."""


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (Lightning's helper, without its log line)."""
    pl.seed_everything(seed, workers=True, verbose=False)


def derived_seed(seed: int, *keys: str | int) -> int:
    """A 31-bit seed that is a pure function of ``(seed, *keys)``, e.g. ``(seed, 'train', epoch)``.

    Why: the random state of a stage's epoch must not depend on what ran before it in the process
    (an earlier stage, or the epochs before a resume), so a resumed run equals an uninterrupted one.
    """
    crc = zlib.crc32(repr((int(seed), *keys)).encode())
    return crc & 0x7FFF_FFFF


def reseed_loaders(loaders: Iterable[DataLoader], seed: int) -> None:
    """Restart each loader's shuffling and its dataset's augmentation generator from ``seed``.

    The shuffling sampler gets a generator of its own: the loader's generator is also drawn from
    whenever an iterator is made (worker base seed), which Lightning does at different moments in a
    fresh and in a resumed fit. The permutation itself is drawn lazily, at the epoch's first batch.
    """
    for i, loader in enumerate(loaders):
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, RandomSampler):
            sampler.generator = torch.Generator().manual_seed(derived_seed(seed, "shuffle", i))
        generator = getattr(loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(derived_seed(seed, "workers", i))
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "reseed"):
            dataset.reseed(derived_seed(seed, "augment", i))


class EpochSeeding(pl.Callback):
    """At the start of every epoch, seeds Python/numpy/torch, the loaders' shuffling and the datasets'
    augmentation from ``(seed, stage, epoch)``.

    So every epoch's random state is the same whether the run was resumed before it or not (and
    whatever ran earlier in the process). With ``num_workers > 0`` the workers' augmentation keeps
    its own generators across epochs, and resuming is not bit-exact.
    """

    def __init__(self, seed: int, stage: str, loaders: Iterable[DataLoader]) -> None:
        self.seed, self.stage, self.loaders = int(seed), stage, list(loaders)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed = derived_seed(self.seed, self.stage, trainer.current_epoch)
        seed_everything(seed)
        reseed_loaders(self.loaders, seed)


def _loss_value(outputs: Any) -> torch.Tensor | None:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return outputs.detach() if isinstance(outputs, torch.Tensor) else None


class DivergenceCheck(pl.Callback):
    """Raises :class:`TrainingDiverged` on a non-finite or exploded training loss, and on non-finite
    weights at the end of every epoch, before the epoch's checkpoint marks anything as done."""

    def __init__(self, what: str = "training") -> None:
        self.what = what

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = _loss_value(outputs)
        if loss is not None and (not torch.isfinite(loss).all() or float(loss.max()) > EXPLODED_LOSS):
            raise TrainingDiverged(f"{self.what} diverged (loss {float(loss.max()):g} at epoch "
                                   f"{trainer.current_epoch + 1}, step {trainer.global_step}); "
                                   "try a lower learning rate (--lr)")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        check_finite_weights(pl_module, f"{self.what} at epoch {trainer.current_epoch + 1}")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the end-of-epoch validation (and the checkpoint after it) runs before on_train_epoch_end
        if not trainer.sanity_checking:
            check_finite_weights(pl_module, f"{self.what} at epoch {trainer.current_epoch + 1}")


class EpochLog(pl.Callback):
    """One log line per finished epoch: its metrics, the time so far and the estimated time left, so that a
    long job without a progress bar (benchmarks, nnictl trials, output to a file) still shows where it is.
    (Lightning's bar estimates the current epoch only.)"""

    def __init__(self, what: str = "training") -> None:
        self.what = what
        self.start, self.first_epoch = 0.0, 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.first_epoch = time.perf_counter(), trainer.current_epoch  # after a resume: the next epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch, elapsed = trainer.current_epoch + 1, time.perf_counter() - self.start
        left = elapsed / (epoch - self.first_epoch) * max(trainer.max_epochs - epoch, 0)
        metrics = ", ".join(f"{k} {float(v):.3f}" for k, v in sorted(trainer.callback_metrics.items())
                            if isinstance(v, torch.Tensor) and v.numel() == 1)
        _logger.info("%s: epoch %d/%d (%s), %.0f s, ETA %.0f s", self.what, epoch, trainer.max_epochs, metrics,
                     elapsed, left)


def check_finite_weights(model: nn.Module, what: str) -> None:
    """:class:`TrainingDiverged` if any parameter or buffer of ``model`` is NaN or infinite."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TrainingDiverged(f"{what} diverged ({name} is not finite); try a lower learning rate (--lr)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed, so a kill during the write
    leaves the previous ``last.ckpt`` intact instead of a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        save = super().save_checkpoint
        replace_atomically(Path(path), lambda tmp: save(checkpoint, tmp, storage_options))


class KwsModule(LightningModule):
    """Cross-entropy classification of keyword clips.

    With ``distill_weight`` > 0, training batches are ``(x, y, teacher_logits)`` (e.g. from
    :class:`nni_kws.teacher.WithTeacher`) and the loss is ``(1 - w) * CE + w * T^2 * KL(teacher_T || student_T)``
    at temperature ``T = distill_temperature`` (Hinton et al., arXiv 1503.02531). With ``hint_weight`` > 0 the
    model is a :class:`nni_kws.teacher.HintedStudent`, batches carry the teacher's embedding too, and
    ``hint_weight * MSE(model.hint, embedding)`` is added.

    Logs ``train_loss``, ``val_loss``, ``val_acc`` (and ``test_acc``). When ``report_to_nni`` is on
    and the process is an NNI trial, each validation epoch reports ``val_acc`` as an intermediate
    result, so the web UI draws learning curves.
    """

    def __init__(self, learning_rate: float = 0.05, weight_decay: float = 4e-5, label_smoothing: float = 0.1,
                 optimizer: str = "sgd", momentum: float = 0.9, report_to_nni: bool = False,
                 distill_weight: float = 0.0, distill_temperature: float = 2.0, hint_weight: float = 0.0) -> None:
        super().__init__()
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        if not 0 <= distill_weight <= 1 or distill_temperature <= 0:
            raise ValueError(f"distill_weight must be in [0, 1] and distill_temperature > 0, got "
                             f"{distill_weight}, {distill_temperature}")
        self.distill_weight, self.distill_temperature = distill_weight, distill_temperature
        self.hint_weight = hint_weight
        self.save_hyperparameters()
        self.learning_rate, self.weight_decay, self.label_smoothing = learning_rate, weight_decay, label_smoothing
        self.optimizer_name, self.momentum, self.report_to_nni = optimizer, momentum, report_to_nni

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_start(self) -> None:
        # Lightning 2.x keeps each submodule's train/eval mode as it found it, so a model that was
        # evaluated before fit() would train with frozen BatchNorm statistics.
        self.model.train()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, *teacher = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if self.distill_weight > 0:
            if not teacher:
                raise ValueError("distill_weight > 0 needs training batches (x, y, teacher_logits)")
            loss = (1 - self.distill_weight) * loss + self.distill_weight * distillation_loss(
                logits, teacher[0], self.distill_temperature)
        if self.hint_weight > 0:
            hint = getattr(self.model, "hint", None)
            if hint is None or len(teacher) < 2:
                raise ValueError("hint_weight > 0 needs a HintedStudent and batches (x, y, logits, embeddings)")
            loss = loss + self.hint_weight * F.mse_loss(hint, teacher[1])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, batch_size=len(y))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        if self.report_to_nni and not self.trainer.sanity_checking and nni.get_current_parameter() is not None:
            nni.report_intermediate_result(float(self.trainer.callback_metrics["val_acc"]))

    def configure_optimizers(self) -> Any:
        params = self.model.parameters()
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(params, lr=self.learning_rate, momentum=self.momentum, nesterov=True,
                                  weight_decay=self.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=self.learning_rate, weight_decay=self.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1), log_target=True,
                    reduction="batchmean") * t * t


def make_trainer(max_epochs: int, *, out_dir: str | Path | None = None, progress: bool = True,
                 checkpoint: bool = True, keep_best: bool = True, **kwargs: Any) -> pl.Trainer:
    """A Lightning trainer with our defaults: accelerator auto (GPU when present), CSV logs,
    a checkpoint every epoch (``last.ckpt``) so an interrupted run resumes with nothing lost, and with
    ``keep_best`` also ``best.ckpt`` by validation accuracy (one-shot searches have no validation loop).
    ``trainer_cls`` may replace ``pl.Trainer`` (``nni.trace(pl.Trainer)`` inside NNI evaluators)."""
    callbacks = list(kwargs.pop("callbacks", []))
    if checkpoint and out_dir is not None:
        ckpt_dir = Path(out_dir) / "checkpoints"
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", every_n_epochs=1,
                                         enable_version_counter=False))
        if keep_best:
            callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_acc", mode="max",
                                             enable_version_counter=False))
    logger = pl.loggers.CSVLogger(str(out_dir), name="logs") if out_dir is not None else False
    trainer_cls: Callable[..., pl.Trainer] = kwargs.pop("trainer_cls", pl.Trainer)
    from nni_kws.signals import StopOnRequest  # the CLI's SIGINT/SIGTERM: stop between batches

    what = kwargs.pop("what", "training")
    callbacks = [StopOnRequest(), DivergenceCheck(what), EpochLog(what), *callbacks]
    return trainer_cls(max_epochs=max_epochs, accelerator="auto", devices=1, logger=logger,
                       callbacks=callbacks, plugins=[AtomicCheckpointIO()],
                       enable_checkpointing=checkpoint and out_dir is not None,
                       enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
                       deterministic=False, **kwargs)


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, *, epochs: int,
        out_dir: str | Path | None = None, resume: bool = False, progress: bool = True, seed: int | None = None,
        stage: str = "train", **module_kwargs: Any) -> dict[str, float]:
    """Train ``model`` in place; returns the last epoch's metrics.

    With ``resume`` and an existing ``<out_dir>/checkpoints/last.ckpt``, training continues from
    it (weights, optimizer, schedule and epoch counter). With ``seed``, every epoch's random state
    comes from ``(seed, stage, epoch)`` (:class:`EpochSeeding`), so a resumed run equals an
    uninterrupted one. A non-finite or exploding loss raises :class:`TrainingDiverged`.
    """
    from nni_kws.files import check_checkpoint

    module = KwsModule(**module_kwargs)
    module.set_model(model)
    seeding = [EpochSeeding(seed, stage, [train_loader, val_loader])] if seed is not None else []
    trainer = make_trainer(epochs, out_dir=out_dir, progress=progress, callbacks=seeding)
    ckpt = Path(out_dir) / "checkpoints" / "last.ckpt" if out_dir is not None else None
    ckpt_path = str(check_checkpoint(ckpt)) if resume and ckpt is not None and ckpt.exists() else None
    if ckpt_path:
        _logger.info("resuming training from %s", ckpt_path)
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    check_finite_weights(model, "training")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if out_dir is not None:
        write_json(Path(out_dir) / "train_metrics.json", metrics)
    return metrics


def train_from_scratch(build: Callable[[], nn.Module], seed: int, train_loader: DataLoader, val_loader: DataLoader,
                       *, epochs: int, **fit_kwargs: Any) -> nn.Module:
    """Seed, build and :func:`fit` one model (no progress bar): one short training of a candidate or a peer."""
    seed_everything(seed)
    model = build()
    fit(model, train_loader, val_loader, epochs=epochs, progress=False, **fit_kwargs)
    return model


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader,
            device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted labels, true labels)`` over a loader, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, labels = [], []
    for x, y in loader:
        preds.append(model(x.to(device)).argmax(1).cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` on ``loader`` (fraction in [0, 1])."""
    preds, labels = predict(model, loader, device)
    return float((preds == labels).float().mean()) if len(labels) else float("nan")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block (0: leave torch's default)."""
    old = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
