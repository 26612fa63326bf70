"""Small models for the scale tests: a GPT-2-shaped stack, rotary attention, BatchNorm.

Imported by the tests and by the worker processes of the distributed tests.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Block(nn.Module):
    """A GPT-2 block (pre-LayerNorm attention + 4x MLP) with nanoGPT's parameter names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(width, 3 * width)
        self.attn.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(width, 4 * width)
        self.mlp.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, time, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(batch, time, width))
        return x + self.mlp.c_proj(nn.functional.gelu(self.mlp.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    """GPT-2's layout: token and position embeddings, blocks, final norm, tied head."""

    def __init__(
        self, n_layer: int = 2, width: int = 32, vocab: int = 97, context: int = 16
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width, heads=4) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class Rotary(nn.Module):
    """Rotary position embedding: ``inv_freq`` and the cos/sin tables are computed in __init__."""

    def __init__(self, dim: int, context: int = 16, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)
        self.register_buffer("cos_cached", angles.cos())
        self.register_buffer("sin_cached", angles.sin())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time = x.shape[-2]
        first, second = x[..., ::2], x[..., 1::2]
        cos, sin = self.cos_cached[:time], self.sin_cached[:time]
        return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class RotaryNet(nn.Module):
    """A projection through a rotary embedding, then a small conv stack with BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.rotary = Rotary(8)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.bn.momentum = 0.3  # a non-default attribute survives too
        self.head = nn.Linear(4 * 16 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.rotary(self.proj(x))
        x = torch.relu(self.bn(self.conv(x.unsqueeze(1))))
        return self.head(x.flatten(1))


class ReadsWeight(nn.Module):
    """Reads a parameter's data in __init__: impossible on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.scale = float(self.proj.weight.detach().abs().max()) / math.sqrt(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.scale


class Wrapper(nn.Module):
    """A model holding a module that cannot be built on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.reader = ReadsWeight()
