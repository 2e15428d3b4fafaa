"""The writer beyond the tiny Llama: SentencePiece-style tokenizer, Qwen2, Llama 3 rope scaling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops.export.config import SAMPLE_TEXTS, ExportConfig
from monGARS.mlops.export.reference import chat_reference
from monGARS.mlops.export.tokenizer_meta import BYTE, read_tokenizer_meta
from monGARS.mlops.export.verify import verify_chat_file
from monGARS.mlops.export.writer import write_f16_gguf

pytestmark = pytest.mark.integration

SHAPE = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


def _corpus() -> list[str]:
    from monGARS.mlops.tiny_model import sample_corpus_dir

    texts: list[str] = []
    for path in sorted(sample_corpus_dir().glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.extend(str(v) for v in json.loads(line).values() if isinstance(v, str))
    return [*texts, "def f(x):\n    return x + 1\n", "for i in range(3):\n\tprint(i)\n"]


def build_spm_tokenizer(folder: Path) -> object:
    """A Llama-2-style tokenizer.json: BPE over ▁-marked words, <0xNN> byte fallback, <s></s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.pre_tokenizer = metaspace
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    trainer_tok.train_from_iterator(_corpus(), trainer=trainer)
    trained = json.loads(trainer_tok.to_str())["model"]
    # Re-number like SentencePiece: specials, 256 byte pieces, then the learned pieces in order.
    vocab: dict[str, int] = {}
    for token in [*specials, *byte_tokens]:
        vocab[token] = len(vocab)
    for token, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    model = models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True)
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = metaspace
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tokenizer.add_special_tokens(specials)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    wrapped.save_pretrained(str(folder))
    return wrapped


def build_random_model(folder: Path, model_type: str, tokenizer: object, **extra: object) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # Save first and reload: transformers picks the tokenizer class from the model type (Qwen2's
    # adds its own regex and <|endoftext|>), and the embedding rows must match what it loads.
    (folder).mkdir(parents=True, exist_ok=True)
    AutoConfig.for_model(model_type).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        rms_norm_eps=1e-6,
        **SHAPE,
        **extra,
    )
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # random biases and norms, so a dropped bias or norm shows in logits
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _check_file(folder: Path, out: Path, **verify_kwargs: object) -> dict:
    written = write_f16_gguf(folder, out, name="t")
    reference = chat_reference(folder, SAMPLE_TEXTS)
    min_cosine, max_rel = ExportConfig().logit_bounds("f16")
    result = verify_chat_file(
        out,
        reference,
        min_cosine=min_cosine,
        max_rel_diff=max_rel,
        generate_tokens=4,
        check_special_text=written["tokenizer"].special_text_parity,
        exact_next_token=False,
        **verify_kwargs,
    )
    return {"written": written, "result": result}


def test_sentencepiece_style_tokenizer_matches_hf(tmp_path: Path) -> None:
    folder = tmp_path / "spm"
    tokenizer = build_spm_tokenizer(folder)
    # Accents and symbols outside the tiny vocabulary must go through <0xNN> byte fallback.
    ids = tokenizer("x² − 7 €")["input_ids"]
    assert any(tokenizer.convert_ids_to_tokens(i).startswith("<0x") for i in ids)
    build_random_model(folder, "llama", tokenizer)
    meta = read_tokenizer_meta(folder, len(tokenizer))
    assert meta.model == "llama" and meta.pre is None and meta.add_space_prefix is True
    assert meta.token_types[3:259] == [BYTE] * 256
    checked = _check_file(folder, tmp_path / "spm.gguf")
    result = checked["result"]
    assert result["token_mismatches"] == 0, result["problems"]
    assert result["passed"], result["problems"]


def test_qwen2_converts_with_biases_and_matches(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = tmp_path / "qwen2"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    build_random_model(folder, "qwen2", tokenizer, tie_word_embeddings=True)
    checked = _check_file(folder, tmp_path / "qwen2.gguf")
    assert checked["written"]["spec"].arch == "QWEN2"
    assert checked["written"]["tokenizer"].pre == "qwen2"  # the regex HF's Qwen2Tokenizer runs
    assert checked["result"]["passed"], checked["result"]["problems"]
    assert checked["result"]["logits_rel_diff"] < 2e-3

    import gguf

    reader = gguf.GGUFReader(str(tmp_path / "qwen2.gguf"))
    names = {tensor.name for tensor in reader.tensors}
    assert "blk.0.attn_q.bias" in names and "output.weight" not in names  # tied embeddings


def test_llama3_rope_scaling_and_explicit_head_dim(tiny_model_dir: Path, tmp_path: Path) -> None:
    """rope_freqs from Llama 3.1 scaling, and a head_dim that is not hidden/heads (Mistral-Nemo)."""
    from transformers import AutoTokenizer

    folder = tmp_path / "mistral"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
        "rope_theta": 500000.0,
    }
    build_random_model(folder, "llama", tokenizer, rope_parameters=scaling, head_dim=32)
    checked = _check_file(folder, tmp_path / "l3.gguf")
    assert checked["result"]["passed"], checked["result"]["problems"]
    mistral = tmp_path / "mistral2"
    build_random_model(mistral, "mistral", tokenizer, head_dim=32, sliding_window=None)
    checked = _check_file(mistral, tmp_path / "mistral.gguf")
    assert checked["written"]["spec"].arch == "LLAMA"
    assert checked["result"]["passed"], checked["result"]["problems"]
