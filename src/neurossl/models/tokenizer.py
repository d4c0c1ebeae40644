"""CalM's tokenizer: one neuron's calcium trace, patch by patch, -> codes of ONE vocabulary.

The vocabulary is shared by every neuron, session and animal, so the dual-axis model
sees the same "alphabet" of trace shapes everywhere and can transfer across animals.

Design choices (and why):

- *Input scale.* The tokenizer sees traces already z-scored per neuron with statistics
  of that neuron's *training windows* (:class:`neurossl.objectives.calm.UnitScaler`),
  not per window: per-window z-scoring would erase the amplitude differences between a
  silent and an active window, which are exactly what forecasting and decoding need.
  The statistics live outside the tokenizer so one tokenizer (trained on the pretraining
  sessions) serves new animals, whose units it never saw.
- *Patches of P frames* (default 4 = 133 ms at 30 Hz, about the rise time of GCaMP):
  a code summarises a short trace shape, and the dual-axis model runs on T / P steps.
- *Encoder*: a 1-D convolution over each patch's frames (local shape), a linear map to
  the width, then a few rotary transformer layers over the patches of one neuron.
  These layers are **causal**: the code of patch j depends on frames of patches <= j
  only. A bidirectional encoder would leak the future into the codes that the
  autoregressive model is trained to predict, and the codes of a forecast's context
  would change once the future is appended; causal encoding makes "tokenise the context"
  and "tokenise the whole window" agree on the context.
- *Decoder*: code embeddings -> causal rotary transformer over patches -> P frames per
  patch. Causal for the same reason: decoding predicted codes never changes the
  decoded context, and a forecast's first frames do not depend on later predictions.
- *Quantiser*: Gumbel-softmax with an orthogonality regulariser, or FSQ
  (:mod:`neurossl.models.quantizers`, where the choice is argued).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurossl.atomic import atomic_path
from neurossl.models.dual_axis import TimeBlock
from neurossl.models.quantizers import QUANTIZERS, FSQuantizer, GumbelQuantizer


@dataclass(frozen=True)
class TokenizerConfig:
    patch: int = 4
    vocab_size: int = 256
    quantizer: str = "fsq"
    width: int = 32
    heads: int = 2
    layers: int = 1
    conv_channels: int = 8
    ortho_weight: float = 0.1
    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise ValueError(f"tokenizer quantizer {self.quantizer!r}; expected {QUANTIZERS}")
        if self.patch < 1 or self.vocab_size < 2 or self.layers < 0:
            raise ValueError(f"invalid tokenizer config {self}")


class Tokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.conv = nn.Conv1d(1, c.conv_channels, kernel_size=3, padding=1)
        self.patch_in = nn.Linear(c.conv_channels * c.patch, c.width)
        self.encoder = nn.ModuleList(
            TimeBlock(c.width, c.heads, causal=True) for _ in range(c.layers)
        )
        self.quantizer: GumbelQuantizer | FSQuantizer
        if c.quantizer == "gumbel":
            self.quantizer = GumbelQuantizer(c.width, c.vocab_size, c.ortho_weight, c.kl_weight)
        else:
            self.quantizer = FSQuantizer(c.width, c.vocab_size)
        self.decoder = nn.ModuleList(
            TimeBlock(c.width, c.heads, causal=True) for _ in range(c.layers)
        )
        self.patch_out = nn.Linear(c.width, c.patch)

    @property
    def patch(self) -> int:
        return self.config.patch

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _to_patches(self, traces: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """[B, T, N] -> per-neuron patch sequences [B*N, T//P, P] (trailing frames dropped)."""
        if traces.ndim != 3:
            raise ValueError(f"tokenizer needs traces [B, T, N], got shape {tuple(traces.shape)}")
        b, t, n = traces.shape
        steps = t // self.patch
        if steps < 1:
            raise ValueError(f"traces of {t} frames are shorter than one patch of {self.patch}")
        x = traces[:, : steps * self.patch].permute(0, 2, 1).reshape(b * n, steps, self.patch)
        return x, (b, steps, n)

    def _encode_features(self, patches: Tensor) -> Tensor:
        s, steps, p = patches.shape
        local = F.gelu(self.conv(patches.reshape(s * steps, 1, p)))
        z = self.patch_in(local.reshape(s, steps, -1))
        for block in self.encoder:
            z = block(z)
        return z

    def quantize(self, traces: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantised embeddings [B*N, S, D], codes [B, S, N], aux loss, probs [B*N, S, K]."""
        patches, (b, steps, n) = self._to_patches(traces)
        emb, codes, aux, probs = self.quantizer(self._encode_features(patches))
        return emb, codes.view(b, n, steps).transpose(1, 2), aux, probs

    def encode(self, traces: Tensor) -> Tensor:
        """Normalised traces [B, T, N] -> codes [B, T//P, N] int64."""
        return self.quantize(traces)[1]

    def decode_embeddings(self, emb: Tensor, shape: tuple[int, int, int]) -> Tensor:
        """Per-neuron embeddings [B*N, S, D] -> traces [B, S*P, N]."""
        b, steps, n = shape
        x = emb
        for block in self.decoder:
            x = block(x)
        frames = self.patch_out(x).reshape(b, n, steps * self.patch)
        return frames.transpose(1, 2)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, S, N] -> normalised traces [B, S*P, N]."""
        b, steps, n = codes.shape
        emb = self.quantizer.embed(codes.transpose(1, 2).reshape(b * n, steps))
        return self.decode_embeddings(emb, (b, steps, n))

    def forward(self, traces: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction, codes and auxiliary loss (training step of the VQ-VAE)."""
        emb, codes, aux, _ = self.quantize(traces)
        b, steps, n = codes.shape
        return self.decode_embeddings(emb, (b, steps, n)), codes, aux


@torch.no_grad()
def reconstruct(
    tokenizer: Tokenizer, traces: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Round trip of normalised windows [W, T, N] (NaN = padding) -> (recon, codes).

    Padding is fed as zeros and returned as NaN; frames after the last whole patch are
    NaN too, so callers can score ``recon`` against ``traces`` directly.
    """
    traces = np.asarray(traces, dtype=np.float32)
    if traces.ndim != 3:
        raise ValueError(f"tokenizer needs windows [W, T, N], got shape {traces.shape}")
    device = next(tokenizer.parameters()).device
    tokenizer.eval()
    recon = np.full(traces.shape, np.nan, dtype=np.float32)
    codes = []
    for start in range(0, traces.shape[0], batch_size):
        chunk = traces[start : start + batch_size]
        x = torch.from_numpy(np.nan_to_num(chunk, nan=0.0)).to(device)
        c = tokenizer.encode(x)
        out = tokenizer.decode(c).float().cpu().numpy()
        recon[start : start + batch_size, : out.shape[1]] = out
        codes.append(c.cpu().numpy())
    recon[np.isnan(traces)] = np.nan
    return recon, np.concatenate(codes)


def save_tokenizer(tokenizer: Tokenizer, path: str | Path, report: dict[str, Any]) -> None:
    payload = {
        "config": asdict(tokenizer.config),
        "state": tokenizer.state_dict(),
        "report": report,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_tokenizer(path: str | Path, device: str = "cpu") -> Tokenizer:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"tokenizer checkpoint {path} does not exist (run the tokenizer stage)"
        )
    payload = torch.load(path, map_location=device, weights_only=False)
    try:
        tokenizer = Tokenizer(TokenizerConfig(**payload["config"]))
        tokenizer.load_state_dict(payload["state"])
    except (KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: not a CalM tokenizer checkpoint ({err})") from err
    return tokenizer.to(device).eval()
