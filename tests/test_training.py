"""Training a fixed tiny architecture on tiny real (synthetic-signal) clips lowers the loss."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.space import build_model, build_space, random_arch
from nni_kws.training import accuracy, fit, seed_everything


def _mean_loss(model: torch.nn.Module, loader) -> float:
    model.eval()
    with torch.no_grad():
        losses = [F.cross_entropy(model(x), y, reduction="sum") for x, y in loader]
    return float(sum(losses)) / len(loader.dataset)


def _epoch_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int, float]]:
    """(epoch, of, ETA seconds) of every EpochLog line captured."""
    found = [re.search(r"epoch (\d+)/(\d+) \(.*val_acc.*\), \d+ s, ETA (\d+) s", r.getMessage())
             for r in caplog.records if r.name == "nni_kws.training"]
    return [(int(m[1]), int(m[2]), float(m[3])) for m in found if m]


def test_training_lowers_loss_and_resumes(tiny_gsc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                          count_accuracy) -> None:
    caplog.set_level(logging.INFO, logger="nni_kws.training")
    seed_everything(0)
    data = SpeechCommandsDataModule(tiny_gsc, batch_size=10, cache=True)
    train = data.train_dataloader()
    space = build_space("tiny")
    model = build_model({**random_arch(space, 0), "frontend": "sinc"}, space)
    eval_loader = torch.utils.data.DataLoader(data.dataset("training"), batch_size=25)
    before = _mean_loss(model, eval_loader)
    fit(model, train, data.val_dataloader(), epochs=16, out_dir=tmp_path, progress=False,
        optimizer="adam", learning_rate=1e-2, label_smoothing=0.0)
    after = _mean_loss(model, eval_loader)
    assert after < 0.9 * before, (before, after)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert accuracy(model, data.test_dataloader()) == pytest.approx(count_accuracy(model, data.dataset("testing")))
    # without a progress bar, every epoch still reports itself, with the time left
    lines = _epoch_lines(caplog)
    assert [(e, n) for e, n, _ in lines] == [(e, 16) for e in range(1, 17)]
    assert lines[-1][2] == 0
    caplog.clear()

    # An interrupted run continues from last.ckpt: two more epochs, not eighteen.
    metrics = fit(model, train, data.val_dataloader(), epochs=18, out_dir=tmp_path, resume=True, progress=False,
                  optimizer="adam", learning_rate=1e-2)
    assert "val_acc" in metrics
    resumed_log = sorted((tmp_path / "logs").glob("version_*/metrics.csv"))[-1].read_text().splitlines()
    epochs_run = {int(line.split(",")[0]) for line in resumed_log[1:]}
    assert epochs_run == {16, 17}
    assert [(e, n) for e, n, _ in _epoch_lines(caplog)] == [(17, 18), (18, 18)]
