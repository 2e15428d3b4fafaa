"""Which training backend runs, how much GPU memory it may use, and how the LoRA model is built.

Two backends build the same thing, a frozen base model with LoRA adapters on ``target_modules``:

- ``unsloth``: ``FastLanguageModel`` in 4-bit with Unsloth's fused kernels (CUDA only);
- ``hf``: transformers + peft, with bitsandbytes NF4 double-quant 4-bit on CUDA (QLoRA) and full
  fp32 precision on CPU.

Availability is passed in as an ``Environment`` so selection is testable without a GPU.

Tests opt in to Unsloth's CPU fallback with ``MONGARS_UNSLOTH_CPU=1`` (docs/sft.md): without
CUDA, ``backend=unsloth`` then imports Unsloth, which trains on CPU, instead of being refused.
``auto`` never picks Unsloth on CPU. The container tier uses it to run the unsloth code path in
the CUDA image on a machine without a GPU; it is not meant for real training.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

UNSLOTH_CPU_ENV = "MONGARS_UNSLOTH_CPU"
"""Set to ``1`` to let ``backend=unsloth`` run on Unsloth's CPU fallback (tests only)."""


@dataclasses.dataclass(frozen=True)
class Environment:
    """What the machine offers: CUDA, and whether ``import unsloth`` works (and why not).

    ``unsloth_cpu``: no CUDA, but ``MONGARS_UNSLOTH_CPU=1`` asked for Unsloth's CPU fallback and
    Unsloth imported. ``bitsandbytes``: installed (the ``cuda`` extra; the hf backend's 4-bit
    loading on CUDA needs it, nothing on CPU does).
    """

    cuda: bool
    unsloth: bool
    unsloth_error: str = ""
    bf16: bool = False
    unsloth_cpu: bool = False
    bitsandbytes: bool = True


def _import_unsloth() -> str:
    """Import Unsloth (it patches transformers for the process); the first error line, or ""."""
    try:
        import unsloth  # noqa: F401  (imported first so it can patch transformers)
    except Exception as error:  # unsloth raises many kinds of errors on a bad install
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return reason[:200]
    return ""


def detect_environment(probe_unsloth: bool = True) -> Environment:
    """Probe CUDA, then Unsloth (only with CUDA, unless ``MONGARS_UNSLOTH_CPU=1``).

    Importing unsloth patches transformers for the whole process, so a run that asked for the
    ``hf`` backend passes ``probe_unsloth=False`` and stays unpatched.
    """
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        if probe_unsloth and os.environ.get(UNSLOTH_CPU_ENV) == "1":
            error = _import_unsloth()
            return Environment(
                cuda=False, unsloth=not error, unsloth_error=error, unsloth_cpu=not error
            )
        return Environment(cuda=False, unsloth=False, unsloth_error="no CUDA device")
    bf16 = bool(torch.cuda.is_bf16_supported())
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    if not probe_unsloth:
        return Environment(
            cuda=True, unsloth=False, unsloth_error="not probed", bf16=bf16, bitsandbytes=bnb
        )
    error = _import_unsloth()
    return Environment(
        cuda=True, unsloth=not error, unsloth_error=error, bf16=bf16, bitsandbytes=bnb
    )


def probes_unsloth(requested: str, ranks: int) -> bool:
    """Whether the run may pick Unsloth, so ``detect_environment`` must import (probe) it."""
    return requested == "unsloth" or (requested == "auto" and ranks == 1)


def select_backend(requested: str, env: Environment, ranks: int = 1) -> str:
    """Resolve ``auto`` and refuse ``unsloth`` where it cannot run.

    With several data-parallel ranks ``auto`` is ``hf``: Unsloth documents DDP under torchrun,
    but it is not verified on this project's image yet (docs/sft.md, "Several GPUs");
    ``backend=unsloth`` opts in.
    """
    if requested == "auto":
        requested = "unsloth" if env.cuda and env.unsloth and ranks == 1 else "hf"
    if requested == "hf" and env.cuda and not env.bitsandbytes:
        raise MongarsError(
            "backend: hf trains in 4-bit on CUDA and needs bitsandbytes, which is not installed; "
            "pip install 'mongars-mlops[cuda]', or run on the CUDA training image (it has it)"
        )
    if requested == "unsloth" and not (env.unsloth and (env.cuda or env.unsloth_cpu)):
        raise MongarsError(
            f"backend: unsloth cannot run here "
            f"({env.unsloth_error or 'unsloth is not importable'}); "
            "use backend=hf or auto, or run on the CUDA training image "
            f"({UNSLOTH_CPU_ENV}=1 lets tests use Unsloth's CPU fallback)"
        )
    if requested not in ("unsloth", "hf"):
        raise MongarsError(f"backend: {requested!r} is unknown; use auto, unsloth or hf")
    return requested


# ---------------------------------------------------------------------------- target modules


def linear_module_names(base_model_dir: Path) -> list[str]:
    """Leaf names of the model's ``nn.Linear`` layers, from its config on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(base_model_dir))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MongarsError(
            f"base_model: transformers cannot build a causal LM from {base_model_dir}/config.json "
            f"({reason[:200]}); give a supported model"
        ) from None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    return sorted(names)


def check_target_modules(target_modules: list[str], available: list[str], model_type: str) -> None:
    """Refuse target modules the model does not have, listing the ones it does."""
    unknown = [name for name in target_modules if name.rsplit(".", 1)[-1] not in available]
    if unknown:
        raise MongarsError(
            f"target_modules: {', '.join(unknown)} not found in this {model_type} model; "
            f"its linear modules are {', '.join(available)}"
        )


# ---------------------------------------------------------------------------- memory plan


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Micro batch, accumulation and checkpointing the run uses, with the estimate behind them."""

    batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    estimated_mb: int
    reason: str


_OVERHEAD_MB = 1024  # CUDA context, cuBLAS workspaces, allocator fragmentation
_MIB = 1024 * 1024


def _shape(model_config: dict[str, Any]) -> tuple[int, int, int, int, int, bool]:
    hidden = int(model_config["hidden_size"])
    layers = int(model_config["num_hidden_layers"])
    inter = int(model_config.get("intermediate_size", 4 * hidden))
    vocab = int(model_config["vocab_size"])
    heads = int(model_config.get("num_attention_heads", 1))
    kv_heads = int(model_config.get("num_key_value_heads", heads))
    head_dim = int(model_config.get("head_dim") or hidden // heads)
    tied = bool(model_config.get("tie_word_embeddings", False))
    return hidden, layers, inter, vocab, kv_heads * head_dim, tied


def estimate_memory_mb(
    model_config: dict[str, Any], lora_r: int, micro_batch: int, seq: int, checkpointing: bool
) -> int:
    """Rough peak GPU memory of a 4-bit QLoRA step (documented in docs/sft.md).

    weights: linear layers at 4.25 bits (NF4 + double-quantised scales), embeddings and the LM head
    in bf16; LoRA: fp32 weights, grads and two Adam moments (16 bytes/param); activations per token
    and layer in bf16 ~ 2*(8h + 2kv + 4i) bytes, or only the layer input (2h) with checkpointing
    plus one recomputed layer; logits: fp32 values and gradient (8 bytes per vocab entry per token).
    """
    hidden, layers, inter, vocab, kv_dim, tied = _shape(model_config)
    linear_params = layers * (2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * inter)
    embed_params = vocab * hidden * (1 if tied else 2)
    weights = linear_params * 4.25 / 8 + embed_params * 2
    lora_params = (
        layers * lora_r * ((hidden + hidden) * 2 + (hidden + kv_dim) * 2 + (hidden + inter) * 3)
    )
    lora = lora_params * 16
    per_layer_token = 2 * (8 * hidden + 2 * kv_dim + 4 * inter)
    # Checkpointing keeps each layer's input and recomputes one layer at a time.
    per_token = (
        (layers * 2 * hidden + per_layer_token) if checkpointing else layers * per_layer_token
    )
    activations = micro_batch * seq * (per_token + 8 * vocab)
    return math.ceil((weights + lora + activations) / _MIB) + _OVERHEAD_MB


def plan_memory(
    model_config: dict[str, Any],
    *,
    device: str,
    vram_budget_mb: int,
    batch_size: int,
    gradient_accumulation_steps: int,
    max_seq_length: int,
    lora_r: int,
) -> MemoryPlan:
    """Pick micro batch / accumulation / checkpointing so the effective batch stays the same.

    The effective batch (batch_size x accumulation) is kept; the micro batch is the largest
    divisor of it whose estimate fits ``vram_budget_mb``, first without gradient checkpointing,
    then with it. Checkpointing costs about a third more compute, so it is chosen only when it
    allows a micro batch more than 4/3 larger. CPU runs and a zero budget keep the values given.
    """
    effective = batch_size * gradient_accumulation_steps

    def estimate(micro: int, gc: bool) -> int:
        return estimate_memory_mb(model_config, lora_r, micro, max_seq_length, gc)

    if device != "cuda":
        return MemoryPlan(batch_size, gradient_accumulation_steps, False, 0, "cpu: as configured")
    if vram_budget_mb == 0:
        return MemoryPlan(
            batch_size,
            gradient_accumulation_steps,
            True,
            estimate(batch_size, True),
            "no vram_budget_mb: as configured, gradient checkpointing on",
        )
    divisors = [d for d in range(effective, 0, -1) if effective % d == 0]
    fit_plain = next((d for d in divisors if estimate(d, False) <= vram_budget_mb), 0)
    fit_gc = next((d for d in divisors if estimate(d, True) <= vram_budget_mb), 0)
    if fit_gc == 0:
        raise MongarsError(
            f"vram_budget_mb: {vram_budget_mb} MiB is too small; one sequence of "
            f"{max_seq_length} tokens needs about {estimate(1, True)} MiB with gradient "
            "checkpointing; raise the budget or lower max_seq_length"
        )
    if fit_plain and fit_plain * 4 >= fit_gc * 3:
        micro, gc = fit_plain, False
    else:
        micro, gc = fit_gc, True
    return MemoryPlan(
        micro,
        effective // micro,
        gc,
        estimate(micro, gc),
        f"vram_budget_mb={vram_budget_mb}: micro batch {micro}, "
        f"checkpointing {'on' if gc else 'off'}",
    )


# ---------------------------------------------------------------------------- model loading


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    r: int
    alpha: int
    dropout: float
    target_modules: list[str]
    seed: int
    max_seq_length: int


def load_for_training(
    backend: str,
    base_model_dir: Path,
    lora: LoraSettings,
    plan: MemoryPlan,
    env: Environment,
    *,
    local_rank: int | None = None,
) -> Any:
    """The base model with fresh LoRA adapters, ready for the Trainer.

    ``local_rank``: a data-parallel rank's GPU; its own full copy of the 4-bit base goes there
    (``device_map={"": local_rank}``). ``None``: a single process, GPU 0.
    """
    from transformers import set_seed

    set_seed(lora.seed)  # LoRA A matrices are random: same seed, same initial adapter
    if backend == "unsloth":
        return _load_unsloth(base_model_dir, lora, plan, local_rank)
    return _load_hf(base_model_dir, lora, plan, env, local_rank or 0)


def _load_unsloth(
    base_model_dir: Path, lora: LoraSettings, plan: MemoryPlan, local_rank: int | None
) -> Any:
    from unsloth import FastLanguageModel

    gc: str | bool = "unsloth" if plan.gradient_checkpointing else False
    # Under torchrun Unsloth would pick the rank's GPU itself (unsloth/models/loader_utils.py:
    # prepare_device_map, for a string device_map); the explicit map says so and leaves a
    # single process on Unsloth's own default.
    placement = {} if local_rank is None else {"device_map": {"": f"cuda:{local_rank}"}}
    model, _tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_model_dir),
        max_seq_length=lora.max_seq_length,
        dtype=None,
        load_in_4bit=True,
        use_gradient_checkpointing=gc,
        **placement,
    )
    return FastLanguageModel.get_peft_model(
        model,
        r=lora.r,
        target_modules=list(lora.target_modules),
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias="none",
        use_gradient_checkpointing=gc,
        random_state=lora.seed,
        max_seq_length=lora.max_seq_length,
    )


def _lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _load_hf(
    base_model_dir: Path, lora: LoraSettings, plan: MemoryPlan, env: Environment, device: int
) -> Any:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    if not env.cuda:
        model = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype=torch.float32)
        return get_peft_model(model, _lora_config(lora))

    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    compute_dtype = torch.bfloat16 if env.bf16 else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(base_model_dir),
        quantization_config=quantization,
        dtype=compute_dtype,
        device_map={"": device},
    )
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=plan.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return get_peft_model(model, _lora_config(lora))
