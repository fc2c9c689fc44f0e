"""A classifier's answer for one text, as prediction, inspection and the apps report it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Prediction"]


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one text and the probability of every class."""

    text: str  # the text classified
    labels: list[str]  # class names, index i is class i
    probs: list[float]  # softmax over the classes, in class order

    @property
    def index(self) -> int:
        """The most probable class (the first of equals)."""
        return max(range(len(self.probs)), key=self.probs.__getitem__)

    @property
    def label(self) -> str:
        return self.labels[self.index]

    @property
    def probability(self) -> float:
        return self.probs[self.index]

    @classmethod
    def from_probs(cls, text: str, labels: Sequence[str], probs: Sequence[float]) -> Prediction:
        if len(labels) != len(probs):
            raise ValueError(f"{len(labels)} labels for {len(probs)} class probabilities")
        return cls(text, [str(x) for x in labels], [float(p) for p in probs])

    def to_dict(self) -> dict[str, Any]:
        """``{"text", "label", "probability", "probs": {label: probability}}``."""
        return {"text": self.text, "label": self.label, "probability": self.probability,
                "probs": dict(zip(self.labels, self.probs, strict=True))}
