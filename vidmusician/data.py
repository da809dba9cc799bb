"""Training examples, random segments and batching for VidMusician.

A :class:`TrainExample` is one clip's precomputed inputs: EnCodec tokens (50 Hz), global CLIP features (the
semantic branch's input, ``cls_fps``, 1 fps by default) and the visual-change curve d (the rhythm branch's input,
``rhythm_fps``, 25 fps by default; already ``1 - cos`` per video frame with ``d_0 = 1``).

:func:`segment` crops a random training window of at most ``segment_frames`` tokens with the CLIP frames and the
token-rate rhythm curve that belong to it; :func:`collate` pads a list of segments into a :class:`Batch`.
All randomness comes from the ``torch.Generator`` passed in, so a seeded generator gives the same segments.

Depends on torch only (plus ``rhythm.to_token_rate``); no vm_eval imports.
"""
from __future__ import annotations

import math
import typing as tp
from dataclasses import dataclass

import torch

from .rhythm import to_token_rate

__all__ = ["TrainExample", "Batch", "Segment", "segment", "collate", "TOKEN_RATE_HZ"]

TOKEN_RATE_HZ = 50.0  # EnCodec frame rate of MusicGen's 32 kHz tokenizer

Segment = tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass
class TrainExample:
    """One training clip.

    codes: LongTensor [K, T], EnCodec tokens at 50 Hz (token n at time n / 50 s).
    cls: FloatTensor [F1, clip_dim], CLIP global features; frame k at time k / cls_fps.
    d_frames: FloatTensor [F25], visual-change curve per video frame at rhythm_fps (d_0 = 1).
    """
    clip_id: str
    codes: torch.Tensor
    cls: torch.Tensor
    d_frames: torch.Tensor
    cls_fps: float = 1.0
    rhythm_fps: float = 25.0

    def __post_init__(self):
        if self.codes.dim() != 2:
            raise ValueError(f"{self.clip_id}: codes must be [K, T], got {tuple(self.codes.shape)}")
        if self.codes.shape[1] < 1:
            raise ValueError(f"{self.clip_id}: codes have no frames")
        if self.cls.dim() != 2 or self.cls.shape[0] < 1:
            raise ValueError(f"{self.clip_id}: cls must be [F1 >= 1, clip_dim], got {tuple(self.cls.shape)}")
        if self.d_frames.dim() != 1 or self.d_frames.shape[0] < 1:
            raise ValueError(f"{self.clip_id}: d_frames must be [F25 >= 1], got {tuple(self.d_frames.shape)}")
        if self.cls_fps <= 0 or self.rhythm_fps <= 0:
            raise ValueError(f"{self.clip_id}: cls_fps and rhythm_fps must be positive")

    @property
    def num_frames(self) -> int:
        """Number of audio tokens (50 Hz frames)."""
        return int(self.codes.shape[1])


@dataclass
class Batch:
    """Padded batch. codes [B, K, T] (0 in padding), valid [B, T] (True = real frame), cls [B, F, D] (zeros in
    padding), cls_mask [B, F], d [B, T] (0 in padding); clip_ids in batch order."""
    codes: torch.Tensor
    valid: torch.Tensor
    cls: torch.Tensor
    cls_mask: torch.Tensor
    d: torch.Tensor
    clip_ids: tp.List[str]

    def to(self, device: tp.Union[str, torch.device]) -> "Batch":
        return Batch(self.codes.to(device), self.valid.to(device), self.cls.to(device), self.cls_mask.to(device),
                     self.d.to(device), list(self.clip_ids))

    def __len__(self) -> int:
        return int(self.codes.shape[0])


def _randint(high: int, generator: tp.Optional[torch.Generator]) -> int:
    """Uniform integer in [0, high)."""
    if high <= 1:
        return 0
    return int(torch.randint(0, high, (1,), generator=generator).item())


def segment(example: TrainExample, segment_frames: int, generator: tp.Optional[torch.Generator] = None,
            token_rate_hz: float = TOKEN_RATE_HZ) -> Segment:
    """Random window of ``example``: (codes [K, L], cls [F, D], d_token [L]) with L = min(segment_frames, T).

    The window starts at a uniformly drawn token s (one draw from ``generator``; none when the whole example
    fits) and covers tokens [s, s + L), i.e. times [s / rate, (s + L) / rate). ``cls`` holds the CLIP frames whose
    time k / cls_fps falls in that interval; when none does (a window shorter than one CLIP frame period) the
    frame at or just before the window start is used, so there is always at least one. ``d_token`` is the
    rhythm curve resampled to the token rate over the whole example (:func:`~vidmusician.rhythm.to_token_rate`,
    T tokens) and then cropped to the window, so a token gets the same value whatever window it falls in.
    """
    segment_frames = int(segment_frames)
    if segment_frames < 1:
        raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
    T = example.num_frames
    L = min(segment_frames, T)
    start = _randint(T - L + 1, generator)
    codes = example.codes[:, start:start + L]
    # CLIP frames in [start / rate, (start + L) / rate): k / cls_fps >= start / rate <=> k >= start * fps / rate
    F1 = int(example.cls.shape[0])
    eps = 1e-9
    k0 = math.ceil(start * example.cls_fps / token_rate_hz - eps)
    k1 = math.ceil((start + L) * example.cls_fps / token_rate_hz - eps)  # exclusive
    k0, k1 = max(k0, 0), min(k1, F1)
    if k1 <= k0:
        k = min(max(int(math.floor(start * example.cls_fps / token_rate_hz + eps)), 0), F1 - 1)
        k0, k1 = k, k + 1
    cls = example.cls[k0:k1]
    d_full = to_token_rate(example.d_frames, fps=float(example.rhythm_fps), duration_s=T / token_rate_hz,
                           rate_hz=float(token_rate_hz))
    d_token = d_full[start:start + L]
    return codes, cls, d_token


def collate(items: tp.Sequence[tp.Union[Segment, TrainExample]],
            clip_ids: tp.Optional[tp.Sequence[str]] = None, token_rate_hz: float = TOKEN_RATE_HZ) -> Batch:
    """Pad segments (or whole :class:`TrainExample` s, used as they are) into a :class:`Batch`.

    Padding goes at the end: codes with 0, cls with zero vectors (cls_mask False), d with 0, valid False.
    """
    if len(items) == 0:
        raise ValueError("collate: no items")
    segs: tp.List[Segment] = []
    ids: tp.List[str] = []
    for i, item in enumerate(items):
        if isinstance(item, TrainExample):
            d = to_token_rate(item.d_frames, fps=float(item.rhythm_fps), duration_s=item.num_frames / token_rate_hz,
                              rate_hz=float(token_rate_hz))
            segs.append((item.codes, item.cls, d))
            ids.append(item.clip_id)
        else:
            segs.append(tuple(item))  # type: ignore[arg-type]
            ids.append(str(i))
    if clip_ids is not None:
        if len(clip_ids) != len(segs):
            raise ValueError("collate: clip_ids and items differ in length")
        ids = [str(c) for c in clip_ids]
    K = int(segs[0][0].shape[0])
    D = int(segs[0][1].shape[-1])
    for codes, cls, d in segs:
        if codes.shape[0] != K or cls.shape[-1] != D:
            raise ValueError("collate: items differ in codebook count or feature width")
        if d.shape[0] != codes.shape[1]:
            raise ValueError(f"collate: d has {d.shape[0]} frames but codes have {codes.shape[1]}")
    B = len(segs)
    T = max(int(s[0].shape[1]) for s in segs)
    F = max(int(s[1].shape[0]) for s in segs)
    codes_b = torch.zeros(B, K, T, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    cls_b = torch.zeros(B, F, D, dtype=segs[0][1].dtype)
    cls_mask = torch.zeros(B, F, dtype=torch.bool)
    d_b = torch.zeros(B, T, dtype=torch.float32)
    for i, (codes, cls, d) in enumerate(segs):
        n, f = int(codes.shape[1]), int(cls.shape[0])
        codes_b[i, :, :n] = codes
        valid[i, :n] = True
        cls_b[i, :f] = cls
        cls_mask[i, :f] = True
        d_b[i, :n] = d.float()
    return Batch(codes_b, valid, cls_b, cls_mask, d_b, ids)
