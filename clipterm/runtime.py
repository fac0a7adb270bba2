"""How a run executes on its device (precision, memory format, compilation): never what it
computes. One code path serves every runtime: the networks run under ``runtime.autocast``, and
their outputs are upcast to fp32 before any guidance or sampler math.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """``precision="bf16"`` runs the UNet and CLIP under bf16 autocast, while the CLIP logits, the
    softmax, the guidance objective and gradient math and the sampler update stay in fp32.
    ``channels_last`` stores the UNet's weights and inputs NHWC. ``compile`` wraps the UNet
    forward and the guided step's forward in ``torch.compile`` with ``compile_mode``.
    ``async_events`` copies previews and probabilities to the CPU without blocking the device.

    :meth:`for_device` is the default: fp32 eager on the CPU; bf16 autocast and non-blocking
    events on CUDA. Compile stays opt-in until a GPU measurement shows its warm-up paid back
    (see docs/PERFORMANCE.md).
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "reduce-overhead"
    async_events: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def for_device(cls, device: torch.device, method: str | None = None) -> Runtime:
        """The default runtime. ``optimize`` stays fp32 even on CUDA: Adam turns bf16 sign flips
        of near-zero x_T gradients into full-size steps, so bf16 and fp32 runs diverge."""
        if device.type == "cuda":
            return cls(precision="fp32" if method == "optimize" else "bf16", async_events=True)
        return cls()

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, unet: torch.nn.Module, device: torch.device) -> None:
        """Put the UNet in this runtime's memory format (idempotent)."""
        if self.channels_last and device.type == "cuda":
            unet.to(memory_format=torch.channels_last)

    def describe(self) -> str:
        parts = [self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append(f"compile:{self.compile_mode}")
        return "+".join(parts)

    def compiled(self, owner: Any, key: tuple[Any, ...], fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` under torch.compile when this runtime compiles (one compiled callable per
        ``owner`` module and ``key``), else ``fn`` itself."""
        if not self.compile:
            return fn
        per_owner = _COMPILED.setdefault(owner, {})
        full_key = (*key, self)
        if full_key not in per_owner:
            per_owner[full_key] = torch.compile(fn, mode=self.compile_mode, dynamic=False)
        return per_owner[full_key]


DEFAULT_CPU_RUNTIME = Runtime()
# Compiled callables per module (weak: a pack that is dropped frees its compiled graphs).
_COMPILED: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)


def timestep_batch(t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The timestep as the UNet takes it: one long per sample."""
    if isinstance(t, torch.Tensor):
        return t
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


def unet_eps(unet: torch.nn.Module, x: torch.Tensor, t: int | torch.Tensor,
             runtime: Runtime = DEFAULT_CPU_RUNTIME) -> torch.Tensor:
    """The UNet's noise prediction at timestep ``t``, in fp32 (or fp64), under ``runtime``."""
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def forward(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        with runtime.autocast(x.device):
            eps = unet(x, tt).sample
        return upcast(eps).contiguous()

    return runtime.compiled(unet, ("unet",), forward)(x, timestep_batch(t, x))


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision results to fp32 (fp32 and fp64 stay as they are)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def set_gradient_checkpointing(unet: torch.nn.Module, enabled: bool) -> None:
    """Turn diffusers' activation checkpointing in the UNet's blocks on or off: with it, a
    backward pass through the UNet (guidance through the predicted x0) keeps only each block's
    input and recomputes the rest, trading about one more forward for much less memory. It
    applies whenever grad is enabled (diffusers >= 0.32); it changes no number."""
    if not getattr(unet, "_supports_gradient_checkpointing", False):
        return  # not a diffusers model (a test's wrapper): nothing to switch
    if bool(getattr(unet, "is_gradient_checkpointing", False)) == enabled:
        return
    if enabled:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation on any device (CUDA, CPU, MPS)."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    if isinstance(exc, (MemoryError, *oom_types)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text
                                              or "can't allocate memory" in text)
