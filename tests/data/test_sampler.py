"""`EpochLengthGroupedSampler`: every clip once per epoch, batches of similar length over the whole epoch, a new draw
each epoch and the same one for the same (seed, epoch)."""

import numpy as np
import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_ser.data.sampler import EpochLengthGroupedSampler

BATCH = 16


def durations(n=347, seed=0):
    """Clip lengths like EmoDB's training speakers: 1.2 to 6.8 s, mean about 2.8 s."""
    return np.clip(np.random.default_rng(seed).gamma(4.0, 0.7, n) + 0.4, 1.2, 6.8).round(3).tolist()


def batches_of(order, batch_size=BATCH):
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padded_seconds(lengths, order, cap=6.0, bucket=None):
    """Seconds of audio the model sees when each batch of `order` is padded to its longest (rounded up to `bucket`)."""
    total = 0.0
    for batch in batches_of(order):
        longest = min(max(lengths[i] for i in batch), cap)
        if bucket:
            longest = np.ceil(longest / bucket - 1e-9) * bucket
        total += longest * len(batch)
    return total


@pytest.mark.parametrize("n, bucket", [(347, 0.5), (347, None), (64, 0.5), (5, 0.5), (1, None)])
def test_every_index_exactly_once_per_epoch(n, bucket):
    sampler = EpochLengthGroupedSampler(durations(n), BATCH, seed=3, max_length=6.0, bucket=bucket)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(sampler) == n and sorted(order) == list(range(n))


def test_batches_hold_one_length_bucket_and_pad_far_less_than_megabatches_or_random_batches():
    lengths = durations()
    sampler = EpochLengthGroupedSampler(lengths, BATCH, seed=0, max_length=6.0, bucket=0.5)
    order = list(sampler)
    buckets = np.ceil(np.minimum(lengths, 6.0) / 0.5)
    spans = [buckets[batch].max() - buckets[batch].min() for batch in batches_of(order)]
    assert max(spans) <= 1  # sorted over the whole epoch: a batch straddles at most one bucket boundary
    assert sum(span == 0 for span in spans) >= len(spans) // 2
    real = float(np.minimum(lengths, 6.0).sum())
    ours = padded_seconds(lengths, order, bucket=0.5)
    megabatch = padded_seconds(lengths, list(LengthGroupedSampler(BATCH, lengths=lengths)), bucket=0.5)
    random = padded_seconds(lengths, torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist())
    assert ours < 1.12 * real  # within one bucket of the real audio, on average well under half a bucket per clip
    assert ours < 0.92 * megabatch and ours < 0.7 * random, (ours, megabatch, random, real)


def test_longest_batch_first_and_a_short_last_batch_last():
    lengths = durations()
    sampler = EpochLengthGroupedSampler(lengths, BATCH, seed=1, max_length=6.0, bucket=0.5)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        assert max(min(lengths[i], 6.0) for i in batches[0]) == 6.0
        assert [len(batch) for batch in batches] == [BATCH] * (len(lengths) // BATCH) + [len(lengths) % BATCH]


def test_each_epoch_draws_new_batches_and_the_same_seed_and_epoch_the_same_ones():
    lengths = durations()
    sampler = EpochLengthGroupedSampler(lengths, BATCH, seed=5, max_length=6.0, bucket=0.5)
    compositions = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        compositions.append({frozenset(batch.tolist()) for batch in sampler.batches()})
    assert len(compositions[0] & compositions[1]) < len(compositions[0]) // 2  # mostly other clips together
    resumed = EpochLengthGroupedSampler(lengths, BATCH, seed=5, max_length=6.0, bucket=0.5)
    resumed.set_epoch(2)
    sampler.set_epoch(2)
    assert list(resumed) == list(sampler)
    other_seed = EpochLengthGroupedSampler(lengths, BATCH, seed=6, max_length=6.0, bucket=0.5)
    other_seed.set_epoch(2)
    assert list(other_seed) != list(sampler)
