"""CalM's dual-axis autoregressive transformer over a [time, neuron] grid of discrete codes.

Design choices (and why):

- *Two axes, alternating.* Each layer is a neuron block then a time block. Attending over
  all ``N * T`` tokens at once costs ``O((N T)^2)`` per layer; factorising into attention
  across neurons within one time step (``[B*T, N, D]``) and across time within one neuron
  (``[B*N, T, D]``) costs ``O(N T^2 + T N^2)`` and still lets information reach any
  (neuron, step) pair in two layers, as in axial attention.
- *No order among neurons.* The neuron axis has no positional encoding, so the network is
  permutation-equivariant over neurons: ROIs of a new animal have no canonical order, and
  identity enters only through the per-unit embedding, which moves with its neuron.
- *Causal, rotary time.* The time block uses ``is_causal`` attention with rotary position
  on queries/keys: relative offsets generalise to rollouts longer than the training
  context, and causality makes every output at step ``t`` a function of codes ``<= t``,
  which is what next-token training and autoregressive forecasting need.
- *Padding.* Sessions differ in N; padded neurons are masked as *keys* of the neuron
  block (they still compute outputs, which the losses ignore), so a session's outputs do
  not depend on what it is batched with.
- *Optional value input.* With ``value_patch`` P, a token is its code embedding plus a
  linear embedding of the P frames the code summarises, so quantisation does not hide
  the exact level of the latest frames from the forecast; it enters per token, so the
  time axis stays causal.
- *Masks as arguments.* ``forward`` takes an input-token mask (masked tokens get one
  learned ``mask_embed`` instead of their code and frames, and keep their unit and
  session embedding) and whether the time axis is causal, so masked and autoregressive
  objectives train the same network and differ only in their masks and loss; with no
  token masked, no prompt and ``causal=True`` the output is CalM's exactly. The mask and
  prompt tables exist only when the config asks for them (``masked_input``, ``prompts``),
  so CalM's model files are unchanged.
- *One attention kernel.* ``F.scaled_dot_product_attention`` everywhere: flash / memory-
  efficient kernels under bf16 autocast on CUDA, the math kernel in fp32 on CPU, same code.

:class:`RotaryEmbedding` and :class:`TimeBlock` are also the building blocks of the
tokenizer's per-neuron encoder and decoder (:mod:`neurossl.models.tokenizer`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class DualAxisConfig:
    vocab_size: int
    n_units: int
    n_sessions: int
    width: int = 32
    layers: int = 2
    heads: int = 2
    mlp_ratio: int = 2
    dropout: float = 0.0
    #: Frames per token of the optional continuous input (0: the codes alone).
    value_patch: int = 0
    #: A learned embedding for masked input tokens (masked-prediction objectives).
    masked_input: bool = False
    #: Learned prompt embeddings added to every token (MtM's scheme prompts; 0: none).
    prompts: int = 0

    def __post_init__(self) -> None:
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(
                f"dual-axis width {self.width} must split into {self.heads} heads of even size"
            )
        for name in ("vocab_size", "n_units", "n_sessions", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"DualAxisConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


#: Model presets. ``tiny`` (one layer: a step costs in proportion to layers x tokens)
#: keeps a CPU workflow at seconds per stage; ``base`` is the realistic size for GPU runs
#: (12.8 M parameters with a 256-code vocabulary).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"width": 32, "layers": 1, "heads": 2, "mlp_ratio": 2},
    "small": {"width": 128, "layers": 4, "heads": 4, "mlp_ratio": 4},
    "base": {"width": 256, "layers": 8, "heads": 8, "mlp_ratio": 4},
}
#: Every backbone names its real GPU size ``published`` (one ``sizes: [published]`` in a
#: real-data config); for the dual-axis model that is ``base``.
PRESETS["published"] = PRESETS["base"]


def preset(name: str) -> dict[str, int]:
    if name not in PRESETS:
        raise ValueError(f"unknown dual-axis size {name!r}; expected one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


class RotaryEmbedding(nn.Module):
    """Rotary position (RoFormer) for one sequence axis; applied to queries and keys."""

    def __init__(self, head_dim: int, base: float = 10_000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _angles(self, length: int, x: Tensor) -> tuple[Tensor, Tensor]:
        pos = torch.arange(length, device=x.device, dtype=torch.float32)
        angles = pos[:, None] * self.inv_freq[None, :]
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)

    def forward(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys [..., L, head_dim] by their position along L."""
        cos, sin = self._angles(q.shape[-2], q)

        def rotate(x: Tensor) -> Tensor:
            x1, x2 = x[..., 0::2], x[..., 1::2]
            return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

        return rotate(q), rotate(k)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        causal: bool,
        rotary: RotaryEmbedding | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        """``x`` [S, L, D]; ``key_mask`` bool [S, L], True for keys that may be attended."""
        s, length, width = x.shape
        q, k, v = self.qkv(x).view(s, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = rotary(q, k)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(y.transpose(1, 2).reshape(s, length, width))


class _Block(nn.Module):
    """Pre-norm attention + MLP along one axis of a [S, L, D] tensor."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = _Attention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(),
            nn.Linear(mlp_ratio * width, width),
            nn.Dropout(dropout),
        )

    def forward(
        self,
        x: Tensor,
        causal: bool,
        rotary: RotaryEmbedding | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        x = x + self.attn(self.norm1(x), causal, rotary, key_mask)
        return x + self.mlp(self.norm2(x))


class TimeBlock(nn.Module):
    """Rotary self-attention along a sequence axis, causal or bidirectional."""

    def __init__(
        self, width: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0, causal: bool = True
    ) -> None:
        super().__init__()
        self.block = _Block(width, heads, mlp_ratio, dropout)
        self.rotary = RotaryEmbedding(width // heads)
        self.causal = causal

    def forward(self, x: Tensor, causal: bool | None = None) -> Tensor:
        """``x`` [S, L, D] with L the time axis; ``causal`` None: the block's own setting."""
        return self.block(x, self.causal if causal is None else causal, self.rotary)


class NeuronBlock(nn.Module):
    """Bidirectional attention among the neurons of one time step, without positions."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.block = _Block(width, heads, mlp_ratio, dropout)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """``x`` [S, N, D]; ``key_mask`` bool [S, N] (None: every neuron is real)."""
        return self.block(x, False, None, key_mask)


class DualAxisTransformer(nn.Module):
    """Codes [B, T, N] -> hidden states [B, T, N, D] and next-code logits [B, T, N, K].

    Under the default causal, unmasked call the logits at step ``t`` are the prediction
    of the code at ``t + 1``.
    """

    def __init__(self, config: DualAxisConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.token_embed = nn.Embedding(c.vocab_size, c.width)
        self.unit_embed = nn.Embedding(c.n_units, c.width)
        self.session_embed = nn.Embedding(c.n_sessions, c.width)
        # Named *_embed so the shared optimiser exempts them from weight decay: decaying
        # the embeddings of units that a stage never sees would only shrink them.
        for table in (self.token_embed, self.unit_embed, self.session_embed):
            nn.init.normal_(table.weight, std=0.02)
        self.neuron_blocks = nn.ModuleList(
            NeuronBlock(c.width, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.layers)
        )
        self.time_blocks = nn.ModuleList(
            TimeBlock(c.width, c.heads, c.mlp_ratio, c.dropout, causal=True)
            for _ in range(c.layers)
        )
        self.norm = nn.LayerNorm(c.width)
        self.readout = nn.Linear(c.width, c.vocab_size)
        self.value_in = nn.Linear(c.value_patch, c.width) if c.value_patch else None
        self.mask_embed = nn.Parameter(torch.randn(c.width) * 0.02) if c.masked_input else None
        self.prompt_embed = nn.Embedding(c.prompts, c.width) if c.prompts else None
        if self.prompt_embed is not None:
            nn.init.normal_(self.prompt_embed.weight, std=0.02)

    def embed(
        self,
        codes: Tensor,
        unit: Tensor,
        session: Tensor,
        values: Tensor | None = None,
        token_mask: Tensor | None = None,
        prompt: int | None = None,
    ) -> Tensor:
        """Token (+ value) + unit + session (+ prompt) embedding, [B, T, N, D].

        ``values`` [B, T, N, value_patch] are the frames each code summarises; required
        exactly when the config has ``value_patch``. ``token_mask`` bool [B, T, N]: tokens
        whose code and frames are replaced by the mask embedding.
        """
        if (values is None) != (self.value_in is None):
            raise ValueError(
                f"values must be given iff value_patch > 0 ({self.config.value_patch})"
            )
        tokens = self.token_embed(codes)
        if self.value_in is not None:
            tokens = tokens + self.value_in(values)
        if token_mask is not None:
            if self.mask_embed is None:
                raise ValueError("a token mask needs DualAxisConfig(masked_input=True)")
            tokens = torch.where(token_mask[..., None], self.mask_embed.to(tokens.dtype), tokens)
        if prompt is not None:
            if self.prompt_embed is None or not 0 <= prompt < self.config.prompts:
                raise ValueError(f"prompt {prompt} needs DualAxisConfig(prompts > {prompt})")
            tokens = tokens + self.prompt_embed.weight[prompt]
        return tokens + self.unit_embed(unit)[:, None] + self.session_embed(session)[:, None, None]

    def hidden(self, x: Tensor, neuron_mask: Tensor | None, causal: bool = True) -> Tensor:
        """Run the blocks on embedded tokens [B, T, N, D]; returns normalised states.

        ``causal`` False lets every time step attend to the whole window (masked
        prediction); True is CalM's next-token setting.
        """
        b, t, n, d = x.shape
        key_mask = None
        if neuron_mask is not None:
            key_mask = neuron_mask[:, None, :].expand(b, t, n).reshape(b * t, n)
        for neuron_block, time_block in zip(self.neuron_blocks, self.time_blocks, strict=True):
            x = neuron_block(x.reshape(b * t, n, d), key_mask).view(b, t, n, d)
            x = x.transpose(1, 2).reshape(b * n, t, d)
            x = time_block(x, causal).view(b, n, t, d).transpose(1, 2)
        return self.norm(x)

    def forward(
        self,
        codes: Tensor,
        unit: Tensor,
        session: Tensor,
        neuron_mask: Tensor | None = None,
        values: Tensor | None = None,
        *,
        token_mask: Tensor | None = None,
        causal: bool = True,
        prompt: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Hidden states and code logits. With the defaults (no mask, causal, no prompt)
        the logits at ``t`` predict the code at ``t + 1``; a masked objective reads the
        logits at a masked token as its own code."""
        x = self.embed(codes, unit, session, values, token_mask, prompt)
        h = self.hidden(x, neuron_mask, causal)
        return h, self.readout(h)


def count_parameters(size: str) -> int:
    """Backbone parameters of a size preset: the neuron and time blocks and the final norm.

    Embedding tables and the code read-out grow with units, sessions and the tokenizer's
    vocabulary, not with the size preset, so they are left out (as the Perceiver's count
    leaves out its unit embeddings); these are the parameters each token passes through.
    """
    model = DualAxisTransformer(
        DualAxisConfig(vocab_size=1, n_units=1, n_sessions=1, **preset(size))
    )
    per_dataset = ("token_embed.", "unit_embed.", "session_embed.", "readout.", "value_in.")
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(per_dataset))
