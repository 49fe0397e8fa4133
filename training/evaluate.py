"""Measures of a trained network on held-out data (used by the tests and the log)."""

from __future__ import annotations

import torch

__all__ = ["mask_f1", "DETECTION_THRESHOLD"]

#: The probability threshold of the published detection pipeline.
DETECTION_THRESHOLD = 0.4


def mask_f1(prob: torch.Tensor, mask: torch.Tensor,
            threshold: float = DETECTION_THRESHOLD) -> float:
    """F1 of the thresholded prediction over all pixels of the batch.

    ``2 TP / (2 TP + FP + FN)``; 1.0 when neither prediction nor truth has a positive pixel.

    Shape: ``prob`` (probabilities) and ``mask`` ({0, 1}) of one shape -> float.
    """
    pred = prob >= threshold
    truth = mask > 0.5
    tp = (pred & truth).sum().item()
    fp = (pred & ~truth).sum().item()
    fn = (~pred & truth).sum().item()
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom
