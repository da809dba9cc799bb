"""Caches of the MusicGen-backbone decoder (:mod:`vidmusician.decoder`): the cross-attention keys / values of one
window's condition, and the preallocated self-attention cache of one window.

Layouts follow audiocraft's ``StreamingMultiheadAttention`` with torch's attention backend: ``[B, H, T, D]``
(batch, heads, time, head width). Rows are ``[conditional rows; null rows]`` under classifier-free guidance.

Depends on torch only.
"""
from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import torch

__all__ = ["CrossCache", "KVCache"]


@dataclass
class CrossCache:
    """Cross-attention K / V of a condition, projected once per window: per layer ``[B', H, S, D]``.

    ``source`` is the fused cross-attention source ``[B', S, dim]`` they were computed from: a later window whose
    source is bitwise equal reuses them (:meth:`matches`).
    """

    source: torch.Tensor
    keys: tp.List[torch.Tensor]
    values: tp.List[torch.Tensor]

    def matches(self, source: torch.Tensor) -> bool:
        s = self.source
        return (s.shape == source.shape and s.dtype == source.dtype and s.device == source.device
                and torch.equal(s, source))


class KVCache:
    """Self-attention keys / values of one window, written in place: ``keys[layer]`` is ``[B', H, capacity, D]``.

    The buffer is kept between windows of the same batch and width and only grows (no ``torch.cat`` per step, no
    new allocation per window); positions ``>= length`` hold stale values that no attention reads.
    """

    def __init__(self, n_layers: int, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.n_layers, self.heads, self.head_dim = int(n_layers), int(heads), int(head_dim)
        self.dtype, self.device = dtype, device
        self.batch = 0
        self.capacity = 0
        self.length = 0  # positions written so far in this window
        self._buf: tp.Optional[torch.Tensor] = None  # [2, L, B', H, capacity, D]
        self._layer_views: tp.List[tp.Tuple[torch.Tensor, torch.Tensor]] = []  # (keys, values) [B', H, cap, D]

    def reset(self, batch: int, capacity: int) -> None:
        """Start a window of ``batch`` rows and at most ``capacity`` positions."""
        if self._buf is None or batch != self.batch or capacity > self.capacity:
            self._buf = torch.empty(2, self.n_layers, batch, self.heads, capacity, self.head_dim,
                                    dtype=self.dtype, device=self.device)
            self.batch, self.capacity = int(batch), int(capacity)
            # per-layer views made once: indexing the 6-d buffer at every write costs ~0.1 ms a layer per step
            self._layer_views = [(self._buf[0, i], self._buf[1, i]) for i in range(self.n_layers)]
        self.length = 0

    def release(self) -> None:
        """Free the buffer (the next :meth:`reset` allocates again)."""
        self._buf, self.batch, self.capacity, self.length = None, 0, 0, 0
        self._layer_views = []

    @property
    def buffer(self) -> torch.Tensor:
        if self._buf is None:
            raise RuntimeError("KVCache.reset was not called")
        return self._buf

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Store k, v ``[B', H, L, D]`` at positions ``[start, start + L)``; return the views of positions
        ``[0, start + L)`` (what the new queries attend to)."""
        stop = start + k.shape[2]
        if stop > self.capacity:
            raise IndexError(f"KV cache holds {self.capacity} positions, asked to write up to {stop}")
        if self._buf is None:
            raise RuntimeError("KVCache.reset was not called")
        keys, values = self._layer_views[layer]
        keys[:, :, start:stop].copy_(k)
        values[:, :, start:stop].copy_(v)
        return keys[:, :, :stop], values[:, :, :stop]
