"""Backend selection (availability injected) and the vram_budget_mb memory plan."""

from __future__ import annotations

import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.training.common.backends import (
    UNSLOTH_CPU_ENV,
    Environment,
    check_target_modules,
    detect_environment,
    estimate_memory_mb,
    plan_memory,
    select_backend,
)

CPU = Environment(cuda=False, unsloth=False, unsloth_error="no CUDA device")
GPU_NO_UNSLOTH = Environment(cuda=True, unsloth=False, unsloth_error="No module named 'unsloth'")
GPU_UNSLOTH = Environment(cuda=True, unsloth=True, bf16=True)
CPU_UNSLOTH_OPT_IN = Environment(cuda=False, unsloth=True, unsloth_cpu=True)

LLAMA_1B = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": True,
}


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        ("auto", CPU, "hf"),
        ("auto", GPU_NO_UNSLOTH, "hf"),
        ("auto", GPU_UNSLOTH, "unsloth"),
        ("hf", GPU_UNSLOTH, "hf"),
        ("hf", CPU, "hf"),
        ("unsloth", GPU_UNSLOTH, "unsloth"),
        ("unsloth", CPU_UNSLOTH_OPT_IN, "unsloth"),
        ("auto", CPU_UNSLOTH_OPT_IN, "hf"),  # auto never picks Unsloth's CPU fallback
    ],
)
def test_select_backend(requested: str, env: Environment, expected: str) -> None:
    assert select_backend(requested, env) == expected


@pytest.mark.parametrize("env", [CPU, GPU_NO_UNSLOTH])
def test_unsloth_requested_where_it_cannot_run(env: Environment) -> None:
    with pytest.raises(MongarsError) as caught:
        select_backend("unsloth", env)
    message = str(caught.value)
    assert message.startswith("backend: unsloth cannot run here")
    assert env.unsloth_error in message and "backend=hf" in message


@pytest.mark.parametrize("ranks", [1, 2])
def test_hf_on_cuda_without_bitsandbytes_is_refused_up_front(ranks: int) -> None:
    """The CPU stack leaves bitsandbytes out (pyproject's ``cuda`` extra): a CUDA machine without
    it would fail deep inside model loading; it is refused before anything loads, saying how."""
    no_bnb = Environment(cuda=True, unsloth=False, unsloth_error="x", bitsandbytes=False)
    for requested in ("auto", "hf"):
        with pytest.raises(MongarsError) as caught:
            select_backend(requested, no_bnb, ranks)
        message = str(caught.value)
        assert message.startswith("backend: hf trains in 4-bit on CUDA and needs bitsandbytes")
        assert "mongars-mlops[cuda]" in message and "\n" not in message
    # Unsloth still runs where it imports; CPU never needs bitsandbytes.
    assert (
        select_backend("auto", Environment(cuda=True, unsloth=True, bitsandbytes=False))
        == "unsloth"
    )
    assert select_backend("hf", Environment(cuda=False, unsloth=False, bitsandbytes=False)) == "hf"


def test_detect_environment_reports_bitsandbytes_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    real_find_spec = importlib.util.find_spec
    for installed in (True, False):

        def find_spec(name: str, *args, installed=installed):
            if name == "bitsandbytes":
                return object() if installed else None
            return real_find_spec(name, *args)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        env = detect_environment(probe_unsloth=False)
        assert env.cuda and env.bitsandbytes is installed


def test_unsloth_refusal_names_the_cpu_opt_in() -> None:
    with pytest.raises(MongarsError, match=f"{UNSLOTH_CPU_ENV}=1"):
        select_backend("unsloth", CPU)


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_opt_in_imports_unsloth_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable Unsloth is not even imported on CPU; with it, an import failure is
    reported as the reason, and a working import allows the backend."""
    import sys
    import types

    _no_cuda(monkeypatch)
    monkeypatch.setitem(sys.modules, "unsloth", None)  # `import unsloth` raises ImportError
    monkeypatch.delenv(UNSLOTH_CPU_ENV, raising=False)
    assert detect_environment() == CPU
    monkeypatch.setenv(UNSLOTH_CPU_ENV, "1")
    broken = detect_environment()
    assert (broken.unsloth, broken.unsloth_cpu) == (False, False)
    assert "unsloth" in broken.unsloth_error
    with pytest.raises(MongarsError, match="backend: unsloth cannot run here"):
        select_backend("unsloth", broken)
    assert detect_environment(probe_unsloth=False) == CPU  # backend=hf never imports it
    monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))
    assert detect_environment() == CPU_UNSLOTH_OPT_IN


def test_unknown_target_module_lists_the_models_linear_modules() -> None:
    available = ["down_proj", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj", "v_proj"]
    check_target_modules(["q_proj", "v_proj"], available, "llama")
    with pytest.raises(MongarsError) as caught:
        check_target_modules(["q_proj", "c_attn"], available, "llama")
    assert str(caught.value) == (
        "target_modules: c_attn not found in this llama model; its linear modules are "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, v_proj"
    )


def _plan(budget: int, batch: int = 4, accumulation: int = 4, device: str = "cuda"):
    return plan_memory(
        LLAMA_1B,
        device=device,
        vram_budget_mb=budget,
        batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_seq_length=2048,
        lora_r=16,
    )


def test_cpu_and_zero_budget_keep_the_configured_batch() -> None:
    cpu = _plan(1000, device="cpu")
    assert (cpu.batch_size, cpu.gradient_accumulation_steps, cpu.gradient_checkpointing) == (
        4,
        4,
        False,
    )
    unbounded = _plan(0)
    assert (unbounded.batch_size, unbounded.gradient_accumulation_steps) == (4, 4)
    assert unbounded.gradient_checkpointing


def test_large_budget_runs_the_whole_effective_batch_without_checkpointing() -> None:
    plan = _plan(200_000)
    assert (plan.batch_size, plan.gradient_accumulation_steps) == (16, 1)
    assert not plan.gradient_checkpointing
    assert plan.estimated_mb <= 200_000


def test_budget_shrinks_micro_batch_and_keeps_effective_batch() -> None:
    previous = 17
    for budget in (80_000, 40_000, 24_000, 16_000, 8_000):
        plan = _plan(budget)
        assert plan.batch_size * plan.gradient_accumulation_steps == 16
        assert plan.estimated_mb <= budget
        assert plan.batch_size <= previous
        previous = plan.batch_size
    # A small card needs checkpointing to fit even a handful of 2048-token sequences.
    assert _plan(8_000).gradient_checkpointing


def test_budget_too_small_is_refused_with_the_need() -> None:
    need = estimate_memory_mb(LLAMA_1B, 16, 1, 2048, True)
    with pytest.raises(MongarsError) as caught:
        _plan(need - 1)
    assert str(caught.value).startswith("vram_budget_mb: ")
    assert f"about {need} MiB" in str(caught.value)
    assert _plan(need).batch_size == 1


def test_checkpointing_estimate_is_smaller() -> None:
    plain = estimate_memory_mb(LLAMA_1B, 16, 4, 2048, False)
    checkpointed = estimate_memory_mb(LLAMA_1B, 16, 4, 2048, True)
    assert checkpointed < plain
    # 4-bit weights of a 1.2B model plus bf16 embeddings: a few hundred MiB to ~1.5 GiB.
    assert 1024 + 500 < estimate_memory_mb(LLAMA_1B, 16, 0, 2048, True) < 1024 + 1500
