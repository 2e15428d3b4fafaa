"""The f16 GGUF writer, read back with gguf's own reader against the HF folder it was written from.

Every tensor (name, shape, type, values: the f16 rounding of the HF weights, Q/K rows in the
interleaved order llama.cpp rotates) and every metadata key (hyperparameters from config.json,
tokenizer keys from the HF tokenizer, the encoder's causal/pooling keys) is compared. The folders
are tiny and built by hand (config through transformers' AutoConfig, random safetensors, the
project's tiny tokenizer), so no model class is imported: the whole file runs in seconds and is
the per-mutant test set of ``monGARS/mlops/export/writer.py`` (tests/mutation.toml). That the
written files also *run* like the HF model in llama.cpp is checked by the integration tests
(tests/integration/test_export_formats.py, test_export_bundle.py).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.export.hf_spec import read_model_spec
from monGARS.mlops.export.writer import (
    llama3_rope_factors,
    read_encoder_pooling,
    read_encoder_queries,
    write_f16_gguf,
)

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 96, 2
PADDING_ROWS = 3  # embedding rows past the tokenizer's last id, as resized models have
GGML_F32, GGML_F16 = 0, 1  # ggml tensor types (GGMLQuantizationType)
MOSTLY_F16 = 1  # llama.cpp's LLAMA_FTYPE_MOSTLY_F16
NORMAL, CONTROL, UNUSED = 1, 3, 5  # llama.cpp token types
POOLING_IDS = {"mean": 1, "cls": 2, "last": 3}  # llama.cpp's enum llama_pooling_type
# HF parameter name (after "model.layers.N.") -> llama.cpp tensor name (after "blk.N.").
BLOCK_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


# ---------------------------------------------------------------------------- building folders


@pytest.fixture(scope="module")
def bpe_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tiny byte-level BPE tokenizer (GPT-2 regex, ChatML template, 5 specials)."""
    from monGARS.mlops.tiny_model import build_tokenizer

    folder = tmp_path_factory.mktemp("bpe-tokenizer")
    build_tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def spm_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-2-style tokenizer: BPE over ``▁``-marked words, byte fallback, <unk> <s> </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    pieces = [*specials, *(f"<0x{i:02X}>" for i in range(256))]
    pieces += ["▁", "l", "e", "s", "a", "▁l", "es", "▁les", "la", "zz"]
    merges = [("▁", "l"), ("e", "s"), ("▁l", "es"), ("l", "a")]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens(specials)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    folder = tmp_path_factory.mktemp("spm-tokenizer")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    wrapped.save_pretrained(str(folder))
    return folder


def _hf_tensor_shapes(
    model_type: str, vocab: int, layers: int, head_dim: int, *, lm_head: bool
) -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes a transformers Llama/Qwen2 ForCausalLM checkpoint holds."""
    q_rows, kv_rows = HEADS * head_dim, KV_HEADS * head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, HIDDEN)}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        block = {
            "self_attn.q_proj.weight": (q_rows, HIDDEN),
            "self_attn.k_proj.weight": (kv_rows, HIDDEN),
            "self_attn.v_proj.weight": (kv_rows, HIDDEN),
            "self_attn.o_proj.weight": (HIDDEN, q_rows),
            "mlp.gate_proj.weight": (FFN, HIDDEN),
            "mlp.up_proj.weight": (FFN, HIDDEN),
            "mlp.down_proj.weight": (HIDDEN, FFN),
            "input_layernorm.weight": (HIDDEN,),
            "post_attention_layernorm.weight": (HIDDEN,),
        }
        if model_type == "qwen2":
            block |= {
                "self_attn.q_proj.bias": (q_rows,),
                "self_attn.k_proj.bias": (kv_rows,),
                "self_attn.v_proj.bias": (kv_rows,),
            }
        shapes |= {prefix + name: shape for name, shape in block.items()}
    shapes["model.norm.weight"] = (HIDDEN,)
    if lm_head:
        shapes["lm_head.weight"] = (vocab, HIDDEN)
    return shapes


def make_hf_folder(
    folder: Path,
    tokenizer_dir: Path,
    *,
    model_type: str = "llama",
    layers: int = LAYERS,
    tie: bool = False,
    lm_head: bool | None = None,
    head_dim: int | None = None,
    rope: dict[str, Any] | None = None,
    strip_model_prefix: bool = False,
    shards: int = 1,
    extra: dict[str, tuple[int, ...]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A tiny HF model folder; returns its tensors (float32 copies of what the files hold).

    Matrices are stored in bfloat16 and vectors in float32, as fine-tuned checkpoints often are;
    values are random (norms and biases too), so a dropped or swapped tensor shows.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    folder.mkdir(parents=True)
    for path in tokenizer_dir.iterdir():
        shutil.copy(path, folder / path.name)
    tokens = len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])
    vocab = tokens + PADDING_ROWS
    settings: dict[str, Any] = {
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 384,
        "rms_norm_eps": 3e-6,
        "vocab_size": vocab,
        "tie_word_embeddings": tie,
        "rope_parameters": rope or {"rope_type": "default", "rope_theta": 50000.0},
    }
    if head_dim is not None:
        settings["head_dim"] = head_dim
    AutoConfig.for_model(model_type, **settings).save_pretrained(str(folder))
    shapes = _hf_tensor_shapes(
        model_type,
        vocab,
        layers,
        head_dim or HIDDEN // HEADS,
        lm_head=not tie if lm_head is None else lm_head,
    )
    shapes |= extra or {}
    generator = torch.Generator().manual_seed(seed)
    stored: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        values = torch.randn(shape, generator=generator)
        key = name.removeprefix("model.") if strip_model_prefix else name
        stored[key] = values.to(torch.bfloat16) if len(shape) >= 2 else values
    # Shards hold the names in reverse order, so the writer's own ordering is what the file shows.
    names = list(reversed(stored))
    for shard in range(shards):
        part = {name: stored[name] for name in names[shard::shards]}
        save_file(part, str(folder / f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"))
    return {name: tensor.float().numpy() for name, tensor in stored.items()}


# ----------------------------------------------------------------------------- reading back


def read_gguf(path: Path) -> tuple[dict[str, Any], list[Any]]:
    """(metadata key -> value, tensors in file order), with gguf's reader."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    metadata = {
        name: field.contents()
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")  # the reader's pseudo-keys for the header
    }
    return metadata, list(reader.tensors)


def interleave_rope_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF rotates the two halves of each head's rows; llama.cpp rotates adjacent row pairs: row
    ``2i`` of a head is HF's row ``i`` and row ``2i+1`` is HF's row ``i + head_dim / 2``."""
    head_dim = weights.shape[0] // heads
    order = [
        head * head_dim + offset + half
        for head in range(heads)
        for offset in range(head_dim // 2)
        for half in (0, head_dim // 2)
    ]
    return weights[order]


def expected_gguf_name(hf_name: str) -> str | None:
    name = hf_name if hf_name.startswith(("model.", "lm_head")) else f"model.{hf_name}"
    if name.endswith("rotary_emb.inv_freq"):
        return None
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if name in fixed:
        return fixed[name]
    _, _, layer, rest = name.split(".", 3)
    stem, _, kind = rest.rpartition(".")
    return f"blk.{layer}.{BLOCK_NAMES[stem]}.{kind}"


def assert_tensors_match(
    path: Path, hf: dict[str, np.ndarray], *, permuted: bool, skip: tuple[str, ...] = ()
) -> list[str]:
    """Every HF tensor is in the file under its llama.cpp name, f16 (matrices) or f32 (vectors),
    with the HF values; nothing else is. Returns the file's tensor names in order."""
    _, tensors = read_gguf(path)
    by_name = {tensor.name: tensor for tensor in tensors}
    assert len(by_name) == len(tensors), f"a tensor name is written twice: {list(by_name)}"
    expected: dict[str, np.ndarray] = {}
    for hf_name, values in hf.items():
        name = expected_gguf_name(hf_name)
        if name is None or hf_name in skip:
            continue
        if permuted and ".attn_q." in name:
            values = interleave_rope_rows(values, HEADS)
        elif permuted and ".attn_k." in name:
            values = interleave_rope_rows(values, KV_HEADS)
        expected[name] = values
    written = {name for name in by_name if name != "rope_freqs.weight"}
    assert written == set(expected), (
        f"tensors missing: {sorted(set(expected) - written)}; "
        f"unexpected: {sorted(written - set(expected))}"
    )
    for name, values in expected.items():
        tensor = by_name[name]
        matrix = values.ndim >= 2
        assert int(tensor.tensor_type) == (GGML_F16 if matrix else GGML_F32), (
            f"{name}: ggml type {tensor.tensor_type!r}, expected "
            f"{'F16 for a matrix' if matrix else 'F32 for a vector'}"
        )
        assert list(tensor.shape) == list(reversed(values.shape)), (
            f"{name}: ggml shape {list(tensor.shape)} is not HF's {values.shape} reversed"
        )
        want = values.astype(np.float16 if matrix else np.float32)
        got = np.asarray(tensor.data).reshape(values.shape)
        assert got.dtype == want.dtype and np.array_equal(got, want), (
            f"{name}: values differ from the HF tensor's {want.dtype} rounding "
            f"(max diff {np.abs(got.astype(np.float64) - want).max()})"
        )
    return [tensor.name for tensor in tensors]


def hf_tokenizer_metadata(folder: Path, vocab: int) -> dict[str, Any]:
    """The tokenizer.* keys llama.cpp needs, derived from the HF tokenizer and generation config
    (byte-level BPE folders)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    count = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(count)))
    tokens += [f"[PAD{index}]" for index in range(count, vocab)]
    specials = {index for index, token in tokenizer.added_tokens_decoder.items() if token.special}
    types = [CONTROL if index in specials else NORMAL for index in range(count)]
    types += [UNUSED] * (vocab - count)
    model = json.loads((folder / "tokenizer.json").read_text())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    with_bos = tokenizer("a")["input_ids"]
    metadata = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",  # llama.cpp's name of GPT-2's ByteLevel regex
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": tokenizer.bos_token_id,
        "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id,
        "tokenizer.ggml.padding_token_id": tokenizer.pad_token_id,
        "tokenizer.ggml.add_bos_token": with_bos[0] == tokenizer.bos_token_id,
        "tokenizer.ggml.add_eos_token": with_bos[-1] == tokenizer.eos_token_id,
        "tokenizer.chat_template": tokenizer.chat_template,
    }
    generation = folder / "generation_config.json"
    if generation.is_file():
        eos_ids = json.loads(generation.read_text())["eos_token_id"]
        others = [i for i in eos_ids if i != tokenizer.eos_token_id]
        metadata["tokenizer.ggml.eot_token_id"] = others[0]
    return metadata


def hf_hparam_metadata(folder: Path, name: str) -> dict[str, Any]:
    """The general.* and <arch>.* keys, from the folder's config as transformers reads it."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    arch = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}[config.model_type]
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = config.rope_parameters
    metadata: dict[str, Any] = {
        "general.architecture": arch,
        "general.name": name,
        "general.file_type": MOSTLY_F16,
        "general.quantization_version": 2,
        f"{arch}.context_length": config.max_position_embeddings,
        f"{arch}.embedding_length": config.hidden_size,
        f"{arch}.block_count": config.num_hidden_layers,
        f"{arch}.feed_forward_length": config.intermediate_size,
        f"{arch}.attention.head_count": config.num_attention_heads,
        f"{arch}.attention.head_count_kv": config.num_key_value_heads,
        f"{arch}.rope.freq_base": pytest.approx(rope["rope_theta"], rel=1e-7),
        f"{arch}.attention.layer_norm_rms_epsilon": pytest.approx(config.rms_norm_eps, rel=1e-7),
        f"{arch}.rope.dimension_count": head_dim,
        f"{arch}.vocab_size": config.vocab_size,
    }
    if head_dim * config.num_attention_heads != config.hidden_size:
        metadata[f"{arch}.attention.key_length"] = head_dim
        metadata[f"{arch}.attention.value_length"] = head_dim
    if rope["rope_type"] == "linear":
        metadata[f"{arch}.rope.scaling.type"] = "linear"
        metadata[f"{arch}.rope.scaling.factor"] = pytest.approx(rope["factor"], rel=1e-7)
    return metadata


def assert_metadata(got: dict[str, Any], expected: dict[str, Any]) -> None:
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert not missing and not extra, f"metadata keys missing: {missing}; unexpected: {extra}"
    wrong = {key: (got[key], expected[key]) for key in expected if got[key] != expected[key]}
    shown = {key: (str(a)[:80], str(b)[:80]) for key, (a, b) in wrong.items()}
    assert not wrong, f"metadata differs from HF (got, expected): {shown}"


def _standard_keys(got: dict[str, Any]) -> dict[str, Any]:
    """The keys gguf's writer always adds (alignment is only written when not the default)."""
    return {key: got[key] for key in ("general.alignment",) if key in got}


# ---------------------------------------------------------------------------------- tensors


def test_llama_tensors_are_the_hf_weights_in_f16_with_q_and_k_rows_interleaved(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    inv_freq = {"model.layers.0.self_attn.rotary_emb.inv_freq": (HIDDEN // HEADS // 2,)}
    hf = make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir, shards=2, extra=inv_freq)
    out = tmp_path / "model.gguf"
    write_f16_gguf(tmp_path / "hf", out, name="demo")
    assert_tensors_match(out, hf, permuted=True)


def test_tensors_are_written_embedding_first_then_blocks_in_numeric_order(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """llama.cpp's converter writes layer by layer; 11 layers tell numeric from text order."""
    make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir, layers=11, shards=3)
    write_f16_gguf(tmp_path / "hf", tmp_path / "model.gguf", name="demo")
    names = [tensor.name for tensor in read_gguf(tmp_path / "model.gguf")[1]]
    assert names[0] == "token_embd.weight", f"the embedding is not first: {names[:3]}"
    blocks = [int(name.split(".")[1]) for name in names if name.startswith("blk.")]
    assert blocks == sorted(blocks) and len(blocks) == 11 * len(BLOCK_NAMES), (
        f"blocks are not written in layer order: {blocks}"
    )
    assert names[-2:] == ["output.weight", "output_norm.weight"], (
        f"the output tensors are not last: {names[-3:]}"
    )


def test_qwen2_keeps_q_and_k_in_hf_order_writes_biases_f32_and_no_tied_output(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """llama.cpp's qwen2 rotates halves like HF (no permutation); tied embeddings: no output."""
    hf = make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir, model_type="qwen2", tie=True)
    out = tmp_path / "model.gguf"
    write_f16_gguf(tmp_path / "hf", out, name="qwen")
    names = assert_tensors_match(out, hf, permuted=False)
    assert "blk.1.attn_k.bias" in names and "output.weight" not in names
    assert read_gguf(out)[0]["general.architecture"] == "qwen2"


def test_a_tied_lm_head_stored_in_the_checkpoint_is_not_written(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    hf = make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir, tie=True, lm_head=True)
    write_f16_gguf(tmp_path / "hf", tmp_path / "model.gguf", name="demo")
    names = assert_tensors_match(
        tmp_path / "model.gguf", hf, permuted=True, skip=("lm_head.weight",)
    )
    assert "output.weight" not in names, "a tied lm_head was written as output.weight"


def test_an_untied_lm_head_is_written_as_output(bpe_tokenizer_dir: Path, tmp_path: Path) -> None:
    hf = make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir, tie=False)
    write_f16_gguf(tmp_path / "hf", tmp_path / "model.gguf", name="demo")
    assert "output.weight" in assert_tensors_match(tmp_path / "model.gguf", hf, permuted=True)


# --------------------------------------------------------------------------------- metadata


def test_chat_file_metadata_is_the_hf_config_and_tokenizer(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    hf_dir = tmp_path / "hf"
    make_hf_folder(hf_dir, bpe_tokenizer_dir)
    tokens = len(json.loads((bpe_tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
    # A second end-of-turn id (ChatML's <|im_end|>), as the tiny model's generation config has.
    (hf_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 4]}))
    write_f16_gguf(hf_dir, tmp_path / "model.gguf", name="demo-chat")
    got, _ = read_gguf(tmp_path / "model.gguf")
    expected = hf_hparam_metadata(hf_dir, "demo-chat")
    expected |= hf_tokenizer_metadata(hf_dir, tokens + PADDING_ROWS) | _standard_keys(got)
    assert expected["tokenizer.ggml.eot_token_id"] == 4 and expected["tokenizer.ggml.add_bos_token"]
    assert_metadata(got, expected)


@pytest.mark.parametrize("pooling", sorted(POOLING_IDS))
def test_encoder_file_is_non_causal_with_the_pooling_type(
    bpe_tokenizer_dir: Path, tmp_path: Path, pooling: str
) -> None:
    """llm2vec saves the bare model (AutoModel: no ``model.`` prefix, no lm_head)."""
    hf_dir = tmp_path / "hf"
    hf = make_hf_folder(hf_dir, bpe_tokenizer_dir, lm_head=False, strip_model_prefix=True)
    tokens = len(json.loads((bpe_tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
    out = tmp_path / "encoder.gguf"
    write_f16_gguf(hf_dir, out, name="demo-encoder", encoder_pooling=pooling)
    got, _ = read_gguf(out)
    expected = hf_hparam_metadata(hf_dir, "demo-encoder")
    expected |= hf_tokenizer_metadata(hf_dir, tokens + PADDING_ROWS) | _standard_keys(got)
    expected |= {"llama.attention.causal": False, "llama.pooling_type": POOLING_IDS[pooling]}
    assert_metadata(got, expected)
    assert_tensors_match(out, hf, permuted=True)


@pytest.mark.parametrize("head_dim", [24, 8])
def test_explicit_head_dim_writes_key_and_value_length(
    bpe_tokenizer_dir: Path, tmp_path: Path, head_dim: int
) -> None:
    """Mistral-Nemo style: head_dim * heads != hidden (wider or narrower), so llama.cpp must be
    told the head size."""
    hf_dir = tmp_path / "hf"
    hf = make_hf_folder(hf_dir, bpe_tokenizer_dir, model_type="mistral", head_dim=head_dim)
    tokens = len(json.loads((bpe_tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
    write_f16_gguf(hf_dir, tmp_path / "model.gguf", name="nemo")
    got, _ = read_gguf(tmp_path / "model.gguf")
    expected = hf_hparam_metadata(hf_dir, "nemo")
    expected |= hf_tokenizer_metadata(hf_dir, tokens + PADDING_ROWS) | _standard_keys(got)
    assert expected["llama.attention.key_length"] == head_dim
    assert_metadata(got, expected)
    assert_tensors_match(tmp_path / "model.gguf", hf, permuted=True)


def test_linear_rope_scaling_is_declared_with_its_factor(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """transformers 4.x's ``rope_scaling`` field, which hf_spec still reads."""
    hf_dir = tmp_path / "hf"
    make_hf_folder(hf_dir, bpe_tokenizer_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    config.pop("rope_parameters")
    config["rope_theta"] = 20000.0
    config["rope_scaling"] = {"type": "linear", "factor": 4.0}
    (hf_dir / "config.json").write_text(json.dumps(config))
    write_f16_gguf(hf_dir, tmp_path / "model.gguf", name="linear")
    got, _ = read_gguf(tmp_path / "model.gguf")
    assert got["llama.rope.scaling.type"] == "linear"
    assert got["llama.rope.scaling.factor"] == 4.0
    assert got["llama.rope.freq_base"] == 20000.0


def test_default_rope_declares_no_scaling_and_no_rope_freqs(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir)
    write_f16_gguf(tmp_path / "hf", tmp_path / "model.gguf", name="plain")
    got, tensors = read_gguf(tmp_path / "model.gguf")
    assert not [key for key in got if ".rope.scaling." in key]
    assert "rope_freqs.weight" not in [tensor.name for tensor in tensors]


def _hf_llama3_factors(folder: Path) -> np.ndarray:
    """transformers' own Llama 3.1 frequencies, as the per-frequency divisor llama.cpp reads."""
    import torch
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = AutoConfig.from_pretrained(str(folder))
    head_dim = config.head_dim
    theta = config.rope_parameters["rope_theta"]
    plain = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    return (plain / scaled.double()).numpy()


def test_llama3_rope_scaling_writes_transformers_frequency_factors_first(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    hf_dir = tmp_path / "hf"
    hf = make_hf_folder(hf_dir, bpe_tokenizer_dir, rope=rope, head_dim=32)
    out = tmp_path / "model.gguf"
    write_f16_gguf(hf_dir, out, name="llama3")
    got, tensors = read_gguf(out)
    assert tensors[0].name == "rope_freqs.weight", [t.name for t in tensors[:2]]
    assert int(tensors[0].tensor_type) == GGML_F32 and list(tensors[0].shape) == [16]
    expected = _hf_llama3_factors(hf_dir)
    # Low, high and smoothed frequencies all occur with these settings.
    assert expected.min() == pytest.approx(1.0) and expected.max() == pytest.approx(8.0)
    assert ((expected > 1.01) & (expected < 7.99)).any()
    np.testing.assert_allclose(np.asarray(tensors[0].data), expected, rtol=1e-6)
    assert not [key for key in got if ".rope.scaling." in key], "llama3 scaling is rope_freqs"
    assert_tensors_match(out, hf, permuted=True)


def test_llama3_factors_default_to_llama_3_1s_published_settings(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """A rope_scaling that names llama3 only gets factor 8, 1 / 4, 8192 original positions."""
    hf_dir = tmp_path / "hf"
    make_hf_folder(hf_dir, bpe_tokenizer_dir, head_dim=128)
    config = json.loads((hf_dir / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0}
    (hf_dir / "config.json").write_text(json.dumps(config))
    explicit = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    explicit["original_max_position_embeddings"] = 8192
    config["rope_parameters"] |= explicit
    (tmp_path / "explicit").mkdir()
    (tmp_path / "explicit" / "config.json").write_text(json.dumps(config))
    np.testing.assert_allclose(
        llama3_rope_factors(read_model_spec(hf_dir)),
        _hf_llama3_factors(tmp_path / "explicit"),
        rtol=1e-6,
    )


def test_llama3_band_edges_that_are_not_whole_numbers_match_transformers(tmp_path: Path) -> None:
    """Band edges (original / high, original / low) placed just above a frequency's wavelength:
    each wavelength must be compared with the exact edge, as transformers does."""
    from transformers import AutoConfig

    theta, head_dim, original = 10000.0, 128, 1000
    exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
    wavelengths = 2 * math.pi * theta**exponents
    high_edge, low_edge = wavelengths[23] + 0.4, wavelengths[29] + 0.5
    assert math.floor(high_edge) < wavelengths[23] < high_edge  # the edges are fractional,
    assert math.floor(low_edge) < wavelengths[29] < low_edge  # with a wavelength in between
    rope = {
        "rope_type": "llama3",
        "rope_theta": theta,
        "factor": 8.0,
        "original_max_position_embeddings": original,
        "high_freq_factor": original / high_edge,
        "low_freq_factor": original / low_edge,
    }
    settings = {"hidden_size": 256, "num_attention_heads": 2, "head_dim": head_dim}
    AutoConfig.for_model("llama", rope_parameters=rope, **settings).save_pretrained(str(tmp_path))
    np.testing.assert_allclose(
        llama3_rope_factors(read_model_spec(tmp_path)), _hf_llama3_factors(tmp_path), rtol=1e-6
    )


def test_sentencepiece_tokenizer_writes_scores_and_space_prefix_not_merges(
    spm_tokenizer_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    hf_dir = tmp_path / "hf"
    make_hf_folder(hf_dir, spm_tokenizer_dir)
    write_f16_gguf(hf_dir, tmp_path / "model.gguf", name="spm")
    got, _ = read_gguf(tmp_path / "model.gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert got["tokenizer.ggml.model"] == "llama"
    assert got["tokenizer.ggml.tokens"][: len(tokens)] == tokens
    assert got["tokenizer.ggml.unknown_token_id"] == tokenizer.unk_token_id == 0
    assert got["tokenizer.ggml.bos_token_id"] == 1 and got["tokenizer.ggml.eos_token_id"] == 2
    assert got["tokenizer.ggml.add_space_prefix"] is True
    # llama.cpp merges the pair whose result scores highest: minus the HF merge rank.
    scores = dict(zip(got["tokenizer.ggml.tokens"], got["tokenizer.ggml.scores"], strict=True))
    assert [scores[t] for t in ("▁l", "es", "▁les", "la")] == [0.0, -1.0, -2.0, -3.0]
    assert scores["zz"] < -3.0, "a token no merge makes must rank below every merge"
    for absent in ("tokenizer.ggml.merges", "tokenizer.ggml.pre", "tokenizer.chat_template"):
        assert absent not in got, f"{absent} written for a SentencePiece-style tokenizer"
    assert "tokenizer.ggml.padding_token_id" not in got  # the tokenizer has no pad token


def test_paths_may_be_named_and_options_must_be(bpe_tokenizer_dir: Path, tmp_path: Path) -> None:
    """``name`` and ``encoder_pooling`` are keyword-only: a positional string cannot land in the
    wrong one; the two paths may be passed by name."""
    make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir)
    out = tmp_path / "model.gguf"
    write_f16_gguf(model_dir=tmp_path / "hf", out_path=out, name="named")
    assert read_gguf(out)[0]["general.name"] == "named"
    with pytest.raises(TypeError):
        write_f16_gguf(tmp_path / "hf", out, "positional")  # type: ignore[misc]


# ----------------------------------------------------------------------------------- refusals


def test_a_folder_without_safetensors_is_refused(bpe_tokenizer_dir: Path, tmp_path: Path) -> None:
    make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir)
    for path in (tmp_path / "hf").glob("*.safetensors"):
        path.unlink()
    with pytest.raises(MongarsError, match=r"no \*\.safetensors weights; save the model with"):
        write_f16_gguf(tmp_path / "hf", tmp_path / "model.gguf", name="x")


def test_a_tensor_without_a_gguf_name_is_refused_with_the_converter_hint(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """The hint is the end of hf_spec's message, whatever the folder's name holds ("; " too)."""
    folder = tmp_path / "weights; v2" / "hf"
    extra = {"model.layers.0.self_attn.q_norm.gamma": (HIDDEN,)}
    make_hf_folder(folder, bpe_tokenizer_dir, extra=extra)
    with pytest.raises(MongarsError) as raised:
        write_f16_gguf(folder, tmp_path / "model.gguf", name="x")
    assert str(raised.value) == (
        f"export: tensor 'model.layers.0.self_attn.q_norm.gamma' in {folder} has no GGUF name "
        "for llama; this variant is not covered by the built-in writer. set export_cmd "
        "(--export-cmd) to a converter command with {model_dir} and {gguf_path}"
    )


def test_two_tensors_with_the_same_gguf_name_are_refused(
    bpe_tokenizer_dir: Path, tmp_path: Path
) -> None:
    """A bare-model name next to its ForCausalLM twin would silently write one of them."""
    make_hf_folder(tmp_path / "hf", bpe_tokenizer_dir, extra={"norm.weight": (HIDDEN,)})
    with pytest.raises(MongarsError) as raised:
        write_f16_gguf(tmp_path / "hf", tmp_path / "model.gguf", name="x")
    assert "both map to output_norm.weight" in str(raised.value)
    assert "'model.norm.weight'" in str(raised.value) and "'norm.weight'" in str(raised.value)


# --------------------------------------------------------------------------- encoder.json


def test_pooling_defaults_to_mean_without_an_encoder_json(tmp_path: Path) -> None:
    assert read_encoder_pooling(None) == "mean"
    assert read_encoder_pooling(tmp_path / "absent.json") == "mean"
    (tmp_path / "encoder.json").write_text(json.dumps({"max_length": 64}))
    assert read_encoder_pooling(tmp_path / "encoder.json") == "mean"


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_is_read_from_encoder_json(tmp_path: Path, pooling: str) -> None:
    (tmp_path / "encoder.json").write_text(json.dumps({"pooling": pooling}))
    assert read_encoder_pooling(tmp_path / "encoder.json") == pooling


def test_pooling_llama_cpp_cannot_do_is_refused(tmp_path: Path) -> None:
    (tmp_path / "encoder.json").write_text(json.dumps({"pooling": "weighted_mean"}))
    with pytest.raises(MongarsError, match=r"'weighted_mean' .* use one of mean, cls, last$"):
        read_encoder_pooling(tmp_path / "encoder.json")


@pytest.mark.parametrize("reader", [read_encoder_pooling, read_encoder_queries])
def test_an_unreadable_encoder_json_is_refused(tmp_path: Path, reader: Any) -> None:
    (tmp_path / "encoder.json").write_text("{not json")
    with pytest.raises(MongarsError, match="cannot be read as JSON"):
        reader(tmp_path / "encoder.json")


def test_queries_default_to_no_instruction_and_512_tokens(tmp_path: Path) -> None:
    assert read_encoder_queries(None) == ("", 512)
    assert read_encoder_queries(tmp_path / "absent.json") == ("", 512)
    (tmp_path / "encoder.json").write_text(json.dumps({"pooling": "mean"}))
    assert read_encoder_queries(tmp_path / "encoder.json") == ("", 512)


def test_queries_are_read_from_encoder_json(tmp_path: Path) -> None:
    settings = {"query_instruction": "Retrouve le passage", "max_length": 8}
    (tmp_path / "encoder.json").write_text(json.dumps(settings))
    assert read_encoder_queries(tmp_path / "encoder.json") == ("Retrouve le passage", 8)


@pytest.mark.parametrize("max_length", [7, 0, -1, True, 64.0, "64", None])
def test_a_max_length_that_is_not_an_integer_of_at_least_8_is_refused(
    tmp_path: Path, max_length: object
) -> None:
    (tmp_path / "encoder.json").write_text(json.dumps({"max_length": max_length}))
    with pytest.raises(MongarsError, match=r"is not an integer >= 8; re-run llm2vec"):
        read_encoder_queries(tmp_path / "encoder.json")
