"""The data of a run: the synthesized default set or a local folder, list-defined subsets, the real test set."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.labels import KEYWORDS
from nni_kws.data.synth import ensure_default_dataset

from .config import PipelineConfig, default_real_test_root, run_keywords

__all__ = ["make_data_module"]

log = logging.getLogger(__name__)


def make_data_module(cfg: PipelineConfig) -> SpeechCommandsDataModule:
    """The data module of a run: ``cfg.data`` or the synthesized default dataset."""
    if cfg.data is not None:
        root = Path(cfg.data).expanduser()
    else:
        extra = {k: v for k, v in (("speakers", cfg.speakers), ("keywords", cfg.keywords)) if v}
        root = ensure_default_dataset(progress=cfg.progress, preset=cfg.synth, **extra)
    common: dict[str, Any] = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, seed=cfg.seed,
                                  max_per_class=cfg.max_per_class, real_test_root=_real_test_root(cfg), cache=True)
    if cfg.train_list:
        return SpeechCommandsDataModule.from_lists(root, cfg.train_list, cfg.test_list, **common)
    return SpeechCommandsDataModule(root, **common)


def _real_test_root(cfg: PipelineConfig) -> Path | None:
    """The real test folder of a run (``--real-test``; checked by ``check_inputs``), or ``None`` where it has none."""
    if cfg.real_test != "auto":
        return Path(cfg.real_test).expanduser() if cfg.real_test else None
    if cfg.train_list:
        return None  # trained on part of a real set: the whole real test set would count seen speakers
    keywords = run_keywords(cfg)
    if keywords != KEYWORDS:
        log.info("no real-test accuracy: the real test set has the 12 Speech Commands classes, this data the "
                 "keywords %s", ", ".join(keywords))
        return None
    real_root = default_real_test_root()
    if real_root is None:
        log.warning("real Speech Commands test folder not found; skipping real-test accuracy")
    return real_root
