"""One-shot architecture search on :class:`~nni_kws.space.KwsSpace`: 1-D mixed operations,
resource-aware DARTS and the search driver."""
from .mixed_ops import MixedBatchNorm1d, MixedConv1d, derive_model, oneshot_hooks

__all__ = ["MixedConv1d", "MixedBatchNorm1d", "oneshot_hooks", "derive_model"]
