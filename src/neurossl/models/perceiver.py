"""POYO+-style Perceiver backbone for calcium traces and binned spike counts (POYO-SSL).

One input token per (neuron, ``frames_per_token`` consecutive samples; 1 is POYO+'s
token per sample): a learned embedding of the unit modulated by an embedding of its
(z-scored) dF/F values, ``unit * (1 + value)``, refined by a per-token feed-forward
layer (see :meth:`Perceiver.encode` for why not ``unit + value``). Tokens carry their
time, used only through rotary attention (:mod:`neurossl.models.rotary`), so nothing
ties the backbone to a neuron count or order. A fixed set of latent tokens per time
chunk (``latent_step`` seconds, each chunk's latents stamped with the chunk centre)
cross-attends to the tokens of the window (all of them, or those within ``reach``
seconds), self-attention layers mix the latents, and output queries (session embedding
+ task embedding, plus the unit embedding for per-neuron reconstruction) read out by
cross-attending to the latents near their own timestamps. Each task has its own linear
head; a window-label head reads one query per chunk side by side, so it is tied to the
window length it was fitted on (a clear error otherwise).

Why this shape:

- Sessions differ in neurons. Padded neurons are dropped with a boolean key mask in
  the encoder's attention (``neuron_mask``), so a window gives the same output alone or
  padded in a mixed batch, and one batch mixes sessions without loops over neurons.
- New animals need new unit/session embeddings and nothing else at first.
  :class:`GrowingEmbedding` keeps each added block of rows as its own parameter, so
  unit identification trains the new block while the old rows and every other weight
  stay bit-identical (they are simply not handed to the optimiser).
- The batch's ``unit`` and ``session`` entries must be *rows of this model's tables*;
  the method maps dataset vocabulary ids to rows (:mod:`neurossl.methods.poyo_family`).

All attention goes through ``F.scaled_dot_product_attention`` (flash / memory-efficient
kernels on CUDA under the engine's bf16 autocast, plain fp32 on CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.models.rotary import RotaryTime, rotate

#: The built-in task: per-(neuron, time) value queries used by masked reconstruction.
RECONSTRUCTION = "reconstruction"
#: Task kinds: one label per window, one value per time bin, one value per token.
CLASSIFICATION = "classification"
PER_BIN = "per_bin"
TASK_KINDS = (CLASSIFICATION, PER_BIN, RECONSTRUCTION)
_INIT_STD = 0.02
#: Unit embeddings start on the scale of the value features (a z-scored value through
#: ``value_embed``), not at ``_INIT_STD``: a token must say *which* neuron is active from
#: the first step, or the encoder sees an anonymous bag of values and decoding stays at
#: chance within a short fine-tuning budget.
_UNIT_INIT_STD = 1.0

#: Unit complex numbers [B, 1, L, n_freq] from :class:`RotaryTime`.
Rotation = Tensor


@dataclass(frozen=True)
class PerceiverConfig:
    dim: int
    #: Self-attention layers over the latents.
    depth: int
    heads: int
    #: Latent tokens per time chunk.
    latents_per_chunk: int
    #: Chunk length in seconds; a 2 s window at 0.25 s has 8 chunks.
    latent_step: float = 0.25
    ff_mult: int = 2
    dropout: float = 0.1
    #: Shortest / longest rotary period in seconds: two frames at 30 Hz (shorter periods
    #: alias to pseudo-random angles between neighbouring frames) to beyond a window.
    rope_t_min: float = 0.066
    rope_t_max: float = 8.0
    #: Consecutive samples of one neuron per input token (1 = POYO+'s token per sample).
    frames_per_token: int = 1
    #: Largest time difference (s) across which the encoder's latents gather tokens and
    #: output queries read latents; None is POYO's global cross-attention. See
    #: :meth:`Perceiver.encode` for why local.
    reach: float | None = None

    def __post_init__(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise ValueError(
                f"PerceiverConfig: dim={self.dim} must split into {self.heads} heads of a "
                "multiple of 4 features (half of each head is rotated)"
            )
        sizes = (self.dim, self.depth, self.heads, self.latents_per_chunk, self.ff_mult)
        if min(*sizes, self.frames_per_token) < 1:
            raise ValueError(f"PerceiverConfig sizes must be >= 1: {self}")
        if self.latent_step <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"PerceiverConfig needs latent_step > 0, 0 <= dropout < 1: {self}")
        if self.reach is not None and self.reach < self.latent_step / 2:
            raise ValueError(
                f"PerceiverConfig: reach={self.reach} must be >= latent_step/2 "
                f"({self.latent_step / 2}) so every chunk's latents see their own tokens"
            )


#: ``tiny``/``small``/``medium``: the CPU-sized scaling sweep (backbones of about 35k,
#: 100k and 460k parameters; no dropout, since they train for a few hundred steps).
#: They pool 3 samples per token (0.1 s at 30 Hz; 3x fewer tokens, so 3x more steps in
#: the same time) and gather locally (``reach`` 0.25 s): without both, decoding stayed at
#: chance within the CPU budget of the default workflow.
#: ``published_s``/``published_l``: the POYO-SSL shapes (width 64, depth 6, 16 latents;
#: width 128, depth 24, 32 latents). Head counts are not given in the paper summary;
#: 4 and 8 heads keep 16 features per head.
_CPU_FRAMES = 3


def _cpu_preset(dim: int, depth: int, heads: int, latents_per_chunk: int) -> PerceiverConfig:
    """A CPU size: no dropout, pooled tokens and local gathering, for the reasons above."""
    return PerceiverConfig(
        dim=dim,
        depth=depth,
        heads=heads,
        latents_per_chunk=latents_per_chunk,
        dropout=0.0,
        frames_per_token=_CPU_FRAMES,
        reach=0.25,
    )


PRESETS: dict[str, PerceiverConfig] = {
    "tiny": _cpu_preset(dim=32, depth=2, heads=2, latents_per_chunk=8),
    "small": _cpu_preset(dim=48, depth=3, heads=3, latents_per_chunk=8),
    "medium": _cpu_preset(dim=96, depth=4, heads=6, latents_per_chunk=16),
    "published_s": PerceiverConfig(dim=64, depth=6, heads=4, latents_per_chunk=16),
    "published_l": PerceiverConfig(dim=128, depth=24, heads=8, latents_per_chunk=32),
}
#: Every backbone names its real GPU size ``published``, so one ``sizes: [published]``
#: in a real-data config trains each family at its real size.
PRESETS["published"] = PRESETS["published_l"]


def make_config(preset: str, **overrides: Any) -> PerceiverConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown Perceiver size {preset!r}; expected one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


class GrowingEmbedding(nn.Module):
    """An embedding table whose rows come in blocks, one parameter per block.

    ``grow`` appends a block; training only that block (by parameter name) cannot
    change earlier rows, not even through weight decay or optimiser state.
    """

    def __init__(self, n_rows: int, dim: int, init_std: float = _INIT_STD) -> None:
        super().__init__()
        self.dim, self.init_std = dim, init_std
        self.blocks = nn.ParameterList()
        self.grow(n_rows)

    def grow(self, n_new: int) -> str:
        """Append ``n_new`` rows; returns the new block's parameter name (relative)."""
        if n_new < 1:
            raise ValueError(f"an embedding block needs >= 1 row, got {n_new}")
        self.blocks.append(nn.Parameter(torch.randn(n_new, self.dim) * self.init_std))
        return f"blocks.{len(self.blocks) - 1}"

    @property
    def block_sizes(self) -> list[int]:
        return [int(b.shape[0]) for b in self.blocks]

    @property
    def num_embeddings(self) -> int:
        return sum(self.block_sizes)

    def forward(self, index: Tensor) -> Tensor:
        table = self.blocks[0] if len(self.blocks) == 1 else torch.cat(list(self.blocks))
        return F.embedding(index, table)


class RotaryAttention(nn.Module):
    """Multi-head attention with rotary time on queries and keys.

    With ``rotate_value`` the values are rotated by their key time and the output
    rotated back by the query time, so what a query gathers is expressed relative to
    its own time (POYO's choice for the encoder and the latent layers).
    """

    def __init__(self, dim: int, heads: int, dropout: float, rotate_value: bool) -> None:
        super().__init__()
        self.heads, self.dropout, self.rotate_value = heads, dropout, rotate_value
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        x_rot: Rotation,
        context: Tensor,
        context_rot: Rotation,
        context_mask: Tensor | None,
    ) -> Tensor:
        b, n_q, d = x.shape
        n_k, h = context.shape[1], self.heads
        q = self.to_q(x).view(b, n_q, h, d // h).transpose(1, 2)
        k, v = self.to_kv(context).view(b, n_k, 2, h, d // h).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        q, k = rotate(q, x_rot), rotate(k, context_rot)
        if self.rotate_value:
            v = rotate(v, context_rot)
        # Masks are [B, K] (per key) or [B, Q, K] (per query and key); broadcast over heads.
        mask = None
        if context_mask is not None:
            mask = (
                context_mask[:, None, None, :] if context_mask.dim() == 2 else context_mask[:, None]
            )
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        if self.rotate_value:
            y = rotate(y, x_rot, inverse=True)
        return self.out(y.transpose(1, 2).reshape(b, n_q, d))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim)
        )


class CrossBlock(nn.Module):
    """Pre-norm cross-attention + feed-forward: queries gather from a context."""

    def __init__(self, config: PerceiverConfig, rotate_value: bool) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(config.dim)
        self.norm_context = nn.LayerNorm(config.dim)
        self.attn = RotaryAttention(config.dim, config.heads, config.dropout, rotate_value)
        self.norm_ff = nn.LayerNorm(config.dim)
        self.ff = FeedForward(config.dim, config.ff_mult, config.dropout)

    def forward(
        self,
        x: Tensor,
        x_rot: Rotation,
        context: Tensor,
        context_rot: Rotation,
        mask: Tensor | None,
    ) -> Tensor:
        x = x + self.attn(self.norm_q(x), x_rot, self.norm_context(context), context_rot, mask)
        return x + self.ff(self.norm_ff(x))


class SelfBlock(nn.Module):
    def __init__(self, config: PerceiverConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.attn = RotaryAttention(config.dim, config.heads, config.dropout, rotate_value=True)
        self.norm_ff = nn.LayerNorm(config.dim)
        self.ff = FeedForward(config.dim, config.ff_mult, config.dropout)

    def forward(self, x: Tensor, rot: Rotation) -> Tensor:
        y = self.norm(x)
        x = x + self.attn(y, rot, y, rot, None)
        return x + self.ff(self.norm_ff(x))


class Perceiver(nn.Module):
    """The backbone plus its task heads; see the module docstring for the data flow.

    ``forward(batch, tasks, token_mask)`` returns one tensor per task: logits [B, C]
    (classification), values [B, T] (per-bin regression) or [B, T, N] (reconstruction).
    ``token_mask`` [B, T, N] marks tokens whose value is hidden behind the mask token.
    """

    def __init__(self, config: PerceiverConfig, n_units: int, n_sessions: int) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.value_embed = nn.Linear(config.frames_per_token, d)
        self.mask_token = nn.Parameter(torch.randn(d) * _INIT_STD)
        self.token_norm = nn.LayerNorm(d)
        self.token_ff = FeedForward(d, config.ff_mult, config.dropout)
        self.latent_token = nn.Parameter(torch.randn(config.latents_per_chunk, d) * _INIT_STD)
        self.unit_embed = GrowingEmbedding(n_units, d, _UNIT_INIT_STD)
        self.session_embed = GrowingEmbedding(n_sessions, d)
        self.rotary = RotaryTime(d // config.heads, config.rope_t_min, config.rope_t_max)
        self.encoder = CrossBlock(config, rotate_value=True)
        self.latent_layers = nn.ModuleList(SelfBlock(config) for _ in range(config.depth))
        self.decoder = CrossBlock(config, rotate_value=False)
        self.out_norm = nn.LayerNorm(d)
        self.task_embed = nn.ParameterDict()
        self.heads = nn.ModuleDict()
        self.task_specs: dict[str, tuple[str, int, int]] = {}
        self.add_task(RECONSTRUCTION, RECONSTRUCTION, config.frames_per_token)

    # --- vocabulary and tasks ---

    def extend_units(self, n_new: int) -> str:
        """Add ``n_new`` unit rows (after the existing ones); returns their parameter name."""
        return "unit_embed." + self.unit_embed.grow(n_new)

    def extend_sessions(self, n_new: int) -> str:
        """Add ``n_new`` session rows; returns their parameter name."""
        return "session_embed." + self.session_embed.grow(n_new)

    def add_task(self, name: str, kind: str, n_out: int, n_slots: int = 1) -> None:
        """Register a task's embedding and head; re-adding the same spec is a no-op.

        ``n_slots`` (classification only): latent chunks per window, each read by its own
        query; the head sees their outputs side by side, so it can weigh *when* in a
        trial-aligned window something happened (see :meth:`_read_out`).
        """
        if kind not in TASK_KINDS:
            raise ValueError(f"task {name!r}: unknown kind {kind!r}; expected {TASK_KINDS}")
        spec = (kind, n_out, n_slots)
        if name in self.task_specs:
            if self.task_specs[name] != spec:
                raise ValueError(
                    f"task {name!r} is registered as {self.task_specs[name]}, not {spec}"
                )
            return
        if n_out < 1 or n_slots < 1 or (n_slots > 1 and kind != CLASSIFICATION):
            raise ValueError(
                f"task {name!r}: needs n_out >= 1 and n_slots >= 1 (> 1 only for "
                f"classification), got n_out={n_out}, n_slots={n_slots}"
            )
        self.task_specs[name] = spec
        self.task_embed[name] = nn.Parameter(torch.randn(self.config.dim) * _INIT_STD)
        self.heads[name] = nn.Linear(self.config.dim * n_slots, n_out)

    def set_task(self, name: str, kind: str, n_out: int, n_slots: int = 1) -> None:
        """Keep a registered head of the same spec (a pretrained one); else a fresh one."""
        if self.task_specs.get(name, (kind, n_out, n_slots)) != (kind, n_out, n_slots):
            del self.task_specs[name], self.task_embed[name], self.heads[name]
        self.add_task(name, kind, n_out, n_slots)

    def chunks_per_window(self, time: Tensor) -> int:
        """Latent chunks of windows sampled at ``time`` [B, T] (``n_slots`` of a window task)."""
        return self._latent_times(time).shape[1] // self.config.latents_per_chunk

    def spec(self) -> dict[str, Any]:
        """Everything but the weights needed to rebuild this model (see :meth:`from_spec`)."""
        return {
            "config": asdict(self.config),
            "unit_blocks": self.unit_embed.block_sizes,
            "session_blocks": self.session_embed.block_sizes,
            "tasks": {name: list(spec) for name, spec in self.task_specs.items()},
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Perceiver:
        try:
            model = cls(
                PerceiverConfig(**spec["config"]), spec["unit_blocks"][0], spec["session_blocks"][0]
            )
            for n in spec["unit_blocks"][1:]:
                model.extend_units(n)
            for n in spec["session_blocks"][1:]:
                model.extend_sessions(n)
            for name, task_spec in spec["tasks"].items():
                model.add_task(name, *task_spec)
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"malformed Perceiver spec ({err!r}): {spec}") from err
        return model

    # --- forward ---

    def forward(
        self, batch: dict[str, Tensor], tasks: Sequence[str], token_mask: Tensor | None = None
    ) -> dict[str, Tensor]:
        unknown = [t for t in tasks if t not in self.task_specs]
        if unknown:
            raise KeyError(f"Perceiver has no head for task(s) {unknown}; has {list(self.heads)}")
        latents, latent_time = self.encode(batch, token_mask)
        latent_rot = self.rotary(latent_time)
        out = {}
        for task in tasks:
            if self.task_specs[task][0] == RECONSTRUCTION:
                out[task] = self._reconstruct(task, batch, latents, latent_time, token_mask)
            else:
                out[task] = self._read_out(task, batch, latents, latent_rot, latent_time)
        return out

    def encode(self, batch: dict[str, Tensor], token_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Latents [B, L, D] and their timestamps [B, L] for a batch of windows."""
        patches, token_time = self._patches(batch["activity"], batch["time"])
        b, t_tok, n, _ = patches.shape
        values = self.value_embed(patches)
        if token_mask is not None:
            hidden = self._token_mask(token_mask).unsqueeze(-1)
            values = torch.where(hidden, self.mask_token.to(values.dtype), values)
        # Unit-modulated values: with near-uniform attention at initialisation a latent
        # averages its tokens, and the average of unit * value is a projection of the
        # per-neuron activity (what a linear decoder reads); an additive value + unit
        # token averages to mean value + mean unit and forgets which neuron was active.
        unit = self.unit_embed(batch["unit"]).unsqueeze(1)
        tokens = unit * (1.0 + values)
        tokens = (tokens + self.token_ff(self.token_norm(tokens))).reshape(b, t_tok * n, -1)
        token_time = token_time.unsqueeze(-1).expand(b, t_tok, n).reshape(b, t_tok * n)
        token_valid = batch["neuron_mask"].unsqueeze(1).expand(b, t_tok, n).reshape(b, t_tok * n)
        latent_time = self._latent_times(batch["time"])
        n_chunks = latent_time.shape[1] // self.config.latents_per_chunk
        latents = self.latent_token.repeat(n_chunks, 1).expand(b, -1, -1)
        latent_rot = self.rotary(latent_time)
        gather = token_valid
        if self.config.reach is not None:
            # Local gathering: each chunk's latents read the tokens near their own time.
            # Rotary time can learn locality, but at initialisation global attention is
            # near-uniform, so every latent holds the same window average and the
            # temporal pattern that separates stimuli is lost until attention sharpens,
            # longer than a small fine-tuning budget. Local reach also matches what a
            # chunk latent stands for: the population state around its time.
            gather = token_valid[:, None, :] & self._near(latent_time, token_time)
        latents = self.encoder(latents, latent_rot, tokens, self.rotary(token_time), gather)
        for layer in self.latent_layers:
            latents = layer(latents, latent_rot)
        return latents, latent_time

    def _near(self, query_time: Tensor, key_time: Tensor) -> Tensor:
        """[B, Q, K]: which keys lie within ``reach`` seconds of each query."""
        reach = float("inf") if self.config.reach is None else self.config.reach
        return (key_time[:, None, :] - query_time[:, :, None]).abs() <= reach + 1e-6

    def _patches(self, activity: Tensor, time: Tensor) -> tuple[Tensor, Tensor]:
        """Per-token samples [B, T', N, F] and token times [B, T'] (``F`` frames per token).

        A window whose length is not a multiple of ``F`` repeats its last sample, so every
        token has ``F`` values; a token is stamped with the mean time of its samples.
        Why more than one sample per token: at 30 Hz the indicator's decay spans ~15
        frames, so neighbouring samples are nearly redundant, while the encoder's cost
        and the number of tokens a latent must average over grow with the sample count.
        """
        f = self.config.frames_per_token
        b, t, n = activity.shape
        pad = -t % f
        if pad:
            activity = torch.cat((activity, activity[:, -1:].expand(b, pad, n)), dim=1)
        patches = activity.reshape(b, (t + pad) // f, f, n).transpose(2, 3)
        dt = time[:, 1:2] - time[:, :1] if t > 1 else torch.zeros_like(time[:, :1])
        return patches, time[:, ::f] + dt * (f - 1) / 2

    def _token_mask(self, frame_mask: Tensor) -> Tensor:
        """[B, T', N]: a token is hidden when any of its samples is (see :meth:`_patches`)."""
        f = self.config.frames_per_token
        b, t, n = frame_mask.shape
        padded = torch.cat((frame_mask, frame_mask.new_zeros(b, -t % f, n)), dim=1)
        return padded.reshape(b, -1, f, n).any(dim=2)

    def _latent_times(self, time: Tensor) -> Tensor:
        """Chunk centres covering each window, repeated for the latents of a chunk."""
        step = self.config.latent_step
        t = time.shape[1]
        # Windows of a batch share their bin count and bin size, so one window sets the grid.
        dt = float(time[0, 1] - time[0, 0]) if t > 1 else step
        n_chunks = max(1, math.ceil(t * dt / step - 1e-6))
        centres = time[:, :1] + (torch.arange(n_chunks, device=time.device) + 0.5) * step
        return centres.repeat_interleave(self.config.latents_per_chunk, dim=1)

    def _reconstruct(
        self,
        task: str,
        batch: dict[str, Tensor],
        latents: Tensor,
        latent_time: Tensor,
        token_mask: Tensor | None,
    ) -> Tensor:
        """Values [B, T, N] of the samples of masked tokens (0 elsewhere), or of every sample.

        Only masked tokens are queried: their loss is all that is used, and the readout
        over every token costs as much as the encoder. Each query predicts the
        ``frames_per_token`` samples of its token. Windows with fewer masked tokens than
        the batch maximum are padded with unmasked positions whose outputs are discarded.
        """
        activity = batch["activity"]
        b, t, n = activity.shape
        f = self.config.frames_per_token
        _, token_time = self._patches(activity, batch["time"])
        t_tok = token_time.shape[1]
        if token_mask is None:
            position = torch.arange(t_tok * n, device=activity.device).expand(b, -1)
            keep = None
        else:
            flat = self._token_mask(token_mask).reshape(b, t_tok * n)
            k = max(1, int(flat.sum(dim=1).max()))
            order = torch.sort(flat.to(torch.uint8), dim=1, descending=True, stable=True)[1]
            position = order[:, :k]
            keep = torch.gather(flat, 1, position)
        neuron, token = position % n, torch.div(position, n, rounding_mode="floor")
        units = self.unit_embed(torch.gather(batch["unit"], 1, neuron))  # [B, K, D]
        base = self.session_embed(batch["session"]) + self.task_embed[task]
        query_time = torch.gather(token_time, 1, token)
        near = self._near(query_time, latent_time)
        out = self.decoder(
            base[:, None, :] + units,
            self.rotary(query_time),
            latents,
            self.rotary(latent_time),
            near,
        )
        values = self.heads[task](self.out_norm(out))  # [B, K, F]
        if keep is not None:
            values = torch.where(keep.unsqueeze(-1), values, torch.zeros_like(values))
        full = torch.zeros(b, t_tok * n, f, dtype=values.dtype, device=values.device)
        full = full.scatter(1, position.unsqueeze(-1).expand(-1, -1, f), values)
        full = full.reshape(b, t_tok, n, f).transpose(2, 3).reshape(b, t_tok * f, n)[:, :t]
        if token_mask is not None:
            full = torch.where(token_mask, full, torch.zeros_like(full))
        return full

    def _read_out(
        self,
        task: str,
        batch: dict[str, Tensor],
        latents: Tensor,
        latent_rot: Rotation,
        latent_time: Tensor,
    ) -> Tensor:
        """Per-bin values [B, T] or window logits [B, C].

        Window labels: one query per chunk centre, each reading the latents near its own
        time, and the head sees all of them side by side. Why not one pooled query: the
        classes of trial-aligned windows differ in *when* the population does what (a
        linear probe on the chunk latents of an untrained encoder separates the default
        data's stimuli, their time average does not), and a query pooling across time
        must first learn sharp rotary attention to recover that, which a small
        fine-tuning budget does not allow.
        """
        kind, _, n_slots = self.task_specs[task]
        base = self.session_embed(batch["session"]) + self.task_embed[task]  # [B, D]
        b = batch["time"].shape[0]
        if kind == PER_BIN:
            query_time = batch["time"]
        else:
            query_time = latent_time[:, :: self.config.latents_per_chunk]
            if query_time.shape[1] != n_slots:
                raise ValueError(
                    f"task {task!r} was fitted on windows of {n_slots} latent chunks; this "
                    f"batch has {query_time.shape[1]} (window length differs)"
                )
        queries = base[:, None, :].expand(b, query_time.shape[1], -1)
        near = self._near(query_time, latent_time)
        out = self.decoder(queries, self.rotary(query_time), latents, latent_rot, near)
        out = self.out_norm(out)
        if kind == PER_BIN:
            return self.heads[task](out).squeeze(-1)
        # Centred over the window's chunks: the part shared by every chunk (which neurons
        # the session has, the query itself) is nearly the same in every window and
        # dwarfs what varies; left in, it slows the head's optimisation several-fold.
        out = out - out.mean(dim=1, keepdim=True)
        return self.heads[task](out.reshape(b, -1))


def backbone_parameters(model: Perceiver) -> int:
    """Parameters shared across sessions and tasks: what the scaling sweep varies.

    Unit/session embeddings and task heads grow with the dataset, not the model size.
    """
    per_dataset = ("unit_embed.", "session_embed.", "task_embed.", "heads.")
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith(per_dataset))


def count_parameters(size: str) -> int:
    """Backbone parameters of a size preset (for accuracy-vs-parameters plots)."""
    return backbone_parameters(Perceiver(make_config(size), n_units=1, n_sessions=1))
