"""Object-store bytes per run at 7B, computed from the compiled pipeline's artifact list.

Every output artifact of every task in ``pipelines/mongars.yaml`` is matched to a size model below
(a new artifact without one stops the script, so the figures cannot silently miss it). Sizes come
from the model's shape (Mistral-7B-v0.2 by default) and the dtypes the stages write:

* the merged chat model: float32 (``modeling.load_causal_lm``'s default dtype, merge_adapter);
* the encoder: bfloat16 (llm2vec's ``dtype: auto`` on a bf16-capable GPU);
* LoRA adapters: float32 ``lora_A``/``lora_B`` on q, k, v, o, gate, up, down (rank 16);
* GGUF: f16 2 bytes/parameter, q8_0 34 bytes per 32, q4_k_m 4.83 bits (llama.cpp's figure for
  Mistral-7B), for the chat model and (``quantize_encoder``) the encoder;
* datasets: ``--datasets-gb`` (the corpora you configure; the shipped sample is 0.001 GB);
* summaries, metrics, references, HTML: 1 MB each at most.

It also prints what the report task downloads (its input artifacts) and, with ``raft=false``, the
GPU pod the old pass-through held per module (bytes it downloaded ÷ ``--throughput-mbs``: an
estimate, not a measurement).

    python bench/object_store_bytes.py                      # 1 and 8 modules
    python bench/object_store_bytes.py --datasets-gb 5 --modules 1 4 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

GB = 1e9
SMALL = 1e6  # summaries, metrics, references, HTML: an upper bound


def mistral_7b() -> dict[str, int]:
    return {
        "hidden": 4096,
        "intermediate": 14336,
        "layers": 32,
        "heads": 32,
        "kv_heads": 8,
        "vocab": 32000,
    }


def parameters(shape: dict[str, int]) -> int:
    hidden, inter, layers = shape["hidden"], shape["intermediate"], shape["layers"]
    kv = hidden * shape["kv_heads"] // shape["heads"]
    attention = 2 * hidden * hidden + 2 * hidden * kv
    mlp = 3 * hidden * inter
    norms = 2 * hidden
    return layers * (attention + mlp + norms) + 2 * shape["vocab"] * hidden + hidden


def lora_parameters(shape: dict[str, int], rank: int) -> int:
    hidden, inter = shape["hidden"], shape["intermediate"]
    kv = hidden * shape["kv_heads"] // shape["heads"]
    per_layer = rank * (
        2 * (hidden + hidden) + 2 * (hidden + kv) + 2 * (hidden + inter) + (inter + hidden)
    )
    return shape["layers"] * per_layer


def artifact_sizes(shape: dict[str, int], datasets_gb: float, rank: int) -> dict[str, float]:
    """Bytes of each (component, output artifact) of the compiled pipeline."""
    n = parameters(shape)
    gguf_one = n * 2 + n * 34 / 32 + n * 4.83 / 8  # f16 + q8_0 + q4_k_m
    adapter = lora_parameters(shape, rank) * 4
    return {
        "build-datasets/datasets": datasets_gb * GB,
        "build-datasets/summary": SMALL,
        "build-datasets/stage_summary": SMALL,
        "fetch-base-model/model": SMALL,  # a reference: the weights stay on the volume
        "sft/adapter": adapter,
        "sft/loss_curve": SMALL,
        "sft/metrics": SMALL,
        "sft/stage_summary": SMALL,
        "llm2vec/encoder": n * 2,
        "llm2vec/metrics": SMALL,
        "llm2vec/stage_summary": SMALL,
        "raft/adapter": adapter,
        "raft/metrics": SMALL,
        "merge-adapter/merged": n * 4,
        "export/gguf": 2 * gguf_one,
        "export/metrics": SMALL,
        "export/stage_summary": SMALL,
        "report/report_html": SMALL,
        "report/metrics": SMALL,
    }


PER_MODULE = {"sft", "llm2vec", "raft", "merge-adapter", "export"}


def outputs_of(spec: dict) -> dict[str, list[str]]:
    """Output artifact names per executor component (``comp-<name>``)."""
    found = {}
    for name, component in spec["components"].items():
        if "executorLabel" in component:
            outputs = (component.get("outputDefinitions") or {}).get("artifacts") or {}
            found[name.removeprefix("comp-")] = sorted(outputs)
    return found


def run_bytes(spec: dict, sizes: dict[str, float], modules: int, raft: bool) -> float:
    total = 0.0
    for component, outputs in outputs_of(spec).items():
        if component == "raft" and not raft:
            continue
        for output in outputs:
            key = f"{component}/{output}"
            if key not in sizes:
                raise SystemExit(f"no size model for {key}: add it to artifact_sizes()")
            total += sizes[key] * (modules if component in PER_MODULE else 1)
    return total


def report_download(spec: dict, sizes: dict[str, float], modules: int) -> float:
    """What the launcher copies into the report pod: every input artifact, collected lists too."""
    task = spec["root"]["dag"]["tasks"]["report"]
    total = 0.0
    for source in (task.get("inputs") or {}).get("artifacts", {}).values():
        output = source["taskOutputArtifact"]
        producer, key = output["producerTask"], output["outputArtifactKey"]
        if producer.startswith("for-loop"):
            # pipelinechannel--<task>-<output>: one per module
            name = key.removeprefix("pipelinechannel--")
            component, _, artifact = next(
                (c, "-", name[len(c) + 1 :])
                for c in sorted(PER_MODULE, key=len, reverse=True)
                if name.startswith(c + "-")
            )
            total += sizes[f"{component}/{artifact}"] * modules
        else:
            total += sizes[f"{producer}/{key}"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pipeline", default=str(Path(__file__).parents[1] / "pipelines/mongars.yaml")
    )
    parser.add_argument("--modules", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--datasets-gb", type=float, default=1.0)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--throughput-mbs", type=float, default=150.0)
    args = parser.parse_args()
    spec = next(yaml.safe_load_all(Path(args.pipeline).read_text(encoding="utf-8")))
    shape = mistral_7b()
    sizes = artifact_sizes(shape, args.datasets_gb, args.lora_r)
    print(f"model: Mistral-7B shape, {parameters(shape) / 1e9:.2f}B parameters; datasets "
          f"{args.datasets_gb} GB; LoRA rank {args.lora_r}")  # fmt: skip
    for key, value in sizes.items():
        if value > SMALL:
            print(f"  {key:32s} {value / GB:8.2f} GB")
    print("modules  raft   object store per run   report downloads")
    for modules in args.modules:
        for raft in (False, True):
            total = run_bytes(spec, sizes, modules, raft)
            print(
                f"{modules:7d}  {str(raft).lower():5s}  {total / GB:17.1f} GB   "
                f"{report_download(spec, sizes, modules) / GB:12.3f} GB"
            )
    old_pass_through = (
        sizes["llm2vec/encoder"] + sizes["sft/adapter"] + sizes["build-datasets/datasets"]
    )
    print(
        f"raft=false before this pipeline: one GPU pod per module downloaded "
        f"{old_pass_through / GB:.1f} GB (encoder, adapter, datasets) to copy an adapter: "
        f"~{old_pass_through / (args.throughput_mbs * 1e6) / 60:.1f} GPU-minutes per module at "
        f"{args.throughput_mbs:.0f} MB/s, plus scheduling and image pull; now 0"
    )


if __name__ == "__main__":
    main()
