"""nni-kws: hardware-aware keyword-spotting NAS and learned bit-width quantization for NNI 3.0."""
import warnings

# NNI 3.0 scans torch.nn at import and warns about classes newer than it knows (Buffer, ...).
warnings.filterwarnings("ignore", message=r".*is found to be not a nn.Module.*", category=RuntimeWarning)

__version__ = "0.1.0"
