"""Reading 1-second Speech Commands clips, with clear errors for bad files.

Every file goes through :func:`load_clip` (decode) or :func:`check_clip` (header only, cheap), so a
corrupt, truncated, empty or non-WAV file always surfaces as :class:`AudioFileError` naming the
file, never as an obscure failure deep inside a DataLoader worker.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Literal

import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from .labels import CLIP_SAMPLES, SAMPLE_RATE

__all__ = ["AudioFileError", "LOAD_STATS", "OnError", "check_clip", "fit_length", "load_clip", "scan_clips"]

log = logging.getLogger(__name__)

OnError = Literal["skip", "raise"]
_WAV_FORMATS = {"WAV", "WAVEX", "RF64", "W64"}
# libsndfile logs e.g. "data : 32000 (should be 19956)" when the data chunk is cut short.
_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)

#: What :func:`load_clip` had to fix, counted per process (keys: resampled, mixed_down, padded, cropped).
LOAD_STATS: Counter[str] = Counter()


class AudioFileError(ValueError):
    """An audio file that cannot be used; ``str(err)`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str = ""):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}" if reason else str(path))

    def __reduce__(self):  # keep both fields when pickled (e.g. out of a DataLoader worker)
        return type(self), (self.path, self.reason)


def _open(path: Path) -> sf.SoundFile:
    """Open ``path`` with soundfile, rejecting empty, non-WAV, truncated or sample-less files."""
    try:
        if path.stat().st_size == 0:
            raise AudioFileError(path, "empty file (0 bytes)")
        f = sf.SoundFile(str(path))
    except sf.SoundFileError as e:
        raise AudioFileError(path, f"not a readable WAV file ({getattr(e, 'error_string', e)})") from None
    except OSError as e:
        raise AudioFileError(path, f"cannot read ({e.strerror or e})") from None
    reason = None
    if f.format not in _WAV_FORMATS:
        reason = f"not a WAV file (format {f.format})"
    elif f.frames <= 0:
        reason = "no audio samples"
    elif (m := _TRUNCATED.search(f.extra_info)) and int(m[2]) < int(m[1]) and int(m[1]) not in (0, 2**32 - 1):
        reason = f"truncated WAV data ({m[2]} of {m[1]} bytes)"
    if reason:
        f.close()
        raise AudioFileError(path, reason)
    return f


def check_clip(path: str | Path) -> int:
    """Read only the header of ``path`` and return its sample rate (cheap: nothing is decoded).

    Raises :class:`AudioFileError` if the file is unusable.
    """
    with _open(Path(path)) as f:
        return f.samplerate


def fit_length(x: torch.Tensor, num_samples: int = CLIP_SAMPLES) -> torch.Tensor:
    """Zero-pad ``x[..., n]`` at the end, or center-crop it, to exactly ``num_samples``."""
    n = x.shape[-1]
    if n < num_samples:
        LOAD_STATS["padded"] += 1
        return F.pad(x, (0, num_samples - n))
    if n > num_samples:
        LOAD_STATS["cropped"] += 1
        start = (n - num_samples) // 2
        return x[..., start:start + num_samples]
    return x


def load_clip(path: str | Path, sample_rate: int = SAMPLE_RATE,
              num_samples: int | None = CLIP_SAMPLES) -> torch.Tensor:
    """Decode a WAV file into a mono float32 ``Tensor[1, num_samples]`` in [-1, 1] at ``sample_rate``.

    Stereo is averaged to mono, other rates are resampled with torchaudio, and the clip is
    zero-padded at the end or center-cropped to ``num_samples`` (``None`` keeps the full length,
    as for background-noise files). Raises :class:`AudioFileError` naming the file if unusable.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            data, sr = f.read(dtype="float32", always_2d=True), f.samplerate
        except (sf.SoundFileError, OSError) as e:
            raise AudioFileError(path, f"cannot decode ({e})") from None
    x = torch.from_numpy(data.T)  # [channels, n]
    if x.shape[0] > 1:
        LOAD_STATS["mixed_down"] += 1
        x = x.mean(0, keepdim=True)
    if not torch.isfinite(x).all():
        raise AudioFileError(path, "non-finite samples")
    if sr != sample_rate:
        LOAD_STATS["resampled"] += 1
        x = AF.resample(x, sr, sample_rate)
    x = x.clamp(-1.0, 1.0)
    return x.contiguous() if num_samples is None else fit_length(x, num_samples).contiguous()


def scan_clips(paths: Iterable[str | Path], on_error: OnError = "skip", *,
               sample_rate: int = SAMPLE_RATE, what: str = "audio") -> list[Path]:
    """Check the headers of ``paths`` and return the usable ones, in order.

    ``on_error='skip'`` drops bad files with ONE warning (count and first few names);
    ``on_error='raise'`` raises :class:`AudioFileError` for the first bad file (mentioning how many
    are bad). Files at another sample rate are kept (resampled on load) and counted in a log line.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    good: list[Path] = []
    bad: list[AudioFileError] = []
    other_rate = 0
    for p in map(Path, paths):
        try:
            other_rate += check_clip(p) != sample_rate
            good.append(p)
        except AudioFileError as e:
            bad.append(e)
    if bad and on_error == "raise":
        more = f" (and {len(bad) - 1} more bad {what} files)" if len(bad) > 1 else ""
        raise AudioFileError(bad[0].path, bad[0].reason + more)
    if bad:
        first = "; ".join(str(e) for e in bad[:3])
        log.warning("skipped %d of %d unreadable %s files, e.g. %s", len(bad), len(bad) + len(good), what, first)
    if other_rate:
        log.info("%d %s files are not %d Hz; they are resampled on load", other_rate, what, sample_rate)
    return good
