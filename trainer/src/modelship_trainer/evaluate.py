"""Held-out metrics of a classifier's logits (the numbers the gate compares)."""

from __future__ import annotations

import numpy as np

from modelship_trainer.data import FloatArray, IntArray


def classification_metrics(logits: FloatArray, labels: IntArray,
                           num_classes: int) -> dict[str, float]:
    """accuracy, macro_f1 and mean cross-entropy (loss) on one split."""
    pred = logits.argmax(axis=1)
    f1s = []
    for k in range(num_classes):
        tp = float(np.sum((pred == k) & (labels == k)))
        fp = float(np.sum((pred == k) & (labels != k)))
        fn = float(np.sum((pred != k) & (labels == k)))
        if tp + fp + fn > 0:  # classes absent from both sides say nothing
            f1s.append(2 * tp / (2 * tp + fp + fn))
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(np.mean(log_probs[np.arange(len(labels)), labels]))
    return {
        "accuracy": float(np.mean(pred == labels)),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "loss": loss,
    }
