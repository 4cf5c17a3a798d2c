"""``--distill``: the train stage's targets from the optional real-speech teacher (:mod:`nni_kws.teacher`).

The teacher is fitted on the run's training clips without augmentation, with the settings of the benchmark's
documented longer configuration (:data:`~nni_kws.teacher.DISTILL_FOLDS`, :data:`~nni_kws.teacher.DISTILL_SCALE`);
its embeddings and the fitted teacher are kept in ``<out>/train/teacher/``, so ``--resume`` reads them back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .config import PipelineConfig

__all__ = ["TEACHER_DIR", "distillation"]

#: The folder of the stage that keeps the teacher's embeddings and the fitted teacher.
TEACHER_DIR = "teacher"


def distillation(cfg: PipelineConfig, dm: Any, stage_dir: Path) -> tuple[Dataset | None, dict[str, Any] | None]:
    """The training set with the teacher's soft labels and the record of the distillation for the stage's
    ``result.json`` (with the teacher's own accuracies); ``(None, None)`` when ``cfg.distill`` is 0."""
    if not cfg.distill:
        return None, None
    from nni_kws.teacher import DISTILL_FOLDS, DISTILL_SCALE, fit_teacher, head_accuracy

    cache = stage_dir / TEACHER_DIR
    teacher, training = fit_teacher(dm, cache, seed=cfg.seed, folds=DISTILL_FOLDS, scale=DISTILL_SCALE, keep=True)
    val_acc = head_accuracy(teacher.head, dm.dataset("validation"),
                            cache / f"validation-seed{cfg.seed}-x{DISTILL_SCALE:g}.npy", DISTILL_SCALE)
    return training, {"weight": cfg.distill, "temperature": cfg.distill_temperature, "teacher_folds": DISTILL_FOLDS,
                      "teacher_scale": DISTILL_SCALE, "teacher_train_acc": teacher.train_accuracy,
                      "teacher_val_acc": val_acc}
