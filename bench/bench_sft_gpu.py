"""Benchmark QLoRA training speed on a CUDA GPU: the Unsloth backend against the hf backend.

One command runs the same QLoRA job with each backend, each in its own process (importing unsloth
patches transformers for the whole process, so the hf run must never see it):

* a random-init model of Llama-3.2-1B shape (hidden 2048, 16 layers, 32 heads, 8 KV heads,
  intermediate 8192, vocabulary 128256, tied embeddings), saved once as bf16 safetensors with a
  word-level tokenizer of the same vocabulary size;
* fixed synthetic data (seeded random token ids, every token trained), ``--seq`` tokens each;
* 4-bit base weights, LoRA r=16 on all attention and MLP projections, gradient checkpointing,
  the project's own ``backends.load_for_training`` and Trainer loop.

``--gpus 1,8`` also runs each backend as data-parallel ranks on several GPUs of the machine, the
way the stages run in a multi-GPU pod (torchrun, one rank and one 4-bit copy of the model per GPU,
the project's ``common/distributed.py`` and the Trainer's DDP): every rank trains ``--batch-size``
sequences per step (weak scaling), and the figures count all ranks' tokens. The scaling
efficiency is tokens/s on N GPUs / (N x tokens/s on 1 GPU).

For each backend it prints tokens/s (over the steps after ``--warmup-steps``), peak VRAM (allocated
and reserved, rank 0's) and model FLOPs utilisation, MFU = 6 * N * tokens/s / (GPUs x peak bf16
FLOPs), where N counts the matmul weights (decoder linears + LM head, 1.24e9 here; embeddings do
no matmul). 6N is the dense fine-tuning convention; a LoRA step skips the frozen weights'
gradients (~4N), so this MFU is the conventional, comparable figure rather than the hardware's
busy fraction. Then it prints the unsloth/hf ratios (1 GPU) and the scaling efficiencies.

    python bench/bench_sft_gpu.py                       # both backends, H100 peak (989 TFLOPS)
    python bench/bench_sft_gpu.py --peak-tflops 989     # H200 has the same dense bf16 peak
    python bench/bench_sft_gpu.py --backends hf --steps 10
    python bench/bench_sft_gpu.py --backends hf --gpus 1,8      # 1 GPU, then 8 ranks

Needs a CUDA GPU; ``--help`` works anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LLAMA_32_1B = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM and H200: 989 TFLOPS dense bf16 (1979 with sparsity)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def matmul_parameters(shape: dict[str, Any]) -> int:
    """N for 6*N*tokens: decoder linear weights plus the LM head."""
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = shape["num_key_value_heads"] * (h // shape["num_attention_heads"])
    return layers * (2 * h * h + 2 * h * kv + 3 * h * i) + shape["vocab_size"] * h


def build_model(folder: Path, shape: dict[str, Any], device: str = "cuda") -> None:
    """Random-init bf16 model (built on the GPU, which is fast) and a matching tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = shape["vocab_size"]
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
    vocab = {token: index for index, token in enumerate(specials)}
    vocab.update({f"t{index}": index for index in range(len(specials), vocab_size)})
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|pad|>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level,
        bos_token=specials[0],
        eos_token=specials[1],
        pad_token=specials[2],
        model_max_length=shape["max_position_embeddings"],
    )
    config = LlamaConfig(bos_token_id=0, eos_token_id=1, pad_token_id=2, **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()


def run_backend(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: one backend's timed QLoRA run; returns its figures."""
    import torch

    from monGARS.mlops.training.common.backends import (
        LoraSettings,
        MemoryPlan,
        detect_environment,
        load_for_training,
        select_backend,
    )
    from monGARS.mlops.training.common.distributed import current_world, init

    world = current_world()  # torchrun's ranks when run with --gpus N > 1
    init(world)
    env = detect_environment(probe_unsloth=args.child == "unsloth")
    backend = select_backend(args.child, env)  # a clear error when unsloth cannot run
    from transformers import TrainerCallback

    from monGARS.mlops.training.common.chat_data import ChatCollator, ChatDataset, TokenizedChat
    from monGARS.mlops.training.common.loop import CountingTrainer, training_arguments
    from monGARS.mlops.training.sft.config import SFTConfig

    model_dir = Path(args.model_dir)
    shape = json.loads((model_dir / "config.json").read_text())
    total = args.warmup_steps + args.steps
    config = SFTConfig(
        backend=backend,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=args.lora_dropout,
        max_steps=total,
        learning_rate=2e-4,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_seq_length=args.seq,
        logging_steps=total,
        french_mix_ratio=0.0,
    )
    plan = MemoryPlan(args.batch_size, 1, True, 0, "bench")
    lora = LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout, TARGETS, 0, args.seq)
    torch.cuda.reset_peak_memory_stats()
    local_rank = world.local_rank if world.distributed else None
    model = load_for_training(backend, model_dir, lora, plan, env, local_rank=local_rank)

    generator = torch.Generator().manual_seed(1234)
    rows = args.batch_size * total * world.size  # each rank trains batch_size rows a step
    ids = torch.randint(3, shape["vocab_size"], (rows, args.seq), generator=generator)
    examples = [TokenizedChat(row.tolist(), row.tolist()) for row in ids]

    marks: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            torch.cuda.synchronize()
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as scratch:
        trainer = CountingTrainer(
            model=model,
            args=training_arguments(
                config,
                plan,
                env,
                backend,
                Path(scratch),
                steps=total,
                save=False,
                evaluate=False,
                world_size=world.size,
            ),
            train_dataset=ChatDataset(examples),
            data_collator=ChatCollator(pad_token_id=2),
            callbacks=[StepTimer()],
        )
        trainer.train()
    timed = marks[args.warmup_steps - 1 :] if args.warmup_steps else marks
    seconds = timed[-1] - timed[0]
    steps = len(timed) - 1
    tokens_per_second = steps * args.batch_size * args.seq * world.size / seconds
    flops = 6 * matmul_parameters(shape) * tokens_per_second
    return {
        "backend": backend,
        "gpus": world.size,
        "tokens_per_second": round(tokens_per_second, 1),
        "seconds_per_step": round(seconds / steps, 4),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "mfu": round(flops / (args.peak_tflops * 1e12 * world.size), 4),
        "device": torch.cuda.get_device_name(0),
    }


def scaling_efficiency(results: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """tokens/s on N GPUs / (N x tokens/s on 1 GPU), per backend and N (weak scaling)."""
    single = {r["backend"]: r["tokens_per_second"] for r in results if r.get("gpus", 1) == 1}
    return {
        (r["backend"], r["gpus"]): r["tokens_per_second"] / (r["gpus"] * single[r["backend"]])
        for r in results
        if r.get("gpus", 1) > 1 and single.get(r["backend"])
    }


def _table(results: list[dict[str, Any]]) -> str:
    efficiency = scaling_efficiency(results)
    lines = [
        f"{'backend':<9} {'GPUs':>4} {'tokens/s':>10} {'s/step':>8} {'peak alloc GiB':>15} "
        f"{'peak reserved GiB':>18} {'MFU':>7} {'scaling':>8}"
    ]
    for r in results:
        gpus = r.get("gpus", 1)
        scaling = efficiency.get((r["backend"], gpus))
        lines.append(
            f"{r['backend']:<9} {gpus:>4} {r['tokens_per_second']:>10.0f} "
            f"{r['seconds_per_step']:>8.3f} {r['peak_allocated_gib']:>15.2f} "
            f"{r['peak_reserved_gib']:>18.2f} {r['mfu']:>7.1%} "
            f"{f'{scaling:.0%}' if scaling is not None else '':>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="unsloth,hf", help="comma list of unsloth, hf")
    parser.add_argument("--seq", type=int, default=2048, help="tokens per sequence")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument(
        "--lora-dropout",
        type=float,
        default=0.0,
        help="0 lets Unsloth use its fused LoRA kernels (both backends use the same value)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_BF16_DENSE_TFLOPS,
        help="the GPU's dense bf16 peak in TFLOPS for MFU (H100 SXM / H200: 989)",
    )
    parser.add_argument(
        "--gpus",
        default="1",
        help="comma list of GPU counts to run each backend on, e.g. 1,8 (data-parallel ranks)",
    )
    parser.add_argument("--work-dir", help="where the model is written (default: a temp folder)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            "error: bench_sft_gpu needs a CUDA GPU (torch.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 2
    if args.child:
        from monGARS.mlops.errors import MongarsError
        from monGARS.mlops.training.common.distributed import current_world

        try:
            result = run_backend(args)
        except MongarsError as error:
            result = {"backend": args.child, "error": str(error)}
        if current_world().is_main:
            Path(args.result_file).write_text(json.dumps(result))
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"unsloth", "hf"})
    if unknown or not backends:
        print(f"error: --backends: {unknown or 'empty'}; use unsloth and/or hf", file=sys.stderr)
        return 2
    try:
        gpu_counts = [int(n) for n in args.gpus.split(",") if n.strip()]
    except ValueError:
        gpu_counts = []
    available = torch.cuda.device_count()
    if not gpu_counts or any(n < 1 or n > available for n in gpu_counts):
        print(f"error: --gpus {args.gpus!r}: give counts from 1 to {available}", file=sys.stderr)
        return 2
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-sft-"))
    try:
        model_dir = work / "llama-3.2-1b-shape"
        if not (model_dir / "config.json").is_file():
            print(
                f"building a random-init Llama-3.2-1B-shaped model in {model_dir} ...", flush=True
            )
            build_model(model_dir, LLAMA_32_1B)
        results = []
        for backend, gpus in [(b, n) for b in backends for n in gpu_counts]:
            result_file = work / f"result-{backend}-{gpus}.json"
            result_file.unlink(missing_ok=True)
            launcher = [sys.executable]
            if gpus > 1:  # the stages' own launch: torchrun, one rank per GPU
                launcher += ["-m", "torch.distributed.run", "--standalone"]
                launcher += [f"--nproc-per-node={gpus}"]
            command = [*launcher, __file__, "--child", backend, "--model-dir", str(model_dir)]
            command += ["--result-file", str(result_file), "--seq", str(args.seq)]
            command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
            command += ["--warmup-steps", str(args.warmup_steps), "--lora-r", str(args.lora_r)]
            command += ["--lora-dropout", str(args.lora_dropout)]
            command += ["--peak-tflops", str(args.peak_tflops)]
            print(f"running {backend} on {gpus} GPU(s) ...", flush=True)
            completed = subprocess.run(command, check=False)
            if completed.returncode != 0 or not result_file.is_file():
                error = f"exit code {completed.returncode}"
                results.append({"backend": backend, "gpus": gpus, "error": error})
                continue
            results.append(json.loads(result_file.read_text()))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    ok = [r for r in results if "error" not in r]
    print(
        f"\nQLoRA, Llama-3.2-1B shape (N={matmul_parameters(LLAMA_32_1B) / 1e9:.2f}e9 matmul "
        f"params), seq {args.seq}, batch {args.batch_size}, {args.steps} timed steps, "
        f"peak {args.peak_tflops:g} TFLOPS"
    )
    if ok:
        print(f"device: {ok[0]['device']}")
        print(_table(ok))
    for r in results:
        if "error" in r:
            print(f"{r['backend']} on {r.get('gpus', 1)} GPU(s): not run ({r['error']})")
    by_name = {r["backend"]: r for r in ok if r.get("gpus", 1) == 1}
    if {"unsloth", "hf"} <= by_name.keys():
        u, h = by_name["unsloth"], by_name["hf"]
        print(
            f"unsloth/hf: tokens/s x{u['tokens_per_second'] / h['tokens_per_second']:.2f}, "
            f"peak allocated x{u['peak_allocated_gib'] / h['peak_allocated_gib']:.2f}, "
            f"MFU x{u['mfu'] / h['mfu']:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
