"""Hand-designed keyword spotters (the peers a searched model must beat), as plain torch models.

Every peer takes the raw 1 s, 16 kHz waveform ``[B, 1, 16000]`` and returns ``[B, num_classes]``
logits, its feature extractor included as a submodule with the published settings, so it trains
with the same data pipeline and is costed by the same counter (:func:`nni_kws.cost.counter.count_costs`)
as a searched architecture, feature extraction included (:mod:`nni_kws.cost.frontend`).
Each class docstring cites its paper and reference code; the computed costs are in
``benchmarks/results/peers.json`` (``benchmarks/peer_costs.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nni_kws.cost.frontend import SpectralSettings
from nni_kws.space.blocks import LogCompression, SincConv1d

__all__ = ["SpectralFeatures", "DsCnn", "TcResNet", "SincDsConv", "BcResNet", "BASELINES", "build_baseline",
           "load_trained_baseline", "baseline_costs"]


#: Per-utterance normalisations of :class:`SpectralFeatures`.
UTTERANCE_NORMS = ("none", "mean", "meanvar")


class SpectralFeatures(nn.Module):
    """Waveform ``[B, 1, L]`` → log-mel (``n_mfcc=0``) or MFCC features ``[B, n, T]`` (time last).

    ``tf_frames=True`` frames like ``tf.signal.stft`` (used by the TensorFlow reference code of
    DS-CNN and TC-ResNet): ``1 + (L - win_length) // hop`` frames of ``win_length`` samples,
    zero-padded to ``n_fft``; torch's ``stft`` centres a short window inside ``n_fft`` samples, so
    the waveform is padded by half the difference on both sides. Otherwise torchaudio's centred
    framing is kept (BC-ResNet's reference uses it). The DCT is torchaudio's orthonormal DCT-II.

    Options against a train/test channel mismatch (e.g. synthesized training speech, real test speech):
    ``utterance_norm='mean'`` subtracts each band's / coefficient's mean over the clip (cepstral mean
    normalisation: a fixed channel filter is an additive constant in the log domain), ``'meanvar'`` also
    divides by its standard deviation. ``spec_masks=(time_masks, max_frames, freq_masks, max_bands)``
    applies SpecAugment masks to the log-mel bands (before the DCT) in training mode only.
    """

    def __init__(self, n_fft: int, win_length: int, hop_length: int, n_mels: int, n_mfcc: int = 0,
                 power: float = 2.0, f_min: float = 0.0, f_max: float | None = None, tf_frames: bool = False,
                 sample_rate: int = 16000, log_offset: float = 1e-6, utterance_norm: str = "none",
                 spec_masks: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        import torchaudio  # local import, as in the space's MFCC front end: the CLI starts without it

        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, f_min=f_min, f_max=f_max,
            n_mels=n_mels, power=power, center=not tf_frames)
        self.pad = (n_fft - win_length) // 2 if tf_frames else 0
        self.log_offset = log_offset
        if n_mfcc:
            self.register_buffer("dct", torchaudio.functional.create_dct(n_mfcc, n_mels, "ortho"), persistent=False)
        else:
            self.dct = None
        # read by nni_kws.cost.frontend.spectral_settings: what the feature MAC count depends on
        self.spectral_settings = SpectralSettings(n_fft, win_length, n_mels, n_mfcc, power)
        if utterance_norm not in UTTERANCE_NORMS:
            raise ValueError(f"utterance_norm must be one of {UTTERANCE_NORMS}, got {utterance_norm!r}")
        self.utterance_norm = utterance_norm
        self.masks = nn.Identity() if spec_masks is None else nn.Sequential(
            *[torchaudio.transforms.TimeMasking(spec_masks[1], iid_masks=True) for _ in range(spec_masks[0])],
            *[torchaudio.transforms.FrequencyMasking(spec_masks[3], iid_masks=True) for _ in range(spec_masks[2])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.squeeze(1)
        if self.pad:
            x = F.pad(x, (self.pad, self.pad))
        feats = torch.log(self.melspec(x) + self.log_offset)                   # [B, n_mels, T]
        if self.training:
            feats = self.masks(feats.unsqueeze(1)).squeeze(1)  # the masks want a channel dimension
        if self.dct is not None:
            feats = torch.matmul(feats.transpose(-1, -2), self.dct).transpose(-1, -2)  # [B, n_mfcc, T]
        if self.utterance_norm != "none":
            feats = feats - feats.mean(-1, keepdim=True)
            if self.utterance_norm == "meanvar":
                feats = feats / (feats.std(-1, keepdim=True) + 1e-5)
        return feats


def _conv_bn_relu2d(c_in: int, c_out: int, kernel: int | tuple[int, int], groups: int = 1,
                    bias: bool = True) -> list[nn.Module]:
    padding = (kernel - 1) // 2 if isinstance(kernel, int) else tuple((k - 1) // 2 for k in kernel)
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding, groups=groups, bias=bias), nn.BatchNorm2d(c_out), nn.ReLU()]


class DsCnn(nn.Module):
    """DS-CNN-S: Zhang, Suda, Lai, Chandra, "Hello Edge: Keyword Spotting on Microcontrollers", arXiv 1711.07128
    (2017), in its MLPerf Tiny form (Banbury et al., "MLPerf Tiny Benchmark", arXiv 2106.07597).

    Reference code: mlcommons/tiny ``benchmark/training/keyword_spotting/keras_model.py`` (``ds_cnn``) and
    ``get_dataset.py`` (front end); ARM-software/ML-KWS-for-MCU ``models.py`` (``create_ds_cnn_model``).
    Front end (MLPerf): 30 ms Hann window, 20 ms hop, FFT 512, magnitude, 40 mel bands 20-4000 Hz, log,
    10 MFCCs → 49 x 10 (time x coefficient). Body: conv 64 (10 x 4, stride 2, 'same', bias) → BN → ReLU →
    dropout 0.2, then 4 x [depthwise 3 x 3 (bias) → BN → ReLU → pointwise 64 (bias) → BN → ReLU], dropout 0.4,
    average pool (MLPerf's 24 x 5 window over the 25 x 5 map; a global average here), dense. Keras BN has gamma and
    beta, hence 23,756 trainable parameters.
    """

    def __init__(self, num_classes: int = 12, channels: int = 64, blocks: int = 4, **features: Any) -> None:
        super().__init__()
        # ``features``: SpectralFeatures' options against channel mismatch (utterance_norm, spec_masks)
        self.features = SpectralFeatures(512, 480, 320, n_mels=40, n_mfcc=10, power=1.0, f_min=20.0, f_max=4000.0,
                                         tf_frames=True, **features)
        # TF 'same' for kernel (10, 4), stride 2 on 49 x 10: pad time 4 + 5, frequency 1 + 1
        self.stem = nn.Sequential(nn.ZeroPad2d((1, 1, 4, 5)), nn.Conv2d(1, channels, (10, 4), stride=2),
                                  nn.BatchNorm2d(channels), nn.ReLU(), nn.Dropout(0.2))
        self.body = nn.Sequential(*[nn.Sequential(*_conv_bn_relu2d(channels, channels, 3, groups=channels),
                                                  *_conv_bn_relu2d(channels, channels, 1))
                                    for _ in range(blocks)])
        self.head = nn.Sequential(nn.Dropout(0.4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).transpose(1, 2).unsqueeze(1)                     # [B, 1, T=49, 10]
        return self.head(self.body(self.stem(x)))


class _TcBlock(nn.Module):
    """Two 9-tap temporal convs with a shortcut (1x1 strided conv → BN → ReLU when the width changes)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 9) -> None:
        super().__init__()
        stride = 1 if c_in == c_out else 2
        self.branch = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(),
            nn.Conv1d(c_out, c_out, kernel, 1, kernel // 2, bias=False), nn.BatchNorm1d(c_out))
        self.shortcut = (nn.Identity() if stride == 1 else
                         nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out), nn.ReLU()))
        self.has_skip = True  # the block input stays live until the add (peak-memory rule)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class TcResNet(nn.Module):
    """TC-ResNet8: Choi et al., "Temporal Convolution for Real-time Keyword Spotting on Mobile Devices",
    Interspeech 2019, arXiv 1904.03814.

    Reference code: hyperconnect/TC-ResNet ``audio_nets/tc_resnet.py`` (``TCResNet8``), front end in
    ``audio_nets/__init__.py`` (``preprocess_mfcc``) with ``scripts/commands/TCResNet8Model-1.0_mfcc_40_3010*.sh``:
    ``tf.signal.stft`` 30 ms / 10 ms (FFT 512), power spectrum, mel bands, log(x + 1e-6), 40 MFCCs → 98 frames
    that a 1-D conv reads as 40 channels. The number of mel bands (40) and their edges (20-4000 Hz) are set
    by the training script's defaults, which were not read: unverified (they change the front-end MACs only).
    Body: conv 3, 40 → 16 → 3 blocks (24, 32, 48; stride 2 with a 1x1 shortcut) → global average →
    dropout 0.5 → 1x1 conv to the classes (no bias). No conv biases; BN after every conv.
    """

    def __init__(self, num_classes: int = 12, widths: Sequence[int] = (16, 24, 32, 48), width_multiplier: float = 1.0,
                 n_mfcc: int = 40) -> None:
        super().__init__()
        widths = [int(w * width_multiplier) for w in widths]
        self.features = SpectralFeatures(512, 480, 160, n_mels=40, n_mfcc=n_mfcc, f_min=20.0, f_max=4000.0,
                                         tf_frames=True)
        self.stem = nn.Sequential(nn.Conv1d(n_mfcc, widths[0], 3, padding=1, bias=False), nn.BatchNorm1d(widths[0]),
                                  nn.ReLU())
        self.blocks = nn.Sequential(*[_TcBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Dropout(0.5),
                                  nn.Linear(widths[-1], num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(self.features(x))))


class SincDsConv(nn.Module):
    """SincConv + DSConv: Mittermaier, Kürzinger, Waschneck, Rigoll, "Small-Footprint Keyword Spotting on Raw
    Audio Data with Sinc-Convolutions", ICASSP 2020, arXiv 1911.02086 (no official code).

    Reference code: the reimplementation ekut-es/hannah ``hannah/models/sinc/models.py`` (config ``SINC1``).
    SincConv 40 band-passes of 101 taps, stride 8 (the project's :class:`SincConv1d`) → log compression → BN
    → average pool 2; then 5 blocks [depthwise (k 25 stride 2, then k 9) → pointwise to 162 → ReLU → BN →
    average pool 2 (padding 1) → dropout 0.1] → global average → linear. No conv biases.
    ``groups=(1, 1, 1, 1, 1)`` is the paper's DSConv model; ``(1, 2, 3, 2, 3)`` its grouped GDSConv model.
    """

    def __init__(self, num_classes: int = 12, groups: Sequence[int] = (1, 1, 1, 1, 1), channels: int = 162,
                 filters: int = 40, kernels: Sequence[int] = (25, 9, 9, 9, 9)) -> None:
        super().__init__()
        self.frontend = nn.Sequential(SincConv1d(filters, 101, 8), LogCompression(), nn.BatchNorm1d(filters),
                                      nn.AvgPool1d(2))
        blocks, c_in = [], filters
        for i, (k, g) in enumerate(zip(kernels, groups)):
            blocks.append(nn.Sequential(
                nn.Conv1d(c_in, c_in, k, 2 if i == 0 else 1, k // 2, groups=c_in, bias=False),
                nn.Conv1d(c_in, channels, 1, groups=g, bias=False), nn.ReLU(), nn.BatchNorm1d(channels),
                nn.AvgPool1d(2, padding=1), nn.Dropout(0.1)))
            c_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.frontend(x)))


class SubSpectralNorm(nn.Module):
    """BatchNorm with its own statistics and affine per frequency sub-band (Chang et al., Interspeech 2021)."""

    def __init__(self, channels: int, sub_bands: int = 5) -> None:
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        return self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t)).reshape(b, c, f, t)


class _BcResBlock(nn.Module):
    """Broadcasted residual block: frequency-depthwise conv + SubSpectralNorm (f2), frequency average,
    dilated temporal depthwise conv → BN → SiLU → 1x1 conv → dropout (f1), broadcast-added back."""

    def __init__(self, c_in: int, c_out: int, stage: int, freq_stride: int) -> None:
        super().__init__()
        self.transition = c_in != c_out
        f2: list[nn.Module] = []
        if self.transition:
            f2 += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        f2 += [nn.Conv2d(c_out, c_out, (3, 1), (freq_stride, 1), (1, 0), groups=c_out, bias=False),
               SubSpectralNorm(c_out, 5)]
        self.f2 = nn.Sequential(*f2)
        dilation = 2 ** stage
        self.f1 = nn.Sequential(
            nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation), groups=c_out, bias=False),
            nn.BatchNorm2d(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 1, bias=False), nn.Dropout2d(0.1))
        self.has_skip = not self.transition  # identity shortcut (peak-memory rule)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aux = self.f2(x)
        out = self.f1(aux.mean(dim=2, keepdim=True)) + aux
        return F.relu(out + x if not self.transition else out)


class BcResNet(nn.Module):
    """BC-ResNet-τ: Kim, Chang, Lee, Sung, "Broadcasted Residual Learning for Efficient Keyword Spotting",
    Interspeech 2021, arXiv 2106.04140.

    Reference code: Qualcomm-AI-research/bcresnet ``bcresnet.py`` (``BCResNets``), ``subspectralnorm.py``,
    ``utils.py`` (``LogMel``: torchaudio MelSpectrogram, FFT 512, 30 ms window, 10 ms hop, 40 mel, log(x + 1e-6),
    centred → 40 x 101). Base width 8·τ; stages of 2, 2, 4, 4 blocks; frequency stride 2 in stages 1 and 2;
    dilations 1, 2, 4, 8; head conv 5x5 stride (2, 1); classifier depthwise 5x5 → 1x1 conv → BN → ReLU →
    global average → 1x1 conv (the only bias). ``tau=1`` is BC-ResNet-1.
    """

    def __init__(self, num_classes: int = 12, tau: float = 1.0) -> None:
        super().__init__()
        b = int(8 * tau)
        c = [2 * b, b, int(1.5 * b), 2 * b, int(2.5 * b), 4 * b]
        self.features = SpectralFeatures(512, 480, 160, n_mels=40)
        self.stem = nn.Sequential(nn.Conv2d(1, c[0], 5, (2, 1), 2, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU())
        blocks = []
        for stage, n in enumerate((2, 2, 4, 4)):
            for i in range(n):
                stride = 2 if stage in (1, 2) and i == 0 else 1
                blocks.append(_BcResBlock(c[stage] if i == 0 else c[stage + 1], c[stage + 1], stage, stride))
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Conv2d(c[-2], c[-2], 5, padding=(0, 2), groups=c[-2], bias=False),
            nn.Conv2d(c[-2], c[-1], 1, bias=False),
            nn.BatchNorm2d(c[-1]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(c[-1], num_classes, 1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(self.features(x).unsqueeze(1))))


BASELINES: dict[str, Callable[..., nn.Module]] = {
    "ds-cnn-s": DsCnn,
    "tc-resnet8": TcResNet,
    "sinc-dsconv": SincDsConv,
    "bc-resnet-1": BcResNet,
}


def load_trained_baseline(folder: str | Path) -> nn.Module | None:
    """The peer that ``nni-kws train --baseline`` trained in ``folder`` (its ``result.json`` names it; its weights
    are ``model.pt``), else None (a searched architecture: :func:`~nni_kws.space.load_trained_model`)."""
    from nni_kws.files import load_state_dict, read_json

    path = Path(folder) / "result.json"
    result = read_json(path) if path.is_file() else {}
    name = result.get("baseline")
    if not name:
        return None
    model = build_baseline(name, num_classes=result.get("num_classes", 12))
    load_state_dict(model, Path(folder) / "model.pt", hint=f"train it again: nni-kws train --baseline {name}")
    return model


def build_baseline(name: str, num_classes: int = 12, **options: Any) -> nn.Module:
    """A fresh peer by its registry name (:data:`BASELINES`), with its class's keyword ``options``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return BASELINES[name](num_classes=num_classes, **options)


def baseline_costs(name: str, include_frontend: bool = True) -> dict[str, float]:
    """Costs of a peer (keys and definitions of ``CostModel.exact``, as floats; no latency table, so no
    ``latency_ms``), from :func:`nni_kws.cost.counter.count_costs`."""
    from nni_kws.cost.counter import count_costs  # the cost package imports the space, not the peers

    costs = count_costs(build_baseline(name), include_frontend=include_frontend)
    return {key: float(value) for key, value in costs.items() if value is not None}
