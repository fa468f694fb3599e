"""Length-grouped training batches over the whole epoch.

The Trainer's `LengthGroupedSampler` sorts by length only inside random megabatches of at most 50 batches (on EmoDB's
347 training clips at batch 16: 5 batches), so batches still mix short and long clips. This sampler sorts the whole
epoch: clips are ordered by their length in the collator's padding buckets (`pad_to_multiple_of_seconds`), in a
random order inside each bucket, cut into batches, and the batches are shuffled. Each epoch draws anew from
(seed, epoch), so batch composition varies between epochs and a resumed run sees the batches of an uninterrupted one.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler


class EpochLengthGroupedSampler(Sampler[int]):
    """Indices for batches of `batch_size` clips of similar length, every index exactly once per epoch.

    `lengths` are seconds (the `duration` column); `max_length` caps them (training crops longer clips to the same
    window, so they are one group); `bucket` rounds them up to multiples of that many seconds, the lengths the
    collator pads to, and clips in one bucket are interchangeable. The batch holding the longest clips comes first
    (out-of-memory errors show at the first step, as with the Trainer's sampler) and a smaller last batch stays last,
    so a `DataLoader` with the same `batch_size` cuts exactly these batches.
    """

    def __init__(
        self,
        lengths: Sequence[float],
        batch_size: int,
        seed: int = 0,
        max_length: Optional[float] = None,
        bucket: Optional[float] = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: use 1 or more")
        lengths = np.asarray(lengths, dtype=np.float64)
        if max_length:
            lengths = np.minimum(lengths, max_length)
        if bucket:
            lengths = np.ceil(lengths / bucket - 1e-9)
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's data loader) before each epoch, resumed ones included."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[np.ndarray]:
        """This epoch's batches, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        # longest first; ties (one bucket) in random order
        order = np.lexsort((rng.random(len(self.lengths)), -self.lengths))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if len(batches) < 3:
            return batches
        last = batches.pop() if len(batches[-1]) < self.batch_size else None
        middle = batches[1:]
        rng.shuffle(middle)
        return [batches[0], *middle] + ([last] if last is not None else [])

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch.tolist()
