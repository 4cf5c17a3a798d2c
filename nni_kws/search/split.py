"""One supernet per value of a choice (by default the front end): a candidate inherits its weights from
the supernet trained with its own value.

Why: in a supernet whose stages serve both front ends (SincConv and a plain learned convolution), the
stages learn from both at once, and a candidate with the weaker front end inherits stages the stronger
one taught. Its inherited accuracy then says little about what it reaches when trained alone, and the
ranking across front ends fails (README, "Search quality"). Supernets that share nothing across the
split choice rank each candidate among peers trained like it (single-path NAS that splits the space
into sub-supernets: few-shot NAS, Zhao et al. 2021).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from nni_kws.space import FRONTEND_LABEL

__all__ = ["SPLIT_CHOICE", "SplitSupernet", "supernet_for"]

#: The choice whose every value gets its own supernet by default (``run_search(split=...)``).
SPLIT_CHOICE = FRONTEND_LABEL


class SplitSupernet(nn.ModuleDict):
    """The supernets of one split: ``{str(value): supernet}`` of the choice ``label``."""

    def __init__(self, label: str, supernets: Mapping[Any, nn.Module]) -> None:
        super().__init__({str(value): net for value, net in supernets.items()})
        self.label = label

    def for_arch(self, arch: Mapping[str, Any]) -> nn.Module:
        """The supernet trained with ``arch``'s value of the split choice."""
        if self.label not in arch or str(arch[self.label]) not in self:
            raise ValueError(f"architecture has {self.label}={arch.get(self.label)!r}; "
                             f"the supernets are for {self.label} in {list(self.keys())}")
        return self[str(arch[self.label])]


def supernet_for(supernet: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """The supernet ``arch`` inherits from: the one of its split value, or ``supernet`` itself when not split."""
    return supernet.for_arch(arch) if isinstance(supernet, SplitSupernet) else supernet
