"""``nni-kws train/run --distill W``: the train stage distilled from the real-speech teacher (nni_kws.teacher),
end to end on the tiny dataset with the 'tiny' preset and one epoch."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nni_kws.training as training
from nni_kws.cli import main
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.data.gsc import SpeechCommands
from nni_kws.pipeline.config import PipelineConfig, options_mismatch, stage_options
from nni_kws.report import render_report
from nni_kws.teacher import DISTILL_FOLDS, DISTILL_SCALE, SynthTeacher, head_accuracy, teacher_available

needs_teacher = pytest.mark.skipif(not teacher_available(), reason="livekit-wakeword not installed")
FAST = ["--no-real-test", "--train-epochs", "1", "--batch-size", "16", "--no-progress"]


def _arch_file(tmp_path: Path) -> Path:
    from nni_kws.space import build_space, random_arch, save_arch

    return save_arch(random_arch(build_space("tiny"), seed=1), tmp_path / "arch.json", preset="tiny")


@pytest.mark.parametrize("command, flags, option", [
    ("train", ["--distill", "1.5"], "distill"),
    ("run", ["--distill", "-0.1"], "distill"),
    ("train", ["--distill", "0.9", "--distill-temperature", "0"], "distill-temperature"),
])
def test_bad_distill_option_is_one_line_naming_it(tiny_gsc: Path, tmp_path: Path, capsys, command, flags,
                                                  option) -> None:
    rc = main([command, "--data", str(tiny_gsc), "--out", str(tmp_path / "r"), *FAST, *flags])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc == 2 and len(errors) == 1 and errors[0].startswith(f"nni-kws {command}: error: {option} must be")
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_distill_without_the_teacher_extra_says_how_to_install(tiny_gsc: Path, tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    monkeypatch.setattr("nni_kws.teacher.teacher_available", lambda: False)
    rc = main(["train", "--data", str(tiny_gsc), "--out", str(tmp_path / "r"), *FAST, "--distill", "0.9"])
    assert rc == 2 and "pip install 'nni-kws[teacher]'" in capsys.readouterr().err


def test_distill_options_take_part_in_the_stage_options() -> None:
    off, on = stage_options(PipelineConfig(), "train"), stage_options(PipelineConfig(distill=0.9), "train")
    assert off["distill"] == 0 and off["distill_temperature"] is None  # the temperature does not matter when off
    assert options_mismatch(on, stage_options(PipelineConfig(distill=0.9, distill_temperature=2.0), "train")) \
        == "distill-temperature=4.0, not 2.0"
    older = {k: v for k, v in off.items() if not k.startswith("distill")}  # a stage stored before --distill existed
    assert options_mismatch(older, off) is None and options_mismatch(older, on) == "distill=0.0, not 0.9"


def test_unaugmented_training_clips_are_the_training_items_in_order(tiny_gsc: Path) -> None:
    """What the teacher labels: the data module's training items, index by index, as a fresh unaugmented set."""
    dm = SpeechCommandsDataModule(tiny_gsc, seed=3, cache=True)
    clean, fresh = dm.dataset("training").unaugmented(), SpeechCommands(tiny_gsc, "training", augment=False, seed=3)
    assert dm.dataset("training").augment and not clean.augment and clean.files == fresh.files
    assert all(torch.equal(clean[i][0], fresh[i][0]) and clean[i][1] == fresh[i][1] for i in range(len(fresh)))


def test_pipeline_uses_the_benchmarks_longer_configuration() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sim_to_real", Path(__file__).parents[1] / "benchmarks" /
                                                  "sim_to_real.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    full = bench.CONFIGS[bench.FULL_CONFIG]
    assert (full.teacher_folds, full.teacher_scale, full.temperature) == \
        (DISTILL_FOLDS, DISTILL_SCALE, PipelineConfig().distill_temperature)


@needs_teacher
def test_train_distils_from_the_teacher_and_resume_reuses_it(tiny_gsc: Path, tmp_path: Path, monkeypatch) -> None:
    steps: list[tuple] = []  # (y, teacher logits, student logits, temperature, loss) of every training step
    step, kd = training.KwsModule.training_step, training.distillation_loss

    def spy_kd(student, teacher, t):
        steps[-1] += (student.detach(), t)
        return kd(student, teacher, t)

    def spy_step(self, batch, batch_idx):
        steps.append((batch[1], batch[2]))
        loss = step(self, batch, batch_idx)
        steps[-1] += (loss.detach(),)
        return loss

    monkeypatch.setattr(training, "distillation_loss", spy_kd)
    monkeypatch.setattr(training.KwsModule, "training_step", spy_step)
    out, arch = tmp_path / "r", _arch_file(tmp_path)
    cmd = ["train", "--arch", str(arch), "--data", str(tiny_gsc), "--out", str(out), *FAST]
    assert main([*cmd, "--distill", "0.9", "--distill-temperature", "3"]) == 0

    kept = out / "train" / "teacher" / f"teacher-folds{DISTILL_FOLDS}-seed0-x{DISTILL_SCALE:g}.pt"
    assert kept.is_file() and len(list(kept.parent.glob("*.npy"))) == 2  # training and validation embeddings
    res = json.loads((out / "train" / "result.json").read_text())
    record = res["distillation"]
    assert {k: record[k] for k in ("weight", "temperature", "teacher_folds", "teacher_scale")} == \
        {"weight": 0.9, "temperature": 3.0, "teacher_folds": DISTILL_FOLDS, "teacher_scale": DISTILL_SCALE}
    # the teacher's accuracies, recounted from the kept teacher: out-of-fold on the training clips, and its head on the
    # validation clips (their kept embeddings); a real-speech teacher is far above chance on the synthesized words
    teacher, dm = SynthTeacher.load(kept), SpeechCommandsDataModule(tiny_gsc, seed=0)
    train_labels = torch.as_tensor(dm.dataset("training").labels)
    train_acc = float((teacher.train_logits.argmax(1) == train_labels).float().mean())
    assert record["teacher_train_acc"] == pytest.approx(train_acc)
    val_embeddings = kept.parent / f"validation-seed0-x{DISTILL_SCALE:g}.npy"
    val_acc = head_accuracy(teacher.head, dm.dataset("validation"), val_embeddings, DISTILL_SCALE)
    assert record["teacher_val_acc"] == pytest.approx(val_acc) and val_acc > 3 / dm.num_classes
    assert res["options"]["distill"] == 0.9 and res["options"]["distill_temperature"] == 3.0
    assert "distilled from the real-speech teacher's soft labels (weight 0.9, temperature 3;" in \
        render_report({"config": {}, "float": res, "points": []})

    # every training clip met its own teacher logits once, and each step's loss mixed CE and KD with weight 0.9
    labels = train_labels.tolist()
    label_of = {tuple(row): y for row, y in zip(teacher.train_logits.tolist(), labels)}
    seen = [(tuple(row), int(y)) for y, t, *_ in steps for row, y in zip(t.tolist(), y)]
    assert sorted(seen) == sorted(label_of.items()) and all(label_of[row] == y for row, y in seen)
    for y, t, student, temperature, loss in steps:
        expected = 0.1 * F.cross_entropy(student, y, label_smoothing=0.1) + 0.9 * kd(student, t, 3.0)
        assert temperature == 3.0 and float(loss) == pytest.approx(float(expected), rel=1e-5)

    # a resume with another weight is refused; one with the same options reads the kept teacher back
    assert main([*cmd, "--resume", "--distill", "0.5"]) == 2
    for name in ("result.json", "model.pt", "train_metrics.json"):
        (out / "train" / name).unlink()
    shutil.rmtree(out / "train" / "logs", ignore_errors=True)
    monkeypatch.setattr(SynthTeacher, "fit", lambda *a, **k: pytest.fail("the teacher was fitted again"))
    assert main([*cmd, "--resume"]) == 0
    assert json.loads((out / "train" / "result.json").read_text())["distillation"] == record
