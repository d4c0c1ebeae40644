"""NDT1-style backbone with per-session stitching (the MtM and NDT baseline model).

One token per time bin. Sessions record different neurons, so each session gets its
own linear *stitcher* in (N_session -> d_model) and out (d_model -> N_session log-rates);
everything between them is shared across sessions, which is what pretraining on many
animals is meant to improve. A learned session token and (for MtM) a prompt token
naming the masking scheme are prepended to the sequence; a learned time embedding
marks bin position. Attention uses ``F.scaled_dot_product_attention`` (flash / memory
efficient kernels on GPU), with ``is_causal`` for the causal scheme: the prefix tokens
come first, so every bin still sees them.

New sessions (held-out animals) are added with :meth:`NDT.add_session`; fine-tuning
first trains only their stitchers and session token (:func:`session_parameter_filter`)
so the shared transformer is not disturbed by randomly initialised read-in weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class NDTConfig:
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    dropout: float
    #: Longest window (bins) the learned time embedding covers.
    max_bins: int
    #: Number of prompt tokens (0: no prompt, the NDT baseline).
    n_prompts: int = 0
    #: Dropout on attention weights. Separate from ``dropout`` because on CPU a non-zero
    #: value pushes SDPA onto its unfused math path (measured 3.5x slower per block at
    #: the tiny size), so the CPU preset regularises with residual dropout only.
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if min(self.d_model, self.n_layers, self.n_heads, self.d_ff, self.max_bins) < 1:
            raise ValueError(f"model sizes must be >= 1: {self}")


#: ``tiny``: CPU tests and the default workflow (width 64: at 32, 1500 pretraining steps
#: left MtM's gain over scratch within seed noise on the default data).
#: ``published``: the MtM/NDT1 setting (5 layers, width 512, 8 heads, MLP 1024, dropout
#: 0.4, 100-bin trials).
PRESETS: dict[str, NDTConfig] = {
    "tiny": NDTConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128, dropout=0.1, max_bins=128),
    "published": NDTConfig(
        d_model=512, n_layers=5, n_heads=8, d_ff=1024, dropout=0.4, max_bins=128, attn_dropout=0.4
    ),
}


#: Factor on the default (Kaiming-uniform) init of new read-out weights.
READOUT_INIT_SCALE = 0.1
#: Lowest mean count per bin :meth:`NDT.init_rates` starts a read-out at.
RATE_FLOOR = 1e-3


def make_config(preset: str, **overrides: int | float) -> NDTConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown NDT preset {preset!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, causal: bool) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block (stable without the warm-up tricks post-norm needs)."""

    def __init__(self, config: NDTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config.d_model, config.n_heads, config.attn_dropout)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, causal: bool) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), causal))
        return x + self.drop(self.mlp(self.norm2(x)))


def _key(session: str) -> str:
    # ModuleDict keys may not contain dots; session ids are otherwise kept readable.
    return session.replace(".", "_")


class NDT(nn.Module):
    """Masked-modelling transformer over time bins of one session's population."""

    def __init__(self, config: NDTConfig, sessions: dict[str, int]) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.stitch_in = nn.ModuleDict()
        self.stitch_out = nn.ModuleDict()
        self.session_token = nn.ParameterDict()
        self.n_neurons: dict[str, int] = {}
        self.time_embed = nn.Embedding(config.max_bins, d)
        # nn.Embedding draws N(0, 1): next to softsign'd sparse counts (|x| << 1) the
        # position would drown the activity after the first LayerNorm and the model
        # learns it only slowly. GPT-style 0.02 keeps activity the dominant signal.
        nn.init.normal_(self.time_embed.weight, std=0.02)
        self.prompt_token = nn.Embedding(config.n_prompts, d) if config.n_prompts else None
        self.in_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(d)
        for session, n in sessions.items():
            self.add_session(session, n)

    def add_session(self, session: str, n_neurons: int, mean_counts: Tensor | None = None) -> None:
        """New stitchers and session token for a session (e.g. a held-out animal).

        ``mean_counts`` (per-neuron mean count per bin on training data) starts the
        read-out at the right rates; see :meth:`init_rates`.
        """
        key = _key(session)
        if key in self.stitch_in:
            raise ValueError(f"session {session!r} already has stitchers")
        if n_neurons < 1:
            raise ValueError(f"session {session!r} needs >= 1 neuron, got {n_neurons}")
        d = self.config.d_model
        device = self.time_embed.weight.device
        self.stitch_in[key] = nn.Linear(n_neurons, d).to(device)
        self.stitch_out[key] = nn.Linear(d, n_neurons).to(device)
        with torch.no_grad():
            # Small read-out weights: a new session starts near its bias (the mean rates
            # of init_rates, the bits/spike null) instead of at random log-rate noise.
            self.stitch_out[key].weight.mul_(READOUT_INIT_SCALE)
        self.session_token[key] = nn.Parameter(torch.randn(d, device=device) * 0.02)
        self.n_neurons[session] = n_neurons
        if mean_counts is not None:
            self.init_rates(session, mean_counts)

    def init_rates(self, session: str, mean_counts: Tensor) -> None:
        """Set a session's read-out bias to the log of each neuron's mean count per bin.

        A fresh ``nn.Linear`` read-out predicts log-rates near 0, i.e. ~1 spike per bin,
        while real and synthetic neurons fire ~0.01-0.3 spikes per 20 ms bin. Short
        (CPU-sized) runs then spend their budget learning the per-neuron offset and end
        with rates several times too high, which Poisson bits/spike punishes hard
        (scores around -1). Starting from the per-neuron mean is the null model of
        bits/spike, so training starts at bps ~ 0 and only has to learn modulation (the
        same initialisation NDT/LFADS-style read-outs use). Rates are floored at
        :data:`RATE_FLOOR` so silent training neurons do not start at log(0).
        """
        key = _key(session)
        out = self.stitch_out[key]
        mean = torch.as_tensor(mean_counts, dtype=out.bias.dtype).flatten()
        if mean.numel() != self.n_neurons[session]:
            raise ValueError(
                f"session {session!r} has {self.n_neurons[session]} neurons, "
                f"got {mean.numel()} mean counts"
            )
        with torch.no_grad():
            out.bias.copy_(torch.log(mean.clamp_min(RATE_FLOOR)).to(out.bias.device))

    @property
    def sessions(self) -> list[str]:
        return list(self.n_neurons)

    def encode(
        self, activity: Tensor, session: str, prompt: int | None = None, causal: bool = False
    ) -> Tensor:
        """Per-bin latents [B, T, d] of (already masked) activity [B, T, N_session]."""
        key = _key(session)
        if key not in self.stitch_in:
            raise KeyError(f"model has no stitcher for session {session!r}; add_session first")
        b, t, n = activity.shape
        if n != self.n_neurons[session]:
            raise ValueError(f"session {session!r} has {self.n_neurons[session]} neurons, got {n}")
        if t > self.config.max_bins:
            raise ValueError(f"window of {t} bins exceeds max_bins={self.config.max_bins}")
        x = F.softsign(self.stitch_in[key](activity))
        x = x + self.time_embed(torch.arange(t, device=activity.device))
        prefix = [self.session_token[key].expand(b, 1, -1)]
        if prompt is not None:
            if self.prompt_token is None:
                raise ValueError("this model has no prompt tokens (n_prompts=0)")
            index = torch.full((b, 1), prompt, dtype=torch.long, device=activity.device)
            prefix.append(self.prompt_token(index))
        x = self.in_drop(torch.cat([*prefix, x], dim=1))
        for block in self.blocks:
            x = block(x, causal)
        return self.norm(x[:, len(prefix) :])

    def forward(
        self, activity: Tensor, session: str, prompt: int | None = None, causal: bool = False
    ) -> Tensor:
        """Per-neuron outputs [B, T, N_session]: log-rates (log expected counts per bin)
        on spikes, z-scored dF/F on calcium (the objective decides the link)."""
        return self.stitch_out[_key(session)](self.encode(activity, session, prompt, causal))

    def describe(self) -> dict:
        """What :func:`build_from_description` needs to rebuild this model for a state dict."""
        return {"config": asdict(self.config), "sessions": dict(self.n_neurons)}


def build_from_description(description: dict) -> NDT:
    return NDT(NDTConfig(**description["config"]), dict(description["sessions"]))


def session_parameter_filter(sessions: Sequence[str]) -> Callable[[str], bool]:
    """Parameter-name filter selecting only the stitchers and tokens of ``sessions``."""
    keys = {_key(s) for s in sessions}

    def selected(name: str) -> bool:
        parts = name.split(".")
        return parts[0] in ("stitch_in", "stitch_out", "session_token") and parts[1] in keys

    return selected


def count_parameters(size: str) -> int:
    """Backbone parameters of a size preset: time embedding, transformer blocks, final norm.

    Stitchers and session tokens grow with the sessions, not the preset, and MtM's few
    prompt embeddings are a per-objective addition; both are left out, as the other
    backbones leave out their per-dataset tables. These are what each bin token passes
    through, the count the budget table's FLOPs estimate needs.
    """
    return sum(p.numel() for p in NDT(make_config(size), {}).parameters())
