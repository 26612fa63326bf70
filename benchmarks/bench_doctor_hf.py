"""The doctor on Hugging Face models (tiny GPT-2 and BERT built from configs, nothing
downloaded): how many forward passes one ``initlab.doctor`` call makes, how the activations
were found, and its median time.

torch.fx cannot trace these models, so their activations are recorded during a forward pass on
the batch; the doctor records them during its own measured pass
(:class:`initlab.plan.activations.ActivationDetection`) instead of running the model once more.
Forward passes are counted by a pre-hook on the model (the Jacobian's products run the model
through ``torch.func``/double backward and are counted too when they call it).

    python benchmarks/bench_doctor_hf.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import warnings
from typing import Any

import torch
from torch import nn

import initlab
from bench_doctor import timer


def cases() -> list[tuple[str, nn.Module, dict[str, torch.Tensor]]]:
    """Tiny GPT-2 and BERT (4 layers, width 128), in train mode, with a batch of 8 x 64."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (8, 64), generator=torch.Generator().manual_seed(0))
    gpt2_config = GPT2Config(
        n_layer=4, n_embd=128, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    bert_config = BertConfig(
        num_hidden_layers=4, hidden_size=128, num_attention_heads=4, intermediate_size=512,
        vocab_size=1000,
    )  # fmt: skip
    gpt2, bert = GPT2LMHeadModel(gpt2_config), BertModel(bert_config)
    return [
        ("GPT-2 (4 x 128), batch 8 x 64", gpt2.train(), {"input_ids": ids}),
        (
            "BERT (4 x 128), batch 8 x 64",
            bert.train(),
            {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
        ),
    ]


def quiet_doctor(model: nn.Module, batch: Any) -> initlab.DoctorReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return initlab.doctor(model, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu, {torch.get_num_threads()} threads, wall clock")
    for name, model, batch in cases():
        calls: list[None] = []
        handle = model.register_forward_pre_hook(lambda *_, seen=calls: seen.append(None))
        report = quiet_doctor(model, batch)  # lazy imports, kernels, allocator
        handle.remove()
        timed = timer(torch.device("cpu"), "wall")
        step = functools.partial(quiet_doctor, model, batch)
        times = [timed(step) for _ in range(args.repeats)]
        print(
            f"{name:<32} forward passes per doctor() {len(calls)}   activations "
            f"{report.activations.method if report.activations else 'skipped':<9} doctor() "
            f"{statistics.median(times) * 1e3:6.1f} ms [{min(times) * 1e3:.1f}-"
            f"{max(times) * 1e3:.1f}]"
        )


if __name__ == "__main__":
    main()
