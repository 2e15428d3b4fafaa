"""Benchmark the GGUF export: f16 writing and q8_0 quantisation of a >= 0.5B-parameter model.

A random-init Llama-shaped checkpoint (bf16 safetensors, as hub checkpoints are stored) is written
to a scratch folder; then, in the same run, the script times

* copying its safetensors files (the I/O floor: no conversion can beat reading + writing them),
* writing the f16 GGUF with the built-in writer,
* quantising that file to q8_0 with llama.cpp,

and prints seconds and MB/s (of output written) for each. ``--small`` runs a tiny shape quickly.

    python bench/bench_export.py            # ~0.54B parameters
    python bench/bench_export.py --small    # a few seconds
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

FULL = {
    "hidden": 1024,
    "intermediate": 4096,
    "layers": 28,
    "heads": 16,
    "kv_heads": 8,
    "vocab": 32768,
}
SMALL = {"hidden": 256, "intermediate": 1024, "layers": 4, "heads": 4, "kv_heads": 2, "vocab": 4096}


def parameter_count(shape: dict[str, int]) -> int:
    h, i, kv = shape["hidden"], shape["intermediate"], shape["kv_heads"]
    head_dim = h // shape["heads"]
    per_layer = 2 * h * h + 2 * h * kv * head_dim + 3 * h * i + 2 * h
    return shape["layers"] * per_layer + 2 * shape["vocab"] * h + h


def build_checkpoint(folder: Path, shape: dict[str, int], seed: int = 0) -> int:
    """Write config, tokenizer and random bf16 weights tensor by tensor (no model init needed)."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from monGARS.mlops.tiny_model import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    h, i, kv = shape["hidden"], shape["intermediate"], shape["kv_heads"]
    head_dim = h // shape["heads"]
    LlamaConfig(
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=kv,
        vocab_size=shape["vocab"],
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    ).save_pretrained(str(folder))
    build_tokenizer().save_pretrained(str(folder))
    generator = torch.Generator().manual_seed(seed)

    def rand(*size: int) -> torch.Tensor:
        return (torch.randn(*size, generator=generator) * 0.02).to(torch.bfloat16)

    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (shape["vocab"], h),
        "model.norm.weight": (h,),
        "lm_head.weight": (shape["vocab"], h),
    }
    for layer in range(shape["layers"]):
        prefix = f"model.layers.{layer}."
        shapes.update(
            {
                prefix + "self_attn.q_proj.weight": (h, h),
                prefix + "self_attn.k_proj.weight": (kv * head_dim, h),
                prefix + "self_attn.v_proj.weight": (kv * head_dim, h),
                prefix + "self_attn.o_proj.weight": (h, h),
                prefix + "mlp.gate_proj.weight": (i, h),
                prefix + "mlp.up_proj.weight": (i, h),
                prefix + "mlp.down_proj.weight": (h, i),
                prefix + "input_layernorm.weight": (h,),
                prefix + "post_attention_layernorm.weight": (h,),
            }
        )
    # Shards of ~1 GB, like hub checkpoints.
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = index = total = 0
    weight_map: dict[str, str] = {}
    names = list(shapes)
    for position, name in enumerate(names):
        tensor = (
            torch.ones(shapes[name], dtype=torch.bfloat16)
            if name.endswith("norm.weight")
            else rand(*shapes[name])
        )
        shard[name] = tensor
        shard_bytes += tensor.numel() * 2
        total += tensor.numel()
        if shard_bytes >= 1 << 30 or position == len(names) - 1:
            index += 1
            file_name = f"model-{index:05d}.safetensors"
            save_file(shard, str(folder / file_name), metadata={"format": "pt"})
            weight_map.update({key: file_name for key in shard})
            shard, shard_bytes = {}, 0
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}), encoding="utf-8"
    )
    return total


def timed(label: str, action, output: Path) -> dict[str, float]:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    size = (
        sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
        if output.is_dir()
        else output.stat().st_size
    )
    megabytes = size / 1e6
    print(
        f"{label:<28} {seconds:8.2f} s  {megabytes:9.1f} MB  {megabytes / seconds:8.1f} MB/s",
        flush=True,
    )
    return {"seconds": seconds, "megabytes": megabytes, "mb_per_s": megabytes / seconds}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny shape for a quick run")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="quantiser threads (default: all)"
    )
    args = parser.parse_args(argv)

    from monGARS.mlops.export.quantize import quantize_gguf
    from monGARS.mlops.export.writer import write_f16_gguf

    shape = SMALL if args.small else FULL
    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch_name:
        scratch = Path(scratch_name)
        model = scratch / "model"
        start = time.perf_counter()
        count = build_checkpoint(model, shape)
        print(
            f"random checkpoint: {count / 1e9:.3f} B parameters "
            f"({parameter_count(shape) / 1e9:.3f} B by formula), "
            f"built in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        copy_dir = scratch / "copy"
        copy_dir.mkdir()

        def copy() -> None:
            for path in sorted(model.glob("*.safetensors")):
                shutil.copyfile(path, copy_dir / path.name)

        f16 = scratch / "model-F16.gguf"
        q8 = scratch / "model-Q8_0.gguf"
        results = {
            "copy_safetensors": timed("copy safetensors (floor)", copy, copy_dir),
            "write_f16": timed(
                "write f16 GGUF", lambda: write_f16_gguf(model, f16, name="bench"), f16
            ),
            "quantize_q8_0": timed(
                "quantise f16 -> q8_0", lambda: quantize_gguf(f16, q8, "q8_0", args.threads), q8
            ),
        }
        floor = results["copy_safetensors"]["seconds"]
        both = results["write_f16"]["seconds"] + results["quantize_q8_0"]["seconds"]
        print(
            f"f16 write is {results['write_f16']['seconds'] / floor:.1f}x the copy floor; "
            f"f16 + q8_0 together {both / floor:.1f}x"
        )
    return results


if __name__ == "__main__":
    main()
