"""The llm2vec stage against the official ``llm2vec`` package where the project says it matches.

Reference values come from two places, each named where it is used:

- the upstream source (McGill-NLP/llm2vec @312adcf): ``experiments/run_mntp.py``,
  ``experiments/run_simcse.py``, ``llm2vec/llm2vec.py``, ``train_configs/mntp/*.json``;
- ``tests/fixtures/llm2vec/upstream_reference.json``, recorded by running the official package
  (llm2vec 0.2.3, transformers 4.44.2, torch 2.13.0 CPU) in its own virtual environment with
  ``tests/fixtures/llm2vec/upstream_reference.py`` (the command is in its docstring).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.training.common.retrieval_eval import evaluate_retrieval
from monGARS.mlops.training.llm2vec.bidirectional import enable_bidirectional
from monGARS.mlops.training.llm2vec.config import Llm2VecConfig
from monGARS.mlops.training.llm2vec.encoder import embed_texts, prepare_tokenizer
from monGARS.mlops.training.llm2vec.instruction import (
    DEFAULT_QUERY_INSTRUCTION,
    instructed_text,
    pooled_span,
)
from monGARS.mlops.training.llm2vec.mntp import resolve_mask_token_id
from monGARS.mlops.training.llm2vec.simcse import simcse_dropout
from monGARS.mlops.training.llm2vec.upstream import load_llm2vec_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llm2vec"
REFERENCE = json.loads((FIXTURES / "upstream_reference.json").read_text(encoding="utf-8"))


def _reference_module() -> Any:
    """tests/fixtures/llm2vec/upstream_reference.py: the tiny model's shape and weights."""
    spec = importlib.util.spec_from_file_location(
        "upstream_reference", FIXTURES / "upstream_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mistral() -> Any:
    from sentencepiece_vocab import mistral_tokenizer

    return mistral_tokenizer()


# --- 1. MNTP's blank mask token -------------------------------------------------------------


def test_the_shipped_sentencepiece_vocabulary_tokenises_as_sentencepiece_does(
    mistral: Any,
) -> None:
    # Ids from the sentencepiece-backed tokenizer in the reference environment.
    for text, ids in REFERENCE["tokens"].items():
        assert mistral(text)["input_ids"] == ids, text


def test_blank_mask_token_is_upstreams_on_a_sentencepiece_vocabulary(mistral: Any) -> None:
    # run_mntp.py: tokenizer.mask_token = "_"; collators: convert_tokens_to_ids(mask_token).
    upstream = REFERENCE["mask"]
    assert upstream["mask_token_id"] == 28730  # the piece "_"
    assert upstream["blank_encoded_as_text"] == [583]  # "▁_": what encoding "_" as text gives
    assert resolve_mask_token_id(mistral, "blank") == upstream["mask_token_id"]
    assert mistral.encode("_", add_special_tokens=False) == upstream["blank_encoded_as_text"]


def test_a_blank_token_that_maps_to_the_unknown_id_is_refused() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(MongarsError, match=r"mask_token_type: 'blank'.*unknown token"):
        resolve_mask_token_id(tokenizer, "blank")


# --- 2. MNTP defaults per model family ------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        # train_configs/mntp/Mistral.json (also tests/fixtures/llm2vec/mntp_mistral.json)
        ("mistral", ("all_mask", 0.8)),
        # train_configs/mntp/{Llama2,MetaLlama3,MetaLlama3.1,Sheared-Llama}.json
        ("llama", ("default", 0.2)),
        # train_configs/mntp/qwen2.json (commit 3beba22)
        ("qwen2", ("default", 0.2)),
    ],
)
def test_mntp_masking_defaults_are_upstreams_for_the_family(
    model_type: str, expected: tuple[str, float]
) -> None:
    assert Llm2VecConfig().mntp_masking(model_type) == expected


def test_mntp_masking_set_explicitly_or_by_an_upstream_file_wins() -> None:
    from_file = load_llm2vec_config({"mntp_config": str(FIXTURES / "mntp_mistral.json")})
    assert from_file.mntp_masking("llama") == ("all_mask", 0.8)
    explicit = Llm2VecConfig(data_collator_type="all_mask", mlm_probability=0.3)
    assert explicit.mntp_masking("mistral") == ("all_mask", 0.3)
    with pytest.raises(ConfigError, match="mlm_probability"):
        load_llm2vec_config({"mlm_probability": 1.5})


# --- 3. simcse_dropout means attention dropout ----------------------------------------------


def _tiny_llama(attn: str = "eager") -> Any:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    return LlamaModel(config)


def test_simcse_dropout_is_attention_dropout_only_as_upstream() -> None:
    # run_simcse.py loads the model with attention_dropout=simcse_dropout and nothing else.
    model = _tiny_llama().train()
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    embeddings = model.get_input_embeddings()
    clean = embeddings(ids).detach()
    with simcse_dropout(model, 0.3):
        rates = {
            module.attention_dropout for module in model.modules() if hasattr(module, "o_proj")
        }
        assert rates == {0.3}
        assert torch.equal(embeddings(ids), clean)  # no dropout outside attention
        first = model(input_ids=ids).last_hidden_state
        second = model(input_ids=ids).last_hidden_state
        assert not torch.equal(first, second)  # the two SimCSE views differ
    with simcse_dropout(model, 0.3, hidden_rate=0.3):  # the separately named extra
        assert not torch.equal(embeddings(ids), clean)
    assert torch.equal(embeddings(ids), clean)
    assert {m.attention_dropout for m in model.modules() if hasattr(m, "o_proj")} == {0.0}


def test_simcse_hidden_dropout_is_its_own_setting() -> None:
    assert Llm2VecConfig().simcse_hidden_dropout == 0.0
    with pytest.raises(ConfigError, match="simcse_hidden_dropout"):
        load_llm2vec_config({"simcse_hidden_dropout": 1.0})


# --- 4 and 5. Queries after an instruction, pooling over the text's own tokens ----------------


def test_pooled_span_keeps_bos_and_the_instruction_out_even_when_cut() -> None:
    assert instructed_text(" Trouve le passage ", "texte") == "Trouve le passage texte"
    assert instructed_text("", "texte") == "texte"
    assert pooled_span(full_tokens=10, text_tokens=9, max_length=64) == (1, 10)  # BOS out
    assert pooled_span(full_tokens=30, text_tokens=12, max_length=64) == (18, 30)
    assert pooled_span(full_tokens=100, text_tokens=80, max_length=64) == (20, 64)  # tail cut
    with pytest.raises(MongarsError, match="query_instruction"):
        pooled_span(full_tokens=100, text_tokens=10, max_length=64)


def test_default_instruction_is_declared_once_and_used_by_the_config() -> None:
    assert Llm2VecConfig().query_instruction == DEFAULT_QUERY_INSTRUCTION
    assert REFERENCE["encode"]["instruction"] == DEFAULT_QUERY_INSTRUCTION
    with pytest.raises(ConfigError, match="query_instruction"):
        load_llm2vec_config({"query_instruction": "a !@#$%^&*() b"})


@pytest.fixture(scope="module")
def reference_encoder(mistral: Any) -> tuple[Any, Any]:
    """The tiny bidirectional Llama LLM2Vec.encode ran on (weights drawn identically in both
    environments by upstream_reference.tiny_weights), with the shipped Mistral vocabulary."""
    from transformers import LlamaConfig, LlamaModel

    reference = _reference_module()
    config = LlamaConfig(**reference.TINY_LLAMA, attn_implementation="eager")
    model = LlamaModel(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    state = {k: torch.from_numpy(v) for k, v in reference.tiny_weights(shapes).items()}
    model.load_state_dict(state)
    enable_bidirectional(model.eval())
    return model, prepare_tokenizer(mistral)


def _upstream_vectors(with_instruction: bool) -> tuple[list[str], np.ndarray]:
    """Texts and L2-normalised LLM2Vec.encode vectors of the documents or of the queries."""
    encode = REFERENCE["encode"]
    rows = [
        (row["text"], vector)
        for row, vector in zip(encode["inputs"], encode["embeddings"], strict=True)
        if bool(row["instruction"]) == with_instruction
    ]
    vectors = np.asarray([vector for _, vector in rows], dtype=np.float64)
    return [text for text, _ in rows], vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_documents_embed_as_llm2vec_encode_does(reference_encoder: tuple[Any, Any]) -> None:
    # Upstream pools a document's own tokens: BOS is attended to, not averaged.
    model, tokenizer = reference_encoder
    texts, upstream = _upstream_vectors(with_instruction=False)
    ours = embed_texts(model, tokenizer, texts, max_length=REFERENCE["encode"]["max_length"])
    np.testing.assert_allclose(ours, upstream, atol=2e-5)


def test_queries_embed_after_the_instruction_as_llm2vec_encode_does(
    reference_encoder: tuple[Any, Any],
) -> None:
    # encode([[instruction, query]]): the instruction is attended to, excluded from the mean.
    model, tokenizer = reference_encoder
    encode = REFERENCE["encode"]
    texts, upstream = _upstream_vectors(with_instruction=True)
    ours = embed_texts(
        model, tokenizer, texts, max_length=encode["max_length"], instruction=encode["instruction"]
    )
    np.testing.assert_allclose(ours, upstream, atol=2e-5)
    plain = embed_texts(model, tokenizer, texts, max_length=encode["max_length"])
    assert np.abs(plain - ours).max() > 1e-3  # the instruction does change the vector


def test_encoder_json_carries_the_instruction_and_bad_values_are_refused(tmp_path: Path) -> None:
    from monGARS.mlops.export.writer import read_encoder_queries
    from monGARS.mlops.training.llm2vec.encoder import query_instruction_of

    assert query_instruction_of({"query_instruction": "Trouve"}) == "Trouve"
    assert query_instruction_of({}) == ""  # written before the key: trained without one
    with pytest.raises(MongarsError, match="query_instruction must be a string"):
        query_instruction_of({"query_instruction": 3})
    settings = tmp_path / "encoder.json"
    settings.write_text(json.dumps({"query_instruction": "Trouve", "max_length": 64}))
    assert read_encoder_queries(settings) == ("Trouve", 64)
    settings.write_text(json.dumps({"max_length": "long"}))
    with pytest.raises(MongarsError, match="max_length 'long'"):
        read_encoder_queries(settings)


def test_retrieval_evaluation_embeds_queries_with_the_query_path() -> None:
    passages = ["alpha", "beta"]
    calls: list[str] = []

    def embed_documents(texts: list[str]) -> np.ndarray:
        calls.append("documents")
        return np.eye(2)[[passages.index(t) for t in texts]]

    def embed_queries(texts: list[str]) -> np.ndarray:
        calls.append("queries")
        return np.asarray([[0.0, 1.0]] * len(texts))  # every query points at "beta"

    metrics = evaluate_retrieval(
        embed_documents, ["q"], passages, [{1}], embed_queries=embed_queries
    )
    assert metrics["mrr"] == 1.0 and sorted(calls) == ["documents", "queries"]


def test_raft_mines_distractors_with_queries_read_as_queries() -> None:
    from monGARS.mlops.training.raft.data import Question, hard_negatives

    documents = [f"document {i}" for i in range(6)]
    question = Question(
        id="q1", source="retrieval", question="document 0 ?", answer="a", oracle="document 0"
    )

    def embed_documents(texts: list[str]) -> np.ndarray:
        return np.eye(6)[[documents.index(t) for t in texts]]

    def embed_questions(texts: list[str]) -> np.ndarray:
        return np.asarray([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]] * len(texts))  # nearest: document 5

    ranked = hard_negatives(
        [question], documents, embed_documents, k=1, embed_questions=embed_questions
    )
    assert ranked["q1"] == ["document 5"]


# --- 6. What the docs say about attention windows and the LM head ---------------------------


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_sliding_window_model_gets_a_windowed_bidirectional_mask(attn: str) -> None:
    """transformers 5.x (masking_utils.create_bidirectional_sliding_window_mask): a token sees
    both sides up to the window, nothing beyond it. Upstream's bidirectional Mistral ignores the
    window; docs/llm2vec.md says the project keeps it."""
    from transformers import MistralConfig, MistralModel

    config = MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        sliding_window=2,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    model = enable_bidirectional(MistralModel(config).eval())
    ids = torch.tensor([[5, 9, 13, 17, 21, 25, 29, 33]])

    def first_position_moves(position: int) -> bool:
        changed = ids.clone()
        changed[0, position] = 40
        with torch.no_grad():
            before = model(input_ids=ids).last_hidden_state[0, 0]
            after = model(input_ids=changed).last_hidden_state[0, 0]
        return bool((before - after).abs().max() > 0)

    assert first_position_moves(2)  # a later token inside the window: bidirectional
    assert not first_position_moves(5)  # beyond the window: not seen


def test_mntp_lora_leaves_the_lm_head_frozen() -> None:
    """Upstream wraps only the inner model in PEFT, so its Trainer also updates lm_head and the
    saved adapter drops it; here the LoRA wraps the causal LM and lm_head stays frozen."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from monGARS.mlops.training.llm2vec.lora import add_lora

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    peft_model = add_lora(LlamaForCausalLM(config), r=4, alpha=8, dropout=0.0)
    head = peft_model.get_base_model().get_output_embeddings()
    assert head.weight.requires_grad is False
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
