"""One block of the embedding -> its class map, confidence and uncertainty arrays.

The valid pixels of a raw (bands, rows, cols) block (by the bundle's :class:`~lcmodel.embedding.NodataRule`,
the same rule as at extraction) become float32 C-contiguous features, classified with one
``predict_proba`` call; the label is ``classes_[argmax]`` (what ``RandomForestClassifier.predict`` returns)
and the confidence ``round(100 * max probability)`` (half up). Nodata pixels are never classified: they get
the map's nodata value and confidence 255.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lcmodel.embedding import NodataRule
from lcmodel.predict.layers import CONFIDENCE_NODATA
from lcmodel.uncertainty import Uncertainty

__all__ = ["BlockRecipe", "ClassifiedBlock", "block_digest"]


def block_digest(block: np.ndarray) -> str:
    """SHA-256 of a raw block's shape, data type and values: what a finished block was predicted from."""
    h = hashlib.sha256(f"{block.shape}|{block.dtype.str}|".encode())
    h.update(np.ascontiguousarray(block).data)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ClassifiedBlock:
    """The arrays of one classified block, by layer key (``labels``, ``confidence``, ``probabilities``, ...,
    and ``n_unclassified``), the pixels predicted per class (unclassified pixels left out), and the digest of
    the raw block it was classified from (:func:`block_digest`; None when not known)."""

    arrays: dict[str, np.ndarray]
    counts: np.ndarray
    input_digest: str | None = None


@dataclass(frozen=True, eq=False)
class BlockRecipe:
    """How a block is classified and which arrays are kept (picklable: sent whole to worker processes).

    Attributes
    ----------
    rule : the nodata rule and feature conversion of the embedding.
    class_out : the model's class values in the map's data type (model class order).
    nodata : the map's nodata value.
    uncertainty : the uncertainty products to compute (:class:`lcmodel.uncertainty.Uncertainty`).
    confidence : keep the confidence array (a confidence map was asked for).
    """

    rule: NodataRule
    class_out: np.ndarray
    nodata: int
    uncertainty: Uncertainty
    confidence: bool

    def classify(self, predictor: Callable[[np.ndarray], np.ndarray], block: np.ndarray) -> ClassifiedBlock:
        """Classify the valid pixels of a raw (bands, rows, cols) block with ``predictor`` (features ->
        probabilities, e.g. a :class:`lcmodel.forest.Predictor`).

        Raises
        ------
        ValueError
            The predictor returned probabilities of the wrong shape.
        """
        class_out = self.class_out
        mask, features = self.rule.block_features(block)
        labels = np.full(mask.shape, self.nodata, dtype=class_out.dtype)
        conf = np.full(mask.shape, CONFIDENCE_NODATA, dtype=np.uint8)
        counts = np.zeros(len(class_out), dtype=np.int64)
        n = features.shape[0]
        proba = None
        if n:
            proba = predictor(features)
            if proba.shape != (n, len(class_out)):
                raise ValueError(
                    f"predict_proba returned shape {proba.shape}, expected {(n, len(class_out))}"
                )
            index = np.argmax(proba, axis=1)
            labels[mask] = class_out[index]
            top = proba[np.arange(n), index]
            conf[mask] = np.clip(np.floor(top * 100.0 + 0.5), 0, 100).astype(np.uint8)
            counts = np.bincount(index, minlength=len(class_out)).astype(np.int64)
        arrays = {"labels": labels, "confidence": conf} if self.confidence else {"labels": labels}
        if self.uncertainty.active:  # labels and counts are updated in place for "unclassified"
            arrays.update(self.uncertainty.compute(proba, mask, labels, counts))
        return ClassifiedBlock(arrays, counts)

    def array_names(self) -> list[str]:
        """Names of the map and confidence arrays kept per block (the uncertainty products come on top)."""
        return ["labels", "confidence"] if self.confidence else ["labels"]
