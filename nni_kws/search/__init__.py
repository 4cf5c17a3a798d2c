"""One-shot architecture search on :class:`~nni_kws.space.KwsSpace`: 1-D mixed operations for NNI's
one-shot strategies, resource-aware DARTS, and the search driver :func:`run_search`."""
from .mixed_ops import MixedBatchNorm1d, MixedConv1d, derive_model, oneshot_hooks
from .oneshot import STRATEGIES, SearchResult, make_strategy, run_search
from .penalty import FORMS, RESOURCES, ResourcePenalty, penalized_loss
from .strategy import ResourceDARTS, ResourceGumbelDARTS, ResourceProxyless, SearchHistory, arch_probs, argmax_arch

__all__ = ["MixedConv1d", "MixedBatchNorm1d", "oneshot_hooks", "derive_model", "STRATEGIES", "SearchResult",
           "make_strategy", "run_search", "FORMS", "RESOURCES", "ResourcePenalty", "penalized_loss", "ResourceDARTS",
           "ResourceGumbelDARTS", "ResourceProxyless", "SearchHistory", "arch_probs", "argmax_arch"]
