"""Speech Commands data: reading, augmenting and synthesizing it."""
from .labels import CLASSES, CLIP_SAMPLES, KEYWORDS, NUM_CLASSES, SAMPLE_RATE, UNKNOWN_WORDS
