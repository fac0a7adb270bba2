"""Per-sample randomness: sample i's x_T and its step noise depend only on (seed, i).

So a sample is the same whatever the batch size, the batch it falls in, the method (x_T), the
device or the process that makes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Streams of the per-sample seed sequence.
STREAM_XT = 0
STREAM_STEP_NOISE = 1
STREAM_CUTOUTS = 2


def sample_seed(seed: int, index: int, stream: int = STREAM_XT, *more: int) -> int:
    """A 63-bit seed that depends only on (seed, sample index, stream, *more)."""
    entropy = [int(seed), int(index), int(stream), *(int(m) for m in more)]
    state = np.random.SeedSequence(entropy).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF)


def initial_noise(
    seed: int, indices: Sequence[int], shape: tuple[int, int, int], device: torch.device
) -> torch.Tensor:
    """x_T for the given sample indices, drawn on the CPU so it is the same on every device."""
    out = torch.empty((len(indices), *shape))
    for row, i in enumerate(indices):
        g = torch.Generator().manual_seed(sample_seed(seed, i, STREAM_XT))
        out[row] = torch.randn(shape, generator=g)
    return out.to(device)


class StepNoise:
    """Per-sample generators for the noise added at each DDPM/DDIM step."""

    def __init__(self, seed: int, indices: Sequence[int], shape: tuple[int, int, int],
                 device: torch.device):
        self.shape = (1, *shape)
        self.device = device
        self.generators = [
            torch.Generator(device=device).manual_seed(sample_seed(seed, i, STREAM_STEP_NOISE))
            for i in indices
        ]

    def __call__(self) -> torch.Tensor:
        return torch.cat(
            [torch.randn(self.shape, generator=g, device=self.device) for g in self.generators]
        )


def cutout_seeds(seed: int, indices: Sequence[int], t: int) -> list[int]:
    """The seeds of the cutouts of samples ``indices`` at timestep ``t``: (seed, i, t) only."""
    return [sample_seed(seed, i, STREAM_CUTOUTS, t) for i in indices]
