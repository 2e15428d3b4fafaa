"""The run console's pure parts: stage names, key figures, warnings shown once."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from monGARS.deploy.local_console import RunConsole, key_figure, stage_of

# Metadata as the stages write it (taken from a tiny run), trimmed to what the figures read.
DATASETS = {"records_kept": 190.0, "module_count": 2.0, "modules": "platform,training"}
SFT = {
    "module": "training",
    "steps": 30.0,
    "train_loss_first": 6.9716,
    "train_loss_last": 6.138,
    "eval_loss_before": 6.9635,
    "eval_loss_after": 5.9403,
}
LLM2VEC = {
    "module": "platform",
    "mntp_loss_first": 6.499,
    "mntp_loss_last": 6.466,
    "supervised_loss_first": 8.14,
    "supervised_loss_last": 0.4547,
    "retrieval_before_mrr": 0.42938,
    "retrieval_after_mrr": 0.38860,
    "retrieval_after_recall_at_1": 0.25,
}
EXPORT = {
    "chat_files": 3.0,
    "encoder_files": 3.0,
    "total_bytes": 12778048.0,
    "verified": 1.0,
    "chat_q4_k_m_logits_min_cosine": 0.98626,
    "encoder_f16_embedding_min_cosine": 0.99999,
}


@pytest.mark.parametrize(
    ("task", "stage"),
    [
        ("sft", "sft"),
        ("merge-adapter-2", "merge_adapter"),
        ("build-datasets", "build_datasets"),
        ("raft-merge", "raft_merge"),
    ],
)
def test_stage_comes_from_the_task_name(task: str, stage: str) -> None:
    assert stage_of(task) == stage


@pytest.mark.parametrize(
    ("metadata", "figure"),
    [
        (DATASETS, "190 records kept, 2 modules (platform, training)"),
        (SFT, "train loss 6.97 -> 6.14 in 30 steps; eval loss 6.96 -> 5.94"),
        (LLM2VEC, "retrieval MRR 0.429 -> 0.389; loss mntp 6.5 -> 6.47, supervised 8.14 -> 0.455"),
        (
            EXPORT,
            "6 GGUF files, 12.2 MB, verified in llama.cpp, min cosine vs HF 0.986",
        ),
        ({"model_type": "llama", "parameters": 1705216.0}, "llama model, 1.71M parameters"),
        (
            {"model_type": "llama", "architectures": "LlamaForCausalLM"},
            "llama model (LlamaForCausalLM)",
        ),
        (
            {"module": "api", "raft": "off", "adapter_from": "sft"},
            "off (raft=false): the sft adapter passed on",
        ),
        (
            {
                "module": "api",
                "quant": "Q8_0",
                "items": 6,
                "tuned_assistant_nll": 5.5946,
                "base_assistant_nll": 7.0001,
                "tuned_token_f1": 0.2026,
                "tuned_french_share": 1.0,
            },
            "NLL base 7.000 -> tuned 5.595, F1 0.20, French 1.00 (Q8_0, 6 items)",
        ),
        ({"promoted_modules": 1, "rejected_modules": 1}, "1 promoted, 1 rejected"),
        ({"something": "else"}, ""),
    ],
)
def test_key_figure_reads_what_the_stage_wrote(metadata: dict, figure: str) -> None:
    assert key_figure(metadata) == figure


def test_warning_is_shown_once_however_it_varies(tmp_path: Path) -> None:
    out = io.StringIO()
    console = RunConsole(tmp_path, out=out, tty=False, stamp="t")
    console.note_warning("sft", "/x/a.py:12: UserWarning: Task 'sft': settings ['cpu'] ignored")
    console.note_warning("sft", "/x/a.py:12: UserWarning: Task 'llm2vec': settings ['gpu'] ignored")
    console.note_warning("", "[KFP Executor 2026-11-29 16:05:48,914 WARNING]: took 12 s")
    console.note_warning("", "[KFP Executor 2026-11-29 16:07:01,100 WARNING]: took 3 s")
    lines = out.getvalue().splitlines()
    assert lines == [
        "  warning (sft): UserWarning: Task 'sft': settings ['cpu'] ignored",
        "  warning: took 12 s",
    ]


def test_warnings_beyond_the_limit_are_counted_not_printed(tmp_path: Path) -> None:
    out = io.StringIO()
    console = RunConsole(tmp_path, out=out, tty=False, stamp="t")
    for index in range(20):
        console.note_warning("", f"FutureWarning: option_{chr(97 + index)} is deprecated")
    assert len(out.getvalue().splitlines()) == len(console.warnings_shown) < 20
    assert console.warnings_hidden == 20 - len(console.warnings_shown)
