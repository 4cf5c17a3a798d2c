"""nni-kws: hardware-aware keyword-spotting NAS and quantization for NNI 3.0."""
__version__ = "0.1.0"
