"""Padded batches of similar length, for any window size.

A padded batch costs its longest row times its size. transformers' `LengthGroupedSampler`
sorts mega-batches of up to 50 batches, but makes at least four of them, so a small window
gets one-batch mega-batches: nothing is grouped (40 Bitext examples in batches of 8: 3,448
tokens computed for 2,823 real ones, against 2,936 when grouped over the whole window). It also
goes longest to shortest through each mega-batch, the same curriculum every epoch. Here a
mega-batch is up to 50 batches whatever the window's size, the longest batch comes first (an
out-of-memory error shows at the first step) and the others follow in random order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

# batches per sorted mega-batch: transformers' upper bound
MEGABATCH_BATCHES = 50


class LengthGroupedBatches(Sampler[int]):
    """Example indices, each run of `batch_size` consecutive ones a batch of similar lengths.
    Draws from torch's global generator, which the trainer seeds (and accelerate syncs between
    processes), so a seed fixes the order."""

    def __init__(self, lengths: Sequence[int], batch_size: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        if not self.lengths:
            return iter(())
        order = torch.randperm(len(self.lengths)).tolist()
        megabatch = self.batch_size * MEGABATCH_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), megabatch):
            rows = sorted(
                order[start : start + megabatch], key=self.lengths.__getitem__, reverse=True
            )
            batches += [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        # a short batch (the shortest rows) stays last: the data loader cuts batches from
        # consecutive indices
        last = [batches.pop()] if len(batches[-1]) < self.batch_size else []
        if batches:
            longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]])
            first = batches.pop(longest)
            batches = [first] + [batches[b] for b in torch.randperm(len(batches)).tolist()]
        return iter([index for batch in batches + last for index in batch])
