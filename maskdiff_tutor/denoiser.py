"""A small bidirectional transformer denoiser: ``x_t (B, L) -> logits (B, L, V)``.

Book chapter "Joint versus marginal" and every chapter that trains a model. The network knows
nothing of diffusion: objectives, samplers and the NELBO take it as any other denoiser callable.

Pre-norm blocks, learned absolute (or rotary) positions, attention through
``torch.nn.functional.scaled_dot_product_attention`` with an optional attention mask (later
chapters pass block-causal masks), no time input by default (Section 3.2.1) and an optional time
embedding to show it does not matter. Sizes come from a frozen config with named presets.

Positions are learned and absolute by default. Rotary embeddings alone are relative: on a fully
masked input every token is the same, every attention output is the same, and every position
gets the same prediction, so the model cannot tell position 1 from position 5. With a prompt
(an unmasked anchor) rotary positions work; ``rotary=True`` is there for that case.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._checks import check_number, check_positive_int
from .files import read_json


@dataclass(frozen=True)
class DenoiserConfig:
    """The size and options of a ``Denoiser``; ``preset`` gives the named sizes of ``PRESETS``."""
    vocab_size: int  # V: every token id the model reads or predicts, the mask included
    max_seq_len: int = 128  # the longest sequence the model accepts
    d_model: int = 64  # width of the residual stream
    n_layers: int = 2  # number of transformer blocks
    n_heads: int = 4  # attention heads; d_model must be divisible by it
    mlp_ratio: int = 4  # hidden width of the MLP is mlp_ratio * d_model
    rotary: bool = False  # rotary (relative) positions instead of learned absolute ones; see below
    time_conditioning: bool = False  # add an embedding of t to every position (not needed: Section 3.2.1)
    dropout: float = 0.0  # dropout on attention weights and residual branches
    tie_embeddings: bool = True  # the output head shares the token embedding matrix

    def __post_init__(self):
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layers", "n_heads", "mlp_ratio"):
            check_positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}) "
                             "into an even head size")
        check_number("dropout", self.dropout, at_least=0, below=1)

    @classmethod
    def preset(cls, name: str, vocab_size: int, max_seq_len: int, **overrides) -> DenoiserConfig:
        """A named size: one of ``PRESETS`` ("toy", "tiny", "small", "base")."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
        return cls(vocab_size=vocab_size, max_seq_len=max_seq_len, **{**PRESETS[name], **overrides})


# Named sizes, from a model that trains in seconds on a CPU to ~100M parameters for a GPU
# (with a 32k vocabulary: 85M in the blocks, 25M in the tied embedding).
PRESETS = {
    "toy": dict(d_model=64, n_layers=2, n_heads=4),  # ~0.1M + embeddings: the toy dataset on a CPU
    "tiny": dict(d_model=128, n_layers=4, n_heads=4),  # ~0.8M: small languages on a CPU
    "small": dict(d_model=384, n_layers=6, n_heads=6),  # ~11M: a laptop GPU or a patient CPU
    "base": dict(d_model=768, n_layers=12, n_heads=12),  # ~85M in the blocks: a GPU
}


def rotary_tables(seq_len: int, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (L, head_dim / 2)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hd/2,)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (L, hd/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs :math:`(x_{2i}, x_{2i+1})` of x (B, H, L, hd) by position-dependent angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, L, hd/2) each
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, L, hd/2, 2)
    return rotated.flatten(-2).type_as(x)  # (B, H, L, hd)


class Attention(nn.Module):
    """Multi-head self-attention with an optional attention mask and rotary positions."""
    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, h, rotary, attn_mask, past=None):
        """Attention of h (B, L, D) over its own keys and, if given, cached ones ``past`` = (k, v),
        each (B, H, L_past, hd) placed before them. Returns the output and h's own (k, v)."""
        B, L, D = h.shape
        q, k, v = self.qkv(h).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, hd)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        # bidirectional unless attn_mask says otherwise (True = may attend)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, L, hd)
        return self.out(y.transpose(1, 2).reshape(B, L, D)), (k, v)  # (B, L, D)


class Block(nn.Module):
    """One pre-norm transformer block: attention and an MLP, each on a residual branch."""
    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        hidden = config.mlp_ratio * config.d_model
        self.mlp = nn.Sequential(nn.Linear(config.d_model, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, config.d_model))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, h, rotary, attn_mask, past=None):
        """The block applied to x (B, L, d_model), with the attention's mask and positions."""
        attended, kv = self.attn(self.norm1(h), rotary, attn_mask, past)
        h = h + self.drop(attended)  # (B, L, D)
        return h + self.drop(self.mlp(self.norm2(h))), kv  # (B, L, D)


class Denoiser(nn.Module):
    """The bidirectional transformer. ``model(x_t)`` returns logits (B, L, V)."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = None if config.rotary else nn.Embedding(config.max_seq_len, config.d_model)
        self.time_mlp = (nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.SiLU(),
                                       nn.Linear(config.d_model, config.d_model))
                         if config.time_conditioning else None)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        if config.rotary:
            cos, sin = rotary_tables(config.max_seq_len, config.d_model // config.n_heads)
            self.register_buffer("rotary_cos", cos, persistent=False)  # (L_max, hd/2)
            self.register_buffer("rotary_sin", sin, persistent=False)  # (L_max, hd/2)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count; with ``non_embedding`` the token (and position) embeddings are left out."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.embed.weight.numel() + (self.positions.weight.numel() if self.positions is not None else 0)
        return total

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        r"""Args:
            x_t: token ids (B, L).
            t: times (B,) in [0, 1]; required with time conditioning, refused without it.
            attn_mask: optional boolean (L, L) or (B, 1, L, L), True where a query may attend
                to a key; None is full bidirectional attention.
            position_ids: the position of each token (L,), each :math:`< \mathtt{max\_seq\_len}`; default
                :math:`0, \dots, L - 1`. Blockwise training feeds a noisy and a clean copy of a sequence side
                by side, both with positions :math:`0, \dots, L/2 - 1`.
        Returns logits (B, L, V) in float32 (or the autocast dtype).
        """
        L = x_t.shape[1] if isinstance(x_t, torch.Tensor) and x_t.ndim == 2 else 0
        if position_ids is None:
            position_ids = torch.arange(L, device=x_t.device) if L else None
        self._check_input(x_t, t, attn_mask, position_ids)
        h = self.embed(x_t)  # (B, L, D)
        if self.positions is not None:
            h = h + self.positions(position_ids)  # (B, L, D)
        if self.time_mlp is not None:
            h = h + self.time_mlp(time_embedding(t, self.config.d_model)).unsqueeze(1)  # (B, 1, D) broadcast
        return self._run(h, position_ids, attn_mask, None)[0]

    def _run(self, h, position_ids, attn_mask, past_kv):
        rotary = (self.rotary_cos[position_ids], self.rotary_sin[position_ids]) if self.config.rotary else None
        new_kv = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, rotary, attn_mask, None if past_kv is None else past_kv[i])  # (B, L, D)
            new_kv.append(kv)
        return self.head(self.norm(h)), new_kv  # (B, L, V), per layer (k, v) of these tokens

    def step(self, x: torch.Tensor, position_ids: torch.Tensor, past_kv: list | None = None,
             attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, list]:
        """Run tokens x (B, L) at ``position_ids`` (L,) attending to cached keys and values of
        earlier tokens (``past_kv``: per layer (k, v), each (B, H, L_past, hd)) and to each other.

        ``attn_mask`` (L, L_past + L), True = may attend; None lets every token see everything.
        Returns the logits (B, L, V) and the per-layer (k, v) of x's own tokens, to append to the
        cache once they are final. Used by the KV-cached semi-autoregressive sampler; no time input.
        """
        if self.config.time_conditioning:
            raise ValueError("step() takes no time input: it is not available with time_conditioning=True")
        self._check_input(x, None, None, position_ids)
        h = self.embed(x)  # (B, L, D)
        if self.positions is not None:
            h = h + self.positions(position_ids)
        return self._run(h, position_ids, attn_mask, past_kv)

    def _check_input(self, x_t, t, attn_mask, position_ids):
        """The inputs of ``forward`` and ``step``: tokens and positions, then time and attention mask."""
        self._check_tokens(x_t, position_ids)
        self._check_time_and_mask(x_t, t, attn_mask)

    def _check_tokens(self, x_t, position_ids):
        c = self.config
        if not isinstance(x_t, torch.Tensor) or x_t.ndim != 2 or x_t.dtype != torch.int64:
            raise ValueError(f"x_t must be a torch.long (int64) tensor of shape (B, L); got "
                             f"{getattr(x_t, 'dtype', type(x_t).__name__)} of shape {tuple(getattr(x_t, 'shape', ()))}")
        if x_t.device != self.embed.weight.device:
            raise ValueError(f"x_t is on {x_t.device} but the model's parameters are on {self.embed.weight.device}; "
                             f"move the tokens to the model's device (x_t.to({str(self.embed.weight.device)!r}))")
        if position_ids.shape != (x_t.shape[1],):
            raise ValueError(f"position_ids must have shape (L,) = ({x_t.shape[1]},); got {tuple(position_ids.shape)}")
        if position_ids.numel() and (position_ids.min() < 0 or position_ids.max() >= c.max_seq_len):
            if x_t.shape[1] > c.max_seq_len:
                raise ValueError(f"x_t has length {x_t.shape[1]}, longer than the model's "
                                 f"max_seq_len = {c.max_seq_len}")
            raise ValueError(f"position_ids must lie in [0, {c.max_seq_len - 1}] (max_seq_len = {c.max_seq_len})")
        if x_t.numel() and (x_t.min() < 0 or x_t.max() >= c.vocab_size):
            raise ValueError(f"x_t holds ids outside [0, {c.vocab_size - 1}] (the model's vocab_size = {c.vocab_size})")

    def _check_time_and_mask(self, x_t, t, attn_mask):
        if self.config.time_conditioning and t is None:
            raise ValueError("t is required: this model was configured with time_conditioning=True")
        if not self.config.time_conditioning and t is not None:
            raise ValueError("t was given but the model has time_conditioning=False (it takes no time input)")
        if t is not None and tuple(t.shape) != (x_t.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},); got {tuple(t.shape)}")
        if attn_mask is not None and attn_mask.shape[-2:] != (x_t.shape[1], x_t.shape[1]):
            raise ValueError(f"attn_mask must end in (L, L) = ({x_t.shape[1]}, {x_t.shape[1]}); "
                             f"got {tuple(attn_mask.shape)}")


def time_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of times t (B,) in [0, 1], scaled by 1000: (B, dim)."""
    half = dim // 2
    index = torch.arange(half, dtype=torch.float32, device=t.device)  # (dim/2,)
    freqs = torch.exp(-math.log(max_period) * index / half)  # (dim/2,)
    args = 1000 * t.float().unsqueeze(-1) * freqs  # (B, dim/2)
    return torch.cat([args.cos(), args.sin()], dim=-1)  # (B, dim)


def save_denoiser(model: Denoiser, directory: str | pathlib.Path) -> pathlib.Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
    from safetensors.torch import save_model

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(dataclasses.asdict(model.config), indent=2))
    save_model(model, str(directory / "model.safetensors"))
    return directory


def load_denoiser(directory: str | pathlib.Path, device: str | torch.device = "cpu") -> Denoiser:
    """Rebuild a model saved by ``save_denoiser``; a weights file that does not match the config
    is an error that says what differs."""
    from safetensors.torch import load_model

    directory = pathlib.Path(directory)
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"directory {str(directory)!r} has no {path.name}; save with save_denoiser")
    model = Denoiser(_read_config(config_path))
    _check_shapes(weights_path, config_path, model)
    missing, unexpected = load_model(model, str(weights_path), strict=False, device=str(device))
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not match {config_path}: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    return model.to(device)


def _read_config(path: pathlib.Path) -> DenoiserConfig:
    """The ``DenoiserConfig`` in a ``config.json``; errors name the file."""
    fields = read_json(path, "a DenoiserConfig as JSON")
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: a model config is a JSON object; got {type(fields).__name__}")
    unknown = set(fields) - {f.name for f in dataclasses.fields(DenoiserConfig)}
    if unknown:
        raise ValueError(f"{path} has unknown fields {sorted(unknown)}")
    try:
        return DenoiserConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def _check_shapes(weights_path: pathlib.Path, config_path: pathlib.Path, model: Denoiser) -> None:
    """Raise unless every tensor in the safetensors file has the shape ``model`` (built from the config) expects."""
    from safetensors import safe_open

    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            stored = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as error:  # safetensors raises its own error type for a damaged file
        raise ValueError(f"{weights_path}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    wrong = [f"{name}: file {shape}, config {expected[name]}" for name, shape in stored.items()
             if name in expected and shape != expected[name]]
    if wrong:
        raise ValueError(f"{weights_path} does not match {config_path}: shapes differ for " + "; ".join(wrong[:5]))
