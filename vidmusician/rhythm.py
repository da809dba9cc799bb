"""Rhythmic conditioning of VidMusician: visual-change curve -> Zero/Identity-Linear adapter -> in-attention.

Pipeline (design doc, "VidMusician, as far as public facts go"):

1. Local CLIP (patch) features of the video at 25 fps -> :func:`patch_dissimilarity`
   d_t = 1 - mean_p cos(p_t, p_{t-1}), d_0 = 1.
2. :func:`to_token_rate`: linear interpolation of d onto the audio-token grid (50 Hz for 32 kHz EnCodec).
3. :class:`RhythmAdapter`: F_R1 = O(d) (Zero-Linear 1 -> dim), F_Rj = L_j(F_R(j-1)) (Identity-Linears dim -> dim).
4. :meth:`RhythmAdapter.attach`: forward pre-hooks add F_Rj to the hidden state right before the first layer of
   each block (element-wise, "in-attention").

With the zero/identity initialisation every F_Rj is exactly 0 at the start of stage 2, so the frozen backbone
(plus the stage-1 semantic path) behaves exactly as before; gradients still reach O's weight because
dF/dW_O = d != 0, and once O moves the identity chain passes its output on unchanged to every injection point.

This module depends on torch only (no vm_eval / baselines / metrics imports).
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "patch_dissimilarity",
    "cls_dissimilarity",
    "to_token_rate",
    "RhythmAdapter",
    "inject",
]

INITS = ("zero-identity", "default")
STYLES = ("vidmusician", "musicongen")


# ----------------------------------------------------------------------------------------------------------------
# visual-change curves
# ----------------------------------------------------------------------------------------------------------------

def patch_dissimilarity(patch_feats: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Inter-frame dissimilarity of local (patch) features.

    ``patch_feats``: [T, P, D] (or batched [B, T, P, D]); returns d: [T] (or [B, T]) with
    ``d_t = 1 - mean_p cos(p_t[p], p_{t-1}[p])`` for t >= 1 and ``d_0 = 1``.

    Why per-patch cosine first and the mean afterwards (rather than the cosine of patch-averaged features): a
    change confined to a few regions (a moving object, a local cut-in, the white boxes of the paper's Fig. 3d)
    lowers the similarity of exactly those patches and so shows up in the mean, while averaging the patch
    vectors first produces a near-global descriptor that -- like the [CLS] token -- stays close to 1 under such
    local changes. Per-patch cosines also keep each patch's own scale out of the comparison (each term lies in
    [-1, 1]), so a few high-norm patches cannot dominate. ``d_0 = 1`` marks the clip start as maximal change
    (there is no previous frame); this is the convention the design doc records.
    A zero vector has cosine 0 with anything (``eps`` guard), so an all-zero frame counts as fully changed.
    """
    if patch_feats.dim() not in (3, 4):
        raise ValueError(f"patch_feats must be [T, P, D] or [B, T, P, D], got {tuple(patch_feats.shape)}")
    x = patch_feats.float()
    sim = F.cosine_similarity(x[..., 1:, :, :], x[..., :-1, :, :], dim=-1, eps=eps)  # [..., T-1, P]
    d_rest = 1.0 - sim.mean(dim=-1)  # [..., T-1]
    first = torch.ones(*x.shape[:-3], 1, dtype=d_rest.dtype, device=d_rest.device)
    return torch.cat([first, d_rest], dim=-1)


def cls_dissimilarity(cls_feats: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Ablation "rhythm from [CLS] similarity": ``d_t = 1 - cos(c_t, c_{t-1})``, ``d_0 = 1``.

    ``cls_feats``: [T, D] (or [B, T, D]) -> [T] (or [B, T]).
    """
    if cls_feats.dim() not in (2, 3):
        raise ValueError(f"cls_feats must be [T, D] or [B, T, D], got {tuple(cls_feats.shape)}")
    x = cls_feats.float()
    return patch_dissimilarity(x.unsqueeze(-2), eps=eps)


def to_token_rate(d: torch.Tensor, fps: float, duration_s: float, rate_hz: float = 50.0) -> torch.Tensor:
    """Resample a per-frame curve to the audio-token rate by linear interpolation in time.

    ``d``: [B, T] (or [T]) sampled at ``fps`` -- frame k sits at time k / fps. Returns [B, N] (or [N]) with
    ``N = round(duration_s * rate_hz)``; token n sits at time n / rate_hz. Times before frame 0 or after frame
    T-1 take the value of the nearest end frame (held, no extrapolation).
    """
    if fps <= 0 or rate_hz <= 0:
        raise ValueError("fps and rate_hz must be positive")
    squeeze = d.dim() == 1
    if squeeze:
        d = d.unsqueeze(0)
    if d.dim() != 2 or d.shape[-1] < 1:
        raise ValueError(f"d must be [B, T] or [T] with T >= 1, got {tuple(d.shape)}")
    n = int(round(duration_s * rate_hz))
    T = d.shape[-1]
    x = d.float()
    pos = torch.arange(n, dtype=torch.float64, device=d.device) / rate_hz * fps  # fractional frame index
    pos = pos.clamp(0.0, T - 1)
    lo = pos.floor().long().clamp(max=T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    w = (pos - lo.to(pos.dtype)).to(x.dtype)
    out = x[:, lo] * (1.0 - w) + x[:, hi] * w
    return out.squeeze(0) if squeeze else out


# ----------------------------------------------------------------------------------------------------------------
# adapter
# ----------------------------------------------------------------------------------------------------------------

def inject(hidden: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """In-attention: element-wise addition of the rhythm feature to the hidden state ([B, N, dim] both)."""
    return hidden + add.to(dtype=hidden.dtype, device=hidden.device)


def _zero_linear(in_f: int, out_f: int) -> nn.Linear:
    lin = nn.Linear(in_f, out_f)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


def _identity_linear(dim: int) -> nn.Linear:
    lin = nn.Linear(dim, dim)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(dim))
    nn.init.zeros_(lin.bias)
    return lin


class RhythmAdapter(nn.Module):
    """Maps a token-rate dissimilarity curve d [B, N] to per-layer additive features F_Rj [B, N, dim].

    ``style="vidmusician"`` (the default design):
        ``zero_linear`` O: Linear(1 -> dim); ``identity_linears`` L_j: Linear(dim -> dim), one per injection point
        (``identity_on_first=True``, the default): F_R0 = O(d), F_Rj = L_j(F_R(j-1)); J Identity-Linears,
        2*dim + J*(dim*dim + dim) parameters (MusicGen-medium, 9 points: 21,250,560). With
        ``identity_on_first=False`` the first point takes O(d) directly (J-1 Identity-Linears: 18,894,336 for
        medium). With ``init="zero-identity"`` O has zero weight and bias (all outputs exactly 0 at init) and each
        L_j has identity weight and zero bias; both variants give all-zero outputs at init.
        Which one the paper uses is not public; the default is J Identity-Linears (F_R1 = L_1(O(d))), the reading
        of "Zero-Linear then chained Identity-Linears" that vidmusician/params.py's 24.79M arithmetic uses.

    ``style="musicongen"``: an independent Linear(1 -> dim) per injection point, no chain (``projections``).
        What MusiConGen (Lan et al. 2024, built on MusicGen) does, as far as we know: it feeds its rhythm/chord
        condition into the first 3/4 of the decoder layers by "in-attention" -- an embedding of the condition is
        added to the hidden state before the layer's self-attention -- and finetunes without any special
        initialisation. ASSUMPTIONS (not confirmed from its code): one separate projection per injection point
        from the same 1-d rhythm curve, no sharing and no chaining; ``init="default"`` reproduces "MusiConGen-style
        in-attention without special init", ``init="zero-identity"`` zero-initialises every projection (there
        is no dim -> dim layer to make an identity) for the ablation row "MusiConGen-style in-attention".

    ``init="default"`` keeps PyTorch's default nn.Linear initialisation for every layer (ablation
    "no zero/identity initialisation").

    Injection into a backbone: ``handles = adapter.attach(layers)`` registers forward pre-hooks on
    ``layers[j]`` for every j in ``injection_layers``; inside ``with adapter.conditioning(d): model(...)`` the
    hooks add F_Rj (computed once per ``conditioning`` block, with gradients) to the first positional argument
    (the hidden state) of layer j. See :meth:`conditioning` for sequence-length and offset handling.
    """

    def __init__(self, dim: int, injection_layers: Sequence[int], init: str = "zero-identity",
                 style: str = "vidmusician", identity_on_first: bool = True):
        super().__init__()
        style = str(style).lower()  # accept "musiconGen" spellings
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        layers = [int(i) for i in injection_layers]
        if not layers:
            raise ValueError("injection_layers must not be empty")
        if len(set(layers)) != len(layers):
            raise ValueError(f"injection_layers has duplicates: {layers}")
        self.dim = int(dim)
        self.injection_layers: List[int] = layers
        self.init = init
        self.style = style
        self.identity_on_first = bool(identity_on_first)
        zi = init == "zero-identity"
        if style == "vidmusician":
            self.zero_linear = _zero_linear(1, dim) if zi else nn.Linear(1, dim)
            self.identity_linears = nn.ModuleList(
                [_identity_linear(dim) if zi else nn.Linear(dim, dim)
                 for _ in (layers if self.identity_on_first else layers[1:])])
        else:
            self.projections = nn.ModuleList(
                [_zero_linear(1, dim) if zi else nn.Linear(1, dim) for _ in layers])
        # conditioning state used by the hooks (not part of the state dict)
        self._outputs: Optional[Dict[int, torch.Tensor]] = None
        self._offset: int = 0
        self._auto_advance: bool = False

    # -- computation ------------------------------------------------------------------------------------------
    def forward(self, d: torch.Tensor) -> Dict[int, torch.Tensor]:
        """d: [B, N] (or [N]) -> {layer_index: F_Rj [B, N, dim]} in ``injection_layers`` order."""
        if d.dim() == 1:
            d = d.unsqueeze(0)
        if d.dim() != 2:
            raise ValueError(f"d must be [B, N] or [N], got {tuple(d.shape)}")
        p = next(self.parameters())
        x = d.to(dtype=p.dtype, device=p.device).unsqueeze(-1)  # [B, N, 1]
        out: Dict[int, torch.Tensor] = {}
        if self.style == "vidmusician":
            f = self.zero_linear(x)
            lins = list(self.identity_linears)
            if self.identity_on_first:
                f = lins.pop(0)(f)
            out[self.injection_layers[0]] = f
            for layer_idx, lin in zip(self.injection_layers[1:], lins):
                f = lin(f)
                out[layer_idx] = f
        else:
            for layer_idx, proj in zip(self.injection_layers, self.projections):
                out[layer_idx] = proj(x)
        return out

    # -- conditioning state -----------------------------------------------------------------------------------
    def set_outputs(self, outputs: Optional[Dict[int, torch.Tensor]], offset: int = 0,
                    auto_advance: bool = False) -> None:
        """Set (or clear with None) the F_Rj the hooks add; see :meth:`conditioning`."""
        self._outputs = outputs
        self._offset = int(offset)
        self._auto_advance = bool(auto_advance)

    def set_offset(self, t: int) -> None:
        """Time index (in tokens) of the first position of the next sequence the layers see."""
        self._offset = int(t)

    @property
    def offset(self) -> int:
        return self._offset

    @contextlib.contextmanager
    def conditioning(self, d: Optional[torch.Tensor], offset: int = 0,
                     auto_advance: bool = False) -> Iterator[Dict[int, torch.Tensor]]:
        """Compute F_Rj = self(d) once and make the attached hooks add it within the block.

        ``d``: [B, N] token-rate curve (None: the hooks add nothing). The hook of layer j adds
        ``F_Rj[:, offset : offset + L]`` to a hidden state of length L: where that window runs past N
        (sequence longer than the curve) the missing steps get zeros, i.e. no rhythm cue; a shorter
        sequence simply uses the cropped window. Full-sequence training: ``offset=0``.

        Step-by-step decoding with a KV cache (one or a few new tokens per call): either call
        ``set_offset(t)`` before the step that processes token t, or pass ``auto_advance=True`` so the
        offset grows by L after the *last* attached layer has seen a length-L input (i.e. once per
        backbone forward pass). Either way token t receives F_Rj[:, t], the same as in a full-sequence pass.

        Batch: the hidden batch must equal d's batch, or d's batch must be 1 (broadcast). For classifier-free
        guidance build d for the doubled batch yourself (e.g. ``torch.cat([d, d_null])``).
        """
        prev = (self._outputs, self._offset, self._auto_advance)
        outs = self(d) if d is not None else None
        self.set_outputs(outs, offset=offset, auto_advance=auto_advance)
        try:
            yield outs if outs is not None else {}
        finally:
            self._outputs, self._offset, self._auto_advance = prev

    def window(self, layer_idx: int, length: int, batch: int) -> Optional[torch.Tensor]:
        """F_Rj for positions [offset, offset + length), zero-padded past N; None when nothing is set."""
        if self._outputs is None or layer_idx not in self._outputs:
            return None
        f = self._outputs[layer_idx]
        n = f.shape[1]
        start = max(self._offset, 0)
        stop = start + length
        piece = f[:, min(start, n):min(stop, n)]
        if piece.shape[1] < length:
            pad = f.new_zeros(f.shape[0], length - piece.shape[1], f.shape[2])
            piece = torch.cat([piece, pad], dim=1)
        if piece.shape[0] != batch:
            if piece.shape[0] == 1:
                piece = piece.expand(batch, -1, -1)
            else:
                raise ValueError(f"rhythm batch {piece.shape[0]} does not match hidden batch {batch}")
        return piece

    # -- hooks ------------------------------------------------------------------------------------------------
    def attach(self, layers: Sequence[nn.Module], adapter_outputs: Optional[Dict[int, torch.Tensor]] = None,
               batch_first: bool = True,
               hidden_kwargs: Iterable[str] = ("hidden_states", "x", "src", "tgt")) -> List:
        """Register forward pre-hooks on ``layers[j]`` for each j in ``injection_layers``.

        Each hook adds the current window of F_Rj to the layer's hidden state -- its first positional
        argument, or the first of ``hidden_kwargs`` passed by keyword -- i.e. before the layer's self-attention.
        ``batch_first=False`` for layers that take [N, B, dim]. ``adapter_outputs``, if given, are set as the
        current conditioning (offset 0) until replaced; usually leave it None and use :meth:`conditioning`.
        Returns the removable handles (``for h in handles: h.remove()``).
        """
        if adapter_outputs is not None:
            self.set_outputs(adapter_outputs)
        n_layers = len(layers)
        for j in self.injection_layers:
            if not 0 <= j < n_layers:
                raise IndexError(f"injection layer {j} out of range for {n_layers} layers")
        last = max(self.injection_layers)
        keys = tuple(hidden_kwargs)
        handles = []
        for j in self.injection_layers:
            handles.append(layers[j].register_forward_pre_hook(
                self._make_hook(j, j == last, batch_first, keys), with_kwargs=True))
        return handles

    def _make_hook(self, layer_idx: int, is_last: bool, batch_first: bool, keys: tuple):
        adapter = self

        def hook(module, args, kwargs):
            if adapter._outputs is None:
                return None
            if args:
                hidden, where = args[0], None
            else:
                where = next((k for k in keys if k in kwargs), None)
                if where is None:
                    raise ValueError(f"layer {layer_idx}: no hidden state among positional args or {keys}")
                hidden = kwargs[where]
            h = hidden if batch_first else hidden.transpose(0, 1)
            add = adapter.window(layer_idx, h.shape[1], h.shape[0])
            new_h = inject(h, add) if add is not None else h
            if not batch_first:
                new_h = new_h.transpose(0, 1)
            if is_last and adapter._auto_advance:
                adapter._offset += h.shape[1]
            if where is None:
                return (new_h,) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs[where] = new_h
            return args, kwargs

        return hook
