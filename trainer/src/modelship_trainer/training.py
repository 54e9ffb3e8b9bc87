"""A plain supervised loop for classifiers over arrays, shared by recipes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelship_trainer.data import ArrayDataset, FloatArray


def fit_classifier(model: nn.Module, data: ArrayDataset, *, epochs: int, lr: float,
                   batch_size: int, weight_decay: float, seed: int) -> None:
    """AdamW with a one-cycle schedule: converges in few epochs, which keeps CPU runs short.
    Sample weights (data.weights), when present, weight each sample's loss."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(data.images)
    y = torch.from_numpy(data.labels)
    w = torch.from_numpy(data.weights) if data.weights is not None else None
    steps_per_epoch = max(1, (len(data) + batch_size - 1) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            losses = loss_fn(model(x[idx]), y[idx])
            # Weighted mean: a weight-w sample counts like w copies of itself.
            loss = losses.mean() if w is None else (losses * w[idx]).sum() / w[idx].sum()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()


@torch.no_grad()
def predict_logits(model: nn.Module, images: FloatArray, batch_size: int = 512) -> FloatArray:
    model.eval()
    outs: list[FloatArray] = [model(torch.from_numpy(images[i:i + batch_size])).numpy()
                              for i in range(0, len(images), batch_size)]
    return np.concatenate(outs).astype(np.float32)
