"""Padded batches of similar length for any window size (tasks/train/batching.py)."""

from __future__ import annotations

import random

import torch

from tasks.train.batching import MEGABATCH_BATCHES, LengthGroupedBatches


def batches_of(lengths: list[int], batch_size: int, seed: int = 0) -> list[list[int]]:
    torch.manual_seed(seed)
    order = list(LengthGroupedBatches(lengths, batch_size))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def random_lengths(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 160) for _ in range(count)]


def padded_tokens(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_a_small_window_is_grouped_over_all_its_examples():
    lengths = random_lengths(43, seed=3)
    batches = batches_of(lengths, 8)

    assert sorted(i for b in batches for i in b) == list(range(43))  # each example once
    assert [len(b) for b in batches] == [8] * 5 + [3]  # the short batch last
    assert max(lengths) in [lengths[i] for i in batches[0]]  # the longest batch first
    shortest_full = min(lengths[i] for b in batches[:-1] for i in b)
    assert max(lengths[i] for i in batches[-1]) <= shortest_full  # the shortest rows
    ranked = sorted(range(43), key=lengths.__getitem__, reverse=True)
    best = [ranked[i : i + 8] for i in range(0, 43, 8)]
    assert padded_tokens(lengths, batches) == padded_tokens(lengths, best)


def test_the_seed_fixes_the_order_and_batches_change_place_between_seeds():
    lengths = random_lengths(64, seed=4)
    assert batches_of(lengths, 8, seed=1) == batches_of(lengths, 8, seed=1)
    orders = {tuple(map(tuple, batches_of(lengths, 8, seed=s)))[1:] for s in range(5)}
    assert len(orders) > 1  # not longest to shortest every epoch


def test_a_large_window_is_grouped_within_mega_batches():
    size = 4
    lengths = random_lengths(size * MEGABATCH_BATCHES * 3, seed=5)
    batches = batches_of(lengths, size)
    ungrouped = [list(range(i, i + size)) for i in range(0, len(lengths), size)]

    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert padded_tokens(lengths, batches) < 0.8 * padded_tokens(lengths, ungrouped)


def test_no_examples():
    assert list(LengthGroupedBatches([], 8)) == []
