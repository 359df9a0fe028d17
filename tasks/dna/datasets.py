"""Map-style datasets of fixed-length genome windows, deterministic in `(seed, epoch, index)`.

- `IntervalWindows`: one window per BED interval, widened (or narrowed) to the window length around its centre.
- `RandomWindows`: whole-genome sampling; a region (a chromosome's split part) is chosen with probability
  proportional to its length, then a uniform start inside it.
- `TiledWindows`: evaluation windows that tile each region from its start, so each base is scored once.
- `SpeciesWindows`: species classification; species uniform, then chromosome ∝ length, then a uniform segment.

Windows shorter than the window length (a short chromosome or region end) are right-padded with [PAD]. Training
windows are reverse-complemented with probability `rc_probability`. `epoch` is set by `EpochAwareLoader` so that
each epoch draws fresh windows while a resumed run draws the same ones. During sequence-length warmup an example is
made of independent pieces (`set_pieces`): random windows are drawn independently, interval datasets take
consecutive intervals (each narrowed around its centre, as HyenaDNA does at a shorter length).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mambaseq.tasks.dna.genome import Genome
from mambaseq.tasks.dna.intervals import Interval, widen_interval
from mambaseq.tasks.dna.tokenizer import PAD_ID, reverse_complement

IGNORE_INDEX = -100


def read_window(genome: Genome, chrom: str, start: int, end: int, length: int) -> np.ndarray:
    """Ids of `[start, end)` of `chrom`, right-padded with [PAD] to `length`: `(length,)` int64."""
    window = np.full(length, PAD_ID, dtype=np.int64)
    ids = genome.fetch(chrom, start, min(end, start + length))
    window[: len(ids)] = ids
    return window


def next_token_example(window: np.ndarray) -> dict[str, torch.Tensor]:
    """`(L + 1,)` ids -> `{"input_ids": (L,), "labels": (L,)}` with labels = next ids, [PAD] targets ignored."""
    ids = torch.from_numpy(np.ascontiguousarray(window))
    labels = ids[1:].clone()
    labels[labels == PAD_ID] = IGNORE_INDEX
    return {"input_ids": ids[:-1], "labels": labels}


class GenomeWindows(Dataset):
    """Base: windows of `length` ids (inputs + 1 for next-token examples), reverse-complemented with probability
    `rc_probability`; `epoch` (set by the loader) enters the seed.

    `set_pieces(r)` (sequence-length warmup) makes each example the concatenation of `r` independent shorter
    examples, so that cutting the batch into `r` pieces (`split_windows`) yields independent windows."""

    def __init__(self, length: int, *, rc_probability: float = 0.0, seed: int = 0, next_token: bool = True) -> None:
        if length < 2:
            raise ValueError(f"{type(self).__name__}: window length {length} is too short (expected >= 2)")
        if not 0.0 <= rc_probability <= 1.0:
            raise ValueError(f"{type(self).__name__}: rc_probability={rc_probability}, expected a value in [0, 1]")
        self.length = length
        self.rc_probability = rc_probability
        self.seed = seed
        self.next_token = next_token
        self.epoch = 0
        self.pieces = 1

    @property
    def inputs_length(self) -> int:
        return self.length - 1 if self.next_token else self.length

    def set_pieces(self, pieces: int) -> None:
        if pieces < 1 or self.inputs_length % pieces:
            raise ValueError(f"{type(self).__name__}: cannot cut {self.inputs_length} positions into {pieces} pieces")
        self.pieces = pieces

    @property
    def piece_length(self) -> int:
        """Window length of one piece (inputs + 1 for next-token)."""
        return self.inputs_length // self.pieces + (1 if self.next_token else 0)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def window(self, index: int, piece: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """Ids `(length,)` of piece `piece` of example `index`."""
        raise NotImplementedError

    def example(self, window: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if self.rc_probability and rng.random() < self.rc_probability:
            window = reverse_complement(window)
        if self.next_token:
            return next_token_example(window)
        return {"input_ids": torch.from_numpy(np.ascontiguousarray(window))}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        pieces = [self.example(self.window(index, piece, self.piece_length, rng), rng) for piece in range(self.pieces)]
        return concatenate_examples(pieces)


def concatenate_examples(pieces: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    if len(pieces) == 1:
        return pieces[0]
    return {key: torch.cat([piece[key] for piece in pieces]) for key in pieces[0]}


class IntervalWindows(GenomeWindows):
    """One window per interval, centred on it (HyenaDNA's HG38 intervals); see `widen_interval`."""

    def __init__(self, genome: Genome, intervals: Sequence[Interval], length: int, **kwargs) -> None:
        super().__init__(length, **kwargs)
        if not intervals:
            raise ValueError(f"IntervalWindows over {genome.path}: no intervals in this split")
        self.genome = genome
        self.intervals = list(intervals)

    def __len__(self) -> int:
        return len(self.intervals)

    def window(self, index: int, piece: int, length: int, rng: np.random.Generator) -> np.ndarray:
        interval = self.intervals[(index * self.pieces + piece) % len(self.intervals)]
        start, end = widen_interval(interval.start, interval.end, self.genome.lengths[interval.chrom], length)
        return read_window(self.genome, interval.chrom, start, end, length)


def _region_probabilities(regions: Sequence[Interval]) -> np.ndarray:
    weights = np.array([region.length for region in regions], dtype=np.float64)
    return weights / weights.sum()


def sample_window(genome: Genome, regions: Sequence[Interval], probabilities: np.ndarray, length: int,
                  rng: np.random.Generator) -> np.ndarray:
    """A window of `length` ids from a region drawn with `probabilities`, at a uniform start inside it (the whole
    region, padded, when the region is shorter)."""
    region = regions[int(rng.choice(len(regions), p=probabilities))]
    last_start = max(region.end - length, region.start)
    start = int(rng.integers(region.start, last_start + 1))
    return read_window(genome, region.chrom, start, min(start + length, region.end), length)


class RandomWindows(GenomeWindows):
    """`num_samples` random windows of the `regions` of one genome per epoch (chromosome ∝ length)."""

    def __init__(self, genome: Genome, regions: Sequence[Interval], length: int, num_samples: int, **kwargs) -> None:
        super().__init__(length, **kwargs)
        if not regions:
            raise ValueError(f"RandomWindows over {genome.path}: no regions to sample from")
        if num_samples <= 0:
            raise ValueError(f"RandomWindows: num_samples={num_samples}, expected a positive integer")
        self.genome = genome
        self.regions = list(regions)
        self.probabilities = _region_probabilities(self.regions)
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def window(self, index: int, piece: int, length: int, rng: np.random.Generator) -> np.ndarray:
        return sample_window(self.genome, self.regions, self.probabilities, length, rng)


class TiledWindows(GenomeWindows):
    """Windows at `region.start + k * stride` over each region (the last one padded); `max_windows` keeps an evenly
    spaced subset. With next-token windows, `stride = length - 1` scores every base but each region's first once."""

    def __init__(self, genome: Genome, regions: Sequence[Interval], length: int, *, stride: int | None = None,
                 max_windows: int | None = None, **kwargs) -> None:
        super().__init__(length, **kwargs)
        stride = stride or (length - 1 if self.next_token else length)
        tail = 1 if self.next_token else 0  # a next-token window needs two bases to score one
        self.genome = genome
        self.starts = [(region.chrom, start, region.end) for region in regions
                       for start in range(region.start, region.end - tail, stride)]
        if not self.starts:
            raise ValueError(f"TiledWindows over {genome.path}: the regions hold no bases")
        if max_windows is not None and len(self.starts) > max_windows:
            keep = np.linspace(0, len(self.starts) - 1, max_windows).round().astype(int)
            self.starts = [self.starts[i] for i in keep]

    def __len__(self) -> int:
        return len(self.starts)

    def window(self, index: int, piece: int, length: int, rng: np.random.Generator) -> np.ndarray:
        chrom, start, region_end = self.starts[index]
        return read_window(self.genome, chrom, start, min(start + length, region_end), length)


class SpeciesWindows(GenomeWindows):
    """Species classification windows: `{"input_ids": (L,), "labels": ()}`. Species `k` is drawn uniformly, then a
    region of `regions[k]` ∝ length, then a uniform segment (HyenaDNA's species task); all pieces of one example
    come from the same species."""

    def __init__(self, genomes: Sequence[Genome], regions: Sequence[Sequence[Interval]], length: int,
                 num_samples: int, **kwargs) -> None:
        super().__init__(length, next_token=False, **kwargs)
        for genome, species_regions in zip(genomes, regions):
            if not species_regions:
                raise ValueError(f"SpeciesWindows: {genome.path} has no region in this split")
        self.genomes = list(genomes)
        self.regions = [list(species_regions) for species_regions in regions]
        self.probabilities = [_region_probabilities(species_regions) for species_regions in self.regions]
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        species = int(rng.integers(len(self.genomes)))
        pieces = [self.example(sample_window(self.genomes[species], self.regions[species], self.probabilities[species],
                                             self.piece_length, rng), rng)
                  for _ in range(self.pieces)]
        return {**concatenate_examples(pieces), "labels": torch.tensor(species)}
