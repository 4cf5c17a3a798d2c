"""libespeak-ng through ctypes, spoken in a child process that makes its output reproducible.

libespeak-ng keeps static state between utterances, even across ``espeak_Terminate``/``espeak_Initialize``,
so one word's samples depend on what the process said before. :func:`speak_all` therefore says a whole
plan of utterances in a fresh child process, in order: the same plan gives byte-identical samples.
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .child import serve, speak_in_child

__all__ = ["ENGLISH_VOICES", "Espeak", "espeak_data_path", "espeak_voice_lists", "speak_all"]

#: English accents tried, in this order (the ones missing from the espeak data are skipped).
ENGLISH_VOICES: tuple[str, ...] = (
    "en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)

# --------------------------------------------------------------------------------------------
# libespeak-ng through ctypes
#
# Hand-written on purpose: the maintained Python packages either drive the `espeak-ng` executable
# (not installed here, no root) or bind a system libespeak-ng; `espeakng-loader` is the only wheel
# that ships the library AND its voice data offline, and it provides no Python API beyond paths.
# --------------------------------------------------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2   # espeak_AUDIO_OUTPUT: synthesize in espeak_Synth, give samples to the callback
_INITIALIZE_DONT_EXIT = 0x8000  # report data-path errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """The process-wide libespeak-ng handle (:meth:`get`); calls are serialized (espeak is not thread-safe)."""

    _instance: Espeak | None = None
    _create_lock = threading.Lock()

    @classmethod
    def get(cls) -> Espeak:
        """Return the one instance, initializing libespeak-ng on first use."""
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib, self._lock, self._chunks = lib, threading.Lock(), []
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(),
                                                 _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data at {self.data_path}")
        self.version = lib.espeak_Info(None).decode()
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, num_samples: int, events: Any) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def voices(self) -> list[str]:
        """The :data:`ENGLISH_VOICES` present in the espeak data."""
        return espeak_voice_lists(self.data_path)[0]

    def variants(self) -> list[str]:
        """Voice variants (``m3``, ``f2``, ``klatt``, ...) usable as ``voice+variant``, sorted."""
        return espeak_voice_lists(self.data_path)[1]

    def synth(self, text: str, voice: str = "en", *, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
              volume: int = 100, seed: int = 0, word_gap: int = 0) -> np.ndarray:
        """Say ``text`` and return int16 samples at :attr:`sample_rate`.

        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` in 0-100,
        ``volume`` in 0-200, ``word_gap`` the pause between words in 10 ms units; ``seed`` seeds
        espeak's noise generator (whisper, breathiness).
        """
        with self._lock:
            self._chunks = []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak has no voice {voice!r}")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume),
                                 (_WORDGAP, word_gap)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._lib.espeak_ng_SetRandSeed(seed)
            data = text.encode()
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed (error {err}) for {text!r} with voice {voice!r}")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def espeak_data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def espeak_voice_lists(data_path: Path) -> tuple[list[str], list[str]]:
    """(English accents present, variant names without spaces) in an espeak data folder."""
    present = {p.name.lower() for p in (data_path / "lang").rglob("*") if p.is_file()}
    variants = sorted(p.name for p in (data_path / "voices" / "!v").iterdir()
                      if p.is_file() and p.name.replace("_", "").isalnum())
    return [v for v in ENGLISH_VOICES if v in present], variants


def _worker_main() -> None:
    """Child process of :func:`speak_all`."""
    engine = Espeak.get()
    serve(lambda u: (engine.synth(u["text"], u["voice"], rate=u["rate"], pitch=u["pitch"], pitch_range=u["range"],
                                  seed=u["seed"], word_gap=u.get("gap", 0)), engine.sample_rate),
          {"version": engine.version, "sample_rate": engine.sample_rate})


def speak_all(plan: list[dict[str, Any]]) -> tuple[dict[str, Any], Iterator[tuple[np.ndarray, int]]]:
    """Say every utterance of ``plan`` in order in a fresh child process (:mod:`~nni_kws.data.child`)."""
    return speak_in_child("espeak", plan)
