"""The zoo: real architectures no one here wrote, built tiny from configs, with a batch each.

Every entry builds its model from a config (nothing is downloaded) at hidden sizes of 32-64,
two layers and short sequences / small images, so the checks in ``test_zoo.py`` and the
``tried_on.py`` table run each architecture end to end in about a second.

``Architecture.factory`` is a zero-argument callable (what ``initlab.scale.materialize`` takes)
that returns the model in the mode it is checked in: eval, so dropout does not redraw its masks
between the passes that LSUV and the doctor compare, except models with BatchNorm, which train
(and are judged at init) in training mode: in eval mode a fresh BatchNorm divides by its
running variance of 1, not by the batch's, and rescales nothing. ``Architecture.model()`` seeds
torch's global generator first, so the stock init is the same on every run. Batches come from
their own generator and never touch the global one.

Hugging Face models take ``input_ids`` (text), ``pixel_values`` (vision) or ``input_values`` /
``input_features`` (audio) as their first argument, so one tensor is their batch; encoder-decoder
models (T5, BART, Whisper) also need decoder inputs and take a dict, called as ``model(**batch)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["ARCHITECTURES", "Architecture", "Batch", "Family", "by_name", "run_forward"]

Family = Literal[
    "encoder", "decoder", "encoder-decoder", "vision", "audio", "state-space", "torch.nn"
]
Batch = torch.Tensor | dict[str, torch.Tensor]

BATCH_SIZE = 8
SEQUENCE_LENGTH = 16
VOCAB_SIZE = 100
IMAGE_SIZE = 32


@dataclass(frozen=True)
class Architecture:
    """One zoo entry.

    Attributes:
        name: what the README table calls it.
        family: encoder, decoder, encoder-decoder, vision, audio, state-space or torch.nn.
        build: returns the model with the library's own (stock) init.
        make_batch: returns one input batch from the generator it is given.
        training: check the model in training mode (else eval mode).
        stock_identical: globs of the parameters whose stock init is identical across layers
            by construction (deep-copied layers, deterministic inits), which ``audit`` must
            report; no other parameter may be reported.
        stock_critical: codes of the critical findings the stock init really deserves (each
            with the reason beside the entry), which the doctor must report; no other critical
            finding may be reported.
        stock_warnings: codes of warnings the stock init deserves, which the doctor must
            report (other warnings are allowed: they are not alarms).
        note: what the entry exercises, for readers of the table.
    """

    name: str
    family: Family
    build: Callable[[], nn.Module]
    make_batch: Callable[[torch.Generator], Batch]
    training: bool = False
    stock_identical: tuple[str, ...] = ()
    stock_critical: tuple[str, ...] = ()
    stock_warnings: tuple[str, ...] = ()
    note: str = ""

    def factory(self) -> nn.Module:
        """The model in its checked mode, stock init (a zero-argument factory)."""
        return self.build().train(self.training)

    def model(self, seed: int = 0) -> nn.Module:
        """The model with its stock init drawn after ``torch.manual_seed(seed)``."""
        torch.manual_seed(seed)
        return self.factory()

    def batch(self, seed: int = 0) -> Batch:
        """One input batch from its own generator (the global RNG is untouched)."""
        return self.make_batch(torch.Generator().manual_seed(seed))


def run_forward(model: nn.Module, batch: Batch) -> Any:
    """``model(batch)`` or ``model(**batch)``."""
    return model(**batch) if isinstance(batch, dict) else model(batch)


# --- batches --------------------------------------------------------------------------------
def tokens(generator: torch.Generator, length: int = SEQUENCE_LENGTH) -> torch.Tensor:
    # Ids from 3 up: 0-2 are pad/bos/eos in these configs, and a pad id changes positions
    # (RoBERTa, OPT) or masks (BART) in ways that have nothing to do with initialization.
    return torch.randint(3, VOCAB_SIZE, (BATCH_SIZE, length), generator=generator)


def images(generator: torch.Generator, size: int = IMAGE_SIZE) -> torch.Tensor:
    return torch.randn(BATCH_SIZE, 3, size, size, generator=generator)


def features(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(BATCH_SIZE, *shape, generator=generator)


def seq2seq_tokens(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "input_ids": tokens(generator),
        "decoder_input_ids": tokens(generator, SEQUENCE_LENGTH // 2),
    }


# --- Hugging Face transformers (imported inside each builder: only when used) -----------------
def _text(**overrides: Any) -> dict[str, Any]:
    """Shared tiny sizes for BERT-like configs."""
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        **overrides,
    }


def bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(**_text()))


def roberta() -> nn.Module:
    from transformers import RobertaConfig, RobertaModel

    return RobertaModel(RobertaConfig(**_text(pad_token_id=1, bos_token_id=0, eos_token_id=2)))


def distilbert() -> nn.Module:
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(
        vocab_size=VOCAB_SIZE, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=64,
    )  # fmt: skip
    return DistilBertModel(config)


def albert() -> nn.Module:
    from transformers import AlbertConfig, AlbertModel

    # One layer group run twice: both "layers" are the same parameters (shared weights).
    config = AlbertConfig(
        **_text(embedding_size=16, num_hidden_groups=1, inner_group_num=1),
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )  # fmt: skip
    return AlbertModel(config)


def deberta_v2() -> nn.Module:
    from transformers import DebertaV2Config, DebertaV2Model

    config = DebertaV2Config(
        **_text(), relative_attention=True, position_buckets=8, max_relative_positions=32,
        pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
    )  # fmt: skip
    return DebertaV2Model(config)


def electra() -> nn.Module:
    from transformers import ElectraConfig, ElectraModel

    return ElectraModel(ElectraConfig(**_text(embedding_size=16)))


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2Model

    # bos/eos inside the tiny vocabulary: transformers complains about 50256 otherwise.
    config = GPT2Config(
        vocab_size=VOCAB_SIZE, n_embd=32, n_layer=2, n_head=4, n_positions=64,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2Model(config)


def _decoder(**overrides: Any) -> dict[str, Any]:
    """LLaMA-family sizes: 4 query heads sharing 2 key/value heads (grouped-query attention)."""
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        **overrides,
    }


def llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaModel

    return LlamaModel(LlamaConfig(**_decoder()))


def mistral() -> nn.Module:
    from transformers import MistralConfig, MistralModel

    return MistralModel(MistralConfig(**_decoder(sliding_window=8)))


def qwen2() -> nn.Module:
    from transformers import Qwen2Config, Qwen2Model

    return Qwen2Model(Qwen2Config(**_decoder()))


def gpt_neox() -> nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXModel

    config = GPTNeoXConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, rotary_pct=0.5,
        bos_token_id=0, eos_token_id=2,
    )  # fmt: skip
    return GPTNeoXModel(config)


def opt() -> nn.Module:
    from transformers import OPTConfig, OPTModel

    config = OPTConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, ffn_dim=64,
        num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32,
        pad_token_id=1, bos_token_id=2, eos_token_id=2,
    )  # fmt: skip
    return OPTModel(config)


def t5() -> nn.Module:
    from transformers import T5Config, T5Model

    config = T5Config(
        vocab_size=VOCAB_SIZE, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0,
        eos_token_id=1,
    )  # fmt: skip
    return T5Model(config)


def bart() -> nn.Module:
    from transformers import BartConfig, BartModel

    config = BartConfig(
        vocab_size=VOCAB_SIZE, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        forced_eos_token_id=2,
    )  # fmt: skip
    return BartModel(config)


def vit() -> nn.Module:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=IMAGE_SIZE, patch_size=8, num_channels=3, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    )  # fmt: skip
    return ViTModel(config, add_pooling_layer=False)


def swin() -> nn.Module:
    from transformers import SwinConfig, SwinModel

    # Two stages (patch merging between them), windows of 4x4 patches, shifted in odd blocks.
    config = SwinConfig(
        image_size=IMAGE_SIZE, patch_size=4, num_channels=3, embed_dim=16, depths=[2, 2],
        num_heads=[2, 4], window_size=4, mlp_ratio=2.0,
    )  # fmt: skip
    return SwinModel(config)


def convnext() -> nn.Module:
    from transformers import ConvNextConfig, ConvNextModel

    config = ConvNextConfig(
        num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1],
        image_size=IMAGE_SIZE,
    )  # fmt: skip
    return ConvNextModel(config)


def resnet() -> nn.Module:
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
        layer_type="bottleneck", hidden_act="relu",
    )  # fmt: skip
    return ResNetModel(config)


def mobilevit() -> nn.Module:
    from transformers import MobileViTConfig, MobileViTModel

    config = MobileViTConfig(
        num_channels=3, image_size=IMAGE_SIZE, patch_size=2, hidden_sizes=[16, 24, 32],
        neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 48], num_attention_heads=2, mlp_ratio=2.0,
        hidden_dropout_prob=0.0,  # checked in training mode (BatchNorm): no dropout masks
    )  # fmt: skip
    return MobileViTModel(config)


def segformer() -> nn.Module:
    from transformers import SegformerConfig, SegformerModel

    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
        hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
        mlp_ratios=[2, 2], decoder_hidden_size=32,
    )  # fmt: skip
    return SegformerModel(config)


WAV2VEC2_SAMPLES = 400


def wav2vec2() -> nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    # Feature encoder: 400 samples -> 79 -> 39 frames. The positional convolution is
    # weight-normed (torch's weight_norm parametrization).
    config = Wav2Vec2Config(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )  # fmt: skip
    return Wav2Vec2Model(config)


WHISPER_MELS = 8
WHISPER_SOURCE_POSITIONS = 16


def whisper() -> nn.Module:
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(
        vocab_size=VOCAB_SIZE, num_mel_bins=WHISPER_MELS, d_model=32, encoder_layers=2,
        decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=WHISPER_SOURCE_POSITIONS,
        max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1,
    )  # fmt: skip
    return WhisperModel(config)


def whisper_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    # The encoder's two convolutions (the second with stride 2) expect 2 x max_source_positions
    # frames exactly.
    return {
        "input_features": features(generator, WHISPER_MELS, 2 * WHISPER_SOURCE_POSITIONS),
        "decoder_input_ids": tokens(generator, SEQUENCE_LENGTH // 2),
    }


def mamba() -> nn.Module:
    from transformers import MambaConfig, MambaModel

    config = MambaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
        conv_kernel=4, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return MambaModel(config)


# --- more Hugging Face families: fused and multi-query attention, MoE, ALiBi, pooling, FFT,
# windowed attention, layer scale, squeeze-excitation, BatchNorm inside attention ----------
def _built(config_name: str, model_name: str, **config: Any) -> nn.Module:
    """``transformers.<model_name>(transformers.<config_name>(**config))``."""
    import transformers

    model: nn.Module = getattr(transformers, model_name)(
        getattr(transformers, config_name)(**config)
    )
    return model


def gemma() -> nn.Module:
    return _built("GemmaConfig", "GemmaModel", **_decoder(head_dim=8))


def falcon() -> nn.Module:
    return _built(
        "FalconConfig", "FalconModel", vocab_size=VOCAB_SIZE, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4,
    )  # fmt: skip


def bloom() -> nn.Module:
    return _built("BloomConfig", "BloomModel", vocab_size=VOCAB_SIZE, hidden_size=32, n_layer=2,
                  n_head=4)  # fmt: skip


def mixtral() -> nn.Module:
    return _built(
        "MixtralConfig", "MixtralModel", **_decoder(num_local_experts=4, num_experts_per_tok=2)
    )


def xlnet() -> nn.Module:
    return _built("XLNetConfig", "XLNetModel", vocab_size=VOCAB_SIZE, d_model=32, n_layer=2,
                  n_head=4, d_inner=64)  # fmt: skip


def fnet() -> nn.Module:
    config = _text()
    del config["num_attention_heads"]
    return _built("FNetConfig", "FNetModel", **config)


def funnel() -> nn.Module:
    return _built(
        "FunnelConfig", "FunnelModel", vocab_size=VOCAB_SIZE, d_model=32, n_head=4, d_head=8,
        d_inner=64, block_sizes=[1, 1],
    )  # fmt: skip


def longformer() -> nn.Module:
    return _built("LongformerConfig", "LongformerModel", **_text(attention_window=4))


def canine() -> nn.Module:
    return _built(
        "CanineConfig", "CanineModel", hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, downsampling_rate=2,
    )  # fmt: skip


def beit() -> nn.Module:
    return _built(
        "BeitConfig", "BeitModel", image_size=IMAGE_SIZE, patch_size=8, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        use_relative_position_bias=True,
    )  # fmt: skip


def dinov2() -> nn.Module:
    return _built(
        "Dinov2Config", "Dinov2Model", image_size=IMAGE_SIZE, patch_size=8, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
    )  # fmt: skip


def convnext_v2() -> nn.Module:
    return _built(
        "ConvNextV2Config", "ConvNextV2Model", num_channels=3, patch_size=4, num_stages=2,
        hidden_sizes=[16, 32], depths=[1, 1],
    )  # fmt: skip


def regnet() -> nn.Module:
    return _built("RegNetConfig", "RegNetModel", embedding_size=8, hidden_sizes=[8, 16],
                  depths=[1, 1], groups_width=8)  # fmt: skip


def mobilenet_v2() -> nn.Module:
    return _built("MobileNetV2Config", "MobileNetV2Model", image_size=IMAGE_SIZE,
                  depth_multiplier=0.25)  # fmt: skip


def efficientnet() -> nn.Module:
    # hidden_dim is the top conv's width, which width_coefficient does not scale: 1280 / 4.
    return _built(
        "EfficientNetConfig", "EfficientNetModel", image_size=IMAGE_SIZE, width_coefficient=0.25,
        depth_coefficient=0.25, hidden_dim=320,
    )  # fmt: skip


def levit() -> nn.Module:
    return _built(
        "LevitConfig", "LevitModel", image_size=IMAGE_SIZE, hidden_sizes=[32, 48, 64],
        num_attention_heads=[2, 2, 2], depths=[1, 1, 1], key_dim=[8, 8, 8],
    )  # fmt: skip


def hubert() -> nn.Module:
    return _built(
        "HubertConfig", "HubertModel", hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
        conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )  # fmt: skip


def rwkv() -> nn.Module:
    return _built(
        "RwkvConfig", "RwkvModel", vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2,
        attention_hidden_size=32, intermediate_size=64, context_length=64,
    )  # fmt: skip


# --- torch.nn's own layers, in the smallest models that use them as intended ----------------
D_MODEL = 32


def transformer_encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(
        D_MODEL, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True
    )
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


def transformer() -> nn.Module:
    return nn.Transformer(
        D_MODEL, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
        dropout=0.1, batch_first=True,
    )  # fmt: skip


def transformer_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "src": features(generator, SEQUENCE_LENGTH, D_MODEL),
        "tgt": features(generator, SEQUENCE_LENGTH // 2, D_MODEL),
    }


class LSTMLanguageModel(nn.Module):
    """Embedding -> 2-layer LSTM -> Linear over the vocabulary (next-token logits)."""

    def __init__(self, vocab: int = VOCAB_SIZE, width: int = D_MODEL) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, num_layers=2, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embedding(ids))
        return self.head(hidden)


class GRUClassifier(nn.Module):
    """A 2-layer bidirectional GRU over feature frames, classified from the last step."""

    def __init__(self, inputs: int = 16, width: int = D_MODEL, classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(inputs, width, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(frames)
        return self.head(hidden[:, -1])


class SelfAttentionBlock(nn.Module):
    """Linear in -> nn.MultiheadAttention (residual, LayerNorm) -> ReLU MLP -> Linear out."""

    def __init__(self, inputs: int = 16, width: int = D_MODEL, outputs: int = 10) -> None:
        super().__init__()
        self.embed = nn.Linear(inputs, width)
        self.attention = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width)
        )
        self.head = nn.Linear(width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm(h + attended)
        return self.head(h + self.mlp(h))


class ConvTransposeDecoder(nn.Module):
    """A DCGAN-style decoder: latent -> 4x4 map -> two stride-2 ConvTranspose2d -> 16x16 image."""

    def __init__(self, latent: int = 16, channels: int = 32) -> None:
        super().__init__()
        self.channels = channels
        self.project = nn.Linear(latent, channels * 4 * 4)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1),
            nn.BatchNorm2d(channels // 2),
            nn.ReLU(),
            nn.ConvTranspose2d(channels // 2, 3, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.project(z)).view(-1, self.channels, 4, 4))


class BilinearModel(nn.Module):
    """Two views of the input combined by nn.Bilinear (x1^T W_k x2 + b_k), then a ReLU head."""

    def __init__(self, inputs: int = 16, width: int = D_MODEL, classes: int = 10) -> None:
        super().__init__()
        self.left = nn.Linear(inputs, width)
        self.right = nn.Linear(inputs, width)
        self.bilinear = nn.Bilinear(width, width, width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bilinear(self.left(x), self.right(x))))


class WeightNormNet(nn.Module):
    """A temporal conv net with weight-normed layers (torch's weight_norm parametrization)."""

    def __init__(self, inputs: int = 8, width: int = D_MODEL, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = weight_norm(nn.Conv1d(inputs, width, 3, padding=1))
        self.conv2 = weight_norm(nn.Conv1d(width, width, 3, padding=2, dilation=2))
        self.head = weight_norm(nn.Linear(width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return self.head(h.mean(dim=2))


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("BERT", "encoder", bert, tokens),
    Architecture("RoBERTa", "encoder", roberta, tokens),
    Architecture("DistilBERT", "encoder", distilbert, tokens),
    Architecture("ALBERT", "encoder", albert, tokens, note="one layer's weights shared by both"),
    Architecture("DeBERTa-v2", "encoder", deberta_v2, tokens, note="disentangled attention"),
    Architecture("ELECTRA", "encoder", electra, tokens, note="embedding projection 16 -> 32"),
    Architecture("GPT-2", "decoder", gpt2, tokens, note="Conv1D layers stored (in, out)"),
    Architecture("LLaMA", "decoder", llama, tokens, note="GQA 4/2 heads, RMSNorm, SwiGLU"),
    Architecture("Mistral", "decoder", mistral, tokens, note="GQA, sliding window"),
    Architecture("Qwen2", "decoder", qwen2, tokens, note="GQA, q/k/v biases"),
    Architecture("GPT-NeoX", "decoder", gpt_neox, tokens, note="fused qkv, partial rotary"),
    Architecture("OPT", "decoder", opt, tokens),
    Architecture("T5", "encoder-decoder", t5, seq2seq_tokens, note="gated-GELU, relative bias"),
    Architecture("BART", "encoder-decoder", bart, seq2seq_tokens),
    Architecture("ViT", "vision", vit, images, note="patch conv, CLS token"),
    Architecture("Swin", "vision", swin, images, note="windowed attention, patch merging"),
    Architecture("ConvNeXt", "vision", convnext, images, note="depthwise 7x7, layer scale"),
    Architecture(
        "ResNet (HF)", "vision", resnet, images, training=True, note="bottleneck, BatchNorm"
    ),
    Architecture(
        "MobileViT",
        "vision",
        mobilevit,
        images,
        training=True,
        # transformers 5.24's MobileViT _init_weights draws BatchNorm weights from N(0, 0.02):
        # each conv-BN on the main (non-residual) path scales the signal by ~0.02, and the
        # output's std is ~6e-4 for a unit-variance input.
        stock_warnings=("random_norm_scales",),
        note="inverted residuals + attention, BatchNorm",
    ),
    Architecture("SegFormer", "vision", segformer, images, note="overlapping patches, reduction"),
    Architecture(
        "Wav2Vec2",
        "audio",
        wav2vec2,
        lambda g: features(g, WAV2VEC2_SAMPLES),
        note="conv feature encoder, weight-normed positional conv",
    ),
    Architecture("Whisper", "audio", whisper, whisper_batch, note="conv stem, encoder-decoder"),
    Architecture(
        "Mamba",
        "state-space",
        mamba,
        tokens,
        note="selective scan, depthwise conv",
    ),
    Architecture("Gemma", "decoder", gemma, tokens, note="RMSNorm scale 1 + w, GeGLU"),
    Architecture("Falcon", "decoder", falcon, tokens, note="fused multi-query qkv, parallel"),
    Architecture("Bloom", "decoder", bloom, tokens, note="fused qkv per head, ALiBi"),
    Architecture("Mixtral", "decoder", mixtral, tokens, note="mixture of 4 experts, top-2"),
    Architecture("XLNet", "encoder", xlnet, tokens, note="two-stream relative attention"),
    Architecture("FNet", "encoder", fnet, tokens, note="Fourier mixing, no attention"),
    Architecture("Funnel", "encoder", funnel, tokens, note="pooled query, two blocks"),
    Architecture("Longformer", "encoder", longformer, tokens, note="sliding-window attention"),
    Architecture("CANINE", "encoder", canine, tokens, note="character encoders of one layer each"),
    Architecture("BEiT", "vision", beit, images, note="relative position bias, layer scale"),
    Architecture("DINOv2", "vision", dinov2, images, note="layer scale, interpolated positions"),
    Architecture("ConvNeXt V2", "vision", convnext_v2, images, note="global response norm"),
    Architecture(
        "RegNet", "vision", regnet, images, training=True, note="grouped convs, BatchNorm"
    ),
    Architecture(
        "MobileNetV2",
        "vision",
        mobilenet_v2,
        images,
        training=True,
        note="inverted residuals, ReLU6",
    ),
    Architecture(
        "EfficientNet",
        "vision",
        efficientnet,
        images,
        training=True,
        # transformers 5.24's EfficientNet _init_weights draws BatchNorm weights from
        # N(0, 0.02), as MobileViT's does; here no residual carries the signal past the
        # blocks that change width, so it does vanish, forward and backward.
        stock_critical=("vanishing_forward", "vanishing_gradients"),
        stock_warnings=("random_norm_scales",),
        note="squeeze-excitation, SiLU",
    ),
    Architecture(
        "LeViT", "vision", levit, images, training=True, note="BatchNorm inside attention"
    ),
    Architecture(
        "HuBERT", "audio", hubert, lambda g: features(g, 1600), note="conv feature encoder"
    ),
    Architecture(
        "RWKV",
        "state-space",
        rwkv,
        tokens,
        # transformers sets the time-mix ramps from the layer index alone: in the first layer
        # key and value mixes are the same ramp, as are the feed-forward's.
        stock_identical=("blocks.*.time_mix_*",),
        note="time mixing, channel mixing",
    ),
    Architecture(
        "nn.TransformerEncoder",
        "torch.nn",
        transformer_encoder,
        lambda g: features(g, SEQUENCE_LENGTH, D_MODEL),
        # The layers are deep copies of one TransformerEncoderLayer, not re-initialized.
        stock_identical=("layers.*",),
        stock_warnings=("cloned_layers",),
        note="fast path in eval mode without grad",
    ),
    Architecture(
        "nn.Transformer",
        "torch.nn",
        transformer,
        transformer_batch,
        # Deep-copied layers; _reset_parameters redraws only the matrices, not the biases.
        stock_identical=("*.layers.*.linear1.bias", "*.layers.*.linear2.bias"),
        note="src and tgt: a dict batch",
    ),
    Architecture("LSTM LM", "torch.nn", LSTMLanguageModel, tokens),
    Architecture("GRU", "torch.nn", GRUClassifier, lambda g: features(g, SEQUENCE_LENGTH, 16)),
    Architecture(
        "nn.MultiheadAttention",
        "torch.nn",
        SelfAttentionBlock,
        lambda g: features(g, SEQUENCE_LENGTH, 16),
    ),
    Architecture(
        "ConvTranspose2d decoder",
        "torch.nn",
        ConvTransposeDecoder,
        lambda g: features(g, 16),
        training=True,
        note="BatchNorm",
    ),
    Architecture("nn.Bilinear", "torch.nn", BilinearModel, lambda g: features(g, 16)),
    Architecture(
        "weight_norm TCN", "torch.nn", WeightNormNet, lambda g: features(g, 8, SEQUENCE_LENGTH)
    ),
)


def by_name(name: str) -> Architecture:
    """The entry called ``name``."""
    for architecture in ARCHITECTURES:
        if architecture.name == name:
            return architecture
    known = ", ".join(a.name for a in ARCHITECTURES)
    raise KeyError(f"No zoo architecture {name!r}; known: {known}")
