"""A second synthesis family: CMU Flite (Debian package ``flite``) through ctypes.

Flite's voices (awb, rms, slt: clustergen; kal16: diphone) are built from other speakers' recordings
with other methods than espeak's formant synthesizer, so they do not share its signature. A flite
"speaker" is a voice x a duration stretch x an F0 mean and spread.

Hand-written binding on purpose: the ``flite`` program costs one process and one voice load per
utterance (tens of ms), while ``libflite`` says a word in a few ms. Flite's only hidden state is the
C library's ``rand()`` (clustergen excitation), so ``srand(1)`` before each utterance makes every
utterance byte-identical to what the ``flite`` program writes, whatever was said before, provided
nothing else calls ``rand()`` meanwhile: :func:`flite_speak_all` therefore speaks in a child process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from .child import serve, speak_in_child

__all__ = ["FLITE_VOICES", "Flite", "flite_speak_all", "flite_version", "flite_voices"]

log = logging.getLogger(__name__)

#: The 16 kHz flite voices used, with the F0 range (Hz) drawn for speakers of that voice.
FLITE_VOICES: dict[str, tuple[int, int]] = {"awb": (80, 150), "rms": (75, 140), "slt": (140, 260), "kal16": (85, 160)}
_VERSION = "2.2"  # the libflite.so.1 ABI bound here (cst_wave / cst_voice layouts)


class _Wave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short))]


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p)]  # leading fields of cst_voice


def _find(name: str) -> str | None:
    return ctypes.util.find_library(name)


@functools.lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """The :data:`FLITE_VOICES` whose libraries are installed (empty without flite)."""
    if not all(_find(n) for n in ("flite", "flite_usenglish", "flite_cmulex")):
        return ()
    return tuple(v for v in FLITE_VOICES if _find(f"flite_cmu_us_{v}"))


def flite_version() -> str:
    """The flite version bound ("" without flite)."""
    return f"flite-{_VERSION}" if flite_voices() else ""


class Flite:
    """The process-wide libflite handle (:meth:`get`) with the installed voices; calls are serialized."""

    _instance: Flite | None = None
    _create_lock = threading.Lock()

    @classmethod
    def get(cls) -> Flite:
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        if not flite_voices():
            raise RuntimeError("flite is not installed (Debian/Ubuntu: apt-get install flite)")
        lib = ctypes.CDLL(_find("flite"), mode=ctypes.RTLD_GLOBAL)
        for dep in ("flite_usenglish", "flite_cmulex"):  # the voices resolve their symbols from these
            ctypes.CDLL(_find(dep), mode=ctypes.RTLD_GLOBAL)
        lib.flite_init()
        lib.flite_text_to_wave.restype = ctypes.POINTER(_Wave)
        lib.flite_text_to_wave.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Voice)]
        lib.flite_feat_set_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_float]
        lib.delete_wave.argtypes = [ctypes.POINTER(_Wave)]
        self._lib, self._libc, self._lock = lib, ctypes.CDLL(None), threading.Lock()
        self._voices = {}
        for v in flite_voices():
            register = getattr(ctypes.CDLL(_find(f"flite_cmu_us_{v}")), f"register_cmu_us_{v}")
            register.restype, register.argtypes = ctypes.POINTER(_Voice), [ctypes.c_char_p]
            self._voices[v] = register(None)

    def synth(self, text: str, voice: str, *, stretch: float = 1.0, f0: float = 110, f0_std: float = 15) -> tuple:
        """Say ``text``; return ``(int16 samples, sample rate)``. ``stretch`` > 1 is slower, ``f0`` in Hz."""
        if voice not in self._voices:
            raise ValueError(f"flite has no voice {voice!r} here (installed: {sorted(self._voices)})")
        v = self._voices[voice]
        with self._lock:
            for name, value in ((b"duration_stretch", stretch), (b"int_f0_target_mean", f0),
                                (b"int_f0_target_stddev", f0_std)):
                self._lib.flite_feat_set_float(v.contents.features, name, float(value))
            self._libc.srand(1)
            wave = self._lib.flite_text_to_wave(text.encode(), v)
            if not wave:
                raise RuntimeError(f"flite failed for {text!r} with voice {voice}")
            w = wave.contents
            x = np.ctypeslib.as_array(w.samples, shape=(w.num_samples * w.num_channels,)).copy()
            rate, channels = w.sample_rate, w.num_channels
            self._lib.delete_wave(wave)
        return x[::channels], rate


def _worker_main() -> None:
    """Child process of :func:`flite_speak_all`."""
    engine = Flite.get()
    serve(lambda u: engine.synth(u["text"], u["voice"], stretch=u["stretch"], f0=u["f0"], f0_std=u["f0_std"]), {})


def flite_speak_all(plan: Sequence[dict[str, Any]]) -> Iterator[tuple[np.ndarray, int]]:
    """Say every utterance of ``plan`` (text, voice, stretch, f0, f0_std) in a fresh child process; yield
    ``(int16 samples, rate)``. In a child because any other thread of this process calling ``rand()``
    would change the clustergen voices' samples (:mod:`~nni_kws.data.child`)."""
    return speak_in_child("flite", list(plan))[1] if plan else (x for x in ())
