"""Write an f16 GGUF file from a Hugging Face Llama / Mistral / Qwen2 folder with the gguf library.

Tensors are streamed one at a time from the safetensors files (metadata and tensor infos first,
then each tensor's data), so a 7B model never has to fit in memory twice. The encoder variant is
written with causal attention off and a pooling type, which llama.cpp's llama and qwen2
architectures honour through the generic ``<arch>.attention.causal`` and ``<arch>.pooling_type``
keys: the attention mask becomes bidirectional and ``llama_get_embeddings_seq`` returns the
pooled vector.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from monGARS.mlops.errors import MongarsError
from monGARS.mlops.export.hf_spec import ModelSpec, read_model_spec, unsupported_message
from monGARS.mlops.export.tokenizer_meta import TokenizerMeta, read_tokenizer_meta

POOLING_TYPES = ("mean", "cls", "last")
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise MongarsError(
            f"export: {folder} has no *.safetensors weights; save the model with "
            "safe_serialization=True"
        )
    return files


def _block_key(name: str) -> tuple[int, int, str]:
    match = re.search(r"layers\.(\d+)\.", name)
    if match is None:
        return (0 if "embed" in name else 2, 0, name)
    return (1, int(match.group(1)), name)


def _iter_names(folder: Path) -> list[tuple[str, Path]]:
    from safetensors import safe_open

    names: list[tuple[str, Path]] = []
    for path in _safetensors_files(folder):
        with safe_open(str(path), framework="pt") as handle:
            names.extend((name, path) for name in handle.keys())  # noqa: SIM118
    names = [(n, p) for n, p in names if not n.endswith(_IGNORED_SUFFIXES)]
    return sorted(names, key=lambda item: _block_key(item[0]))


def _permute_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotates halves of each head, llama.cpp rotates adjacent pairs: reorder the rows."""
    rows = weights.shape[0]
    shaped = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    return shaped.swapaxes(1, 2).reshape(weights.shape)


def llama3_rope_factors(spec: ModelSpec) -> np.ndarray:
    """Per-frequency divisors of Llama 3.1's rope scaling, as llama.cpp's ``rope_freqs`` tensor."""
    scaling = spec.rope_scaling
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    original = float(scaling.get("original_max_position_embeddings", 8192))
    inv_freq = 1.0 / (
        spec.rope_theta ** (np.arange(0, spec.head_dim, 2, dtype=np.float64) / spec.head_dim)
    )
    factors = []
    for freq in inv_freq:
        wavelength = 2 * math.pi / freq
        if wavelength < original / high:
            factors.append(1.0)
        elif wavelength > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


class _TensorPlan:
    """Maps HF tensor names to GGUF names and applies the per-architecture transforms."""

    def __init__(self, spec: ModelSpec, folder: Path) -> None:
        import gguf

        self.spec = spec
        self.folder = folder
        self.name_map = gguf.get_tensor_name_map(
            getattr(gguf.MODEL_ARCH, spec.arch), spec.block_count
        )

    def gguf_name(self, hf_name: str) -> str | None:
        key = hf_name if hf_name.startswith(("model.", "lm_head")) else f"model.{hf_name}"
        if key == "lm_head.weight" and self.spec.tie_word_embeddings:
            return None
        name = self.name_map.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MongarsError(
                f"export: tensor {hf_name!r} in {self.folder} has no GGUF name for "
                f"{self.spec.model_type}; this variant is not covered by the built-in writer. "
                + unsupported_message(self.spec.model_type, self.folder).rpartition("; ")[2]
            )
        return name

    def transform(self, gguf_name: str, array: np.ndarray) -> np.ndarray:
        if self.spec.permute_qk:
            if ".attn_q." in gguf_name:
                return _permute_rope(array, self.spec.head_count)
            if ".attn_k." in gguf_name:
                return _permute_rope(array, self.spec.head_count_kv)
        return array


def _as_output_dtype(array: np.ndarray) -> np.ndarray:
    """f16 for matrices, f32 for vectors (norms, biases), as llama.cpp expects in an F16 file."""
    if array.ndim >= 2:
        return np.ascontiguousarray(array.astype(np.float16))
    return np.ascontiguousarray(array.astype(np.float32))


def _iter_tensors(
    plan: _TensorPlan, names: list[tuple[str, Path]]
) -> Iterator[tuple[str, np.ndarray]]:
    """(gguf name, array) in file order, loading one tensor at a time."""
    import torch
    from safetensors import safe_open

    handles: dict[Path, Any] = {}
    try:
        for hf_name, path in names:
            name = plan.gguf_name(hf_name)
            if name is None:
                continue
            if path not in handles:
                handles[path] = safe_open(str(path), framework="pt")
            tensor = handles[path].get_tensor(hf_name)
            # Matrices go straight to f16 (one rounding, half the memory traffic of an f32 hop).
            target = torch.float16 if tensor.dim() >= 2 else torch.float32
            yield name, _as_output_dtype(plan.transform(name, tensor.to(target).numpy()))
    finally:
        handles.clear()


def _add_tokenizer(writer: Any, meta: TokenizerMeta) -> None:
    writer.add_tokenizer_model(meta.model)
    if meta.pre is not None:
        writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.token_types)
    if meta.scores is not None:
        writer.add_token_scores(meta.scores)
    if meta.merges is not None:
        writer.add_token_merges(meta.merges)
    for setter, value in (
        (writer.add_bos_token_id, meta.bos_id),
        (writer.add_eos_token_id, meta.eos_id),
        (writer.add_pad_token_id, meta.pad_id),
        (writer.add_unk_token_id, meta.unk_id),
        (writer.add_eot_token_id, meta.eot_id),
    ):
        if value is not None:
            setter(int(value))
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(meta.add_eos)
    if meta.add_space_prefix is not None:
        writer.add_add_space_prefix(meta.add_space_prefix)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)


def _add_hparams(writer: Any, spec: ModelSpec, name: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.embedding_length)
    writer.add_block_count(spec.block_count)
    writer.add_feed_forward_length(spec.feed_forward_length)
    writer.add_head_count(spec.head_count)
    writer.add_head_count_kv(spec.head_count_kv)
    writer.add_rope_freq_base(spec.rope_theta)
    writer.add_layer_norm_rms_eps(spec.rms_norm_eps)
    writer.add_rope_dimension_count(spec.head_dim)
    if spec.head_dim * spec.head_count != spec.embedding_length:
        writer.add_key_length(spec.head_dim)
        writer.add_value_length(spec.head_dim)
    writer.add_vocab_size(spec.vocab_size)
    if spec.rope_scaling["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(spec.rope_scaling.get("factor", 1.0)))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def read_encoder_pooling(encoder_json: Path | None) -> str:
    """The pooling in llm2vec's ``encoder.json`` (default mean), checked against llama.cpp's."""
    if encoder_json is None or not encoder_json.is_file():
        return "mean"
    try:
        pooling = str(json.loads(encoder_json.read_text(encoding="utf-8")).get("pooling", "mean"))
    except (OSError, json.JSONDecodeError) as error:
        raise MongarsError(f"export: {encoder_json} cannot be read as JSON ({error})") from None
    if pooling not in POOLING_TYPES:
        raise MongarsError(
            f"export: pooling {pooling!r} in {encoder_json} has no llama.cpp equivalent; "
            f"use one of {', '.join(POOLING_TYPES)}"
        )
    return pooling


def read_encoder_queries(encoder_json: Path | None) -> tuple[str, int]:
    """(query_instruction, max_length) of llm2vec's ``encoder.json``, as ``Encoder`` reads them."""
    from monGARS.mlops.training.llm2vec.encoder import query_instruction_of

    if encoder_json is None or not encoder_json.is_file():
        return query_instruction_of({}), 512
    try:
        settings = json.loads(encoder_json.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MongarsError(f"export: {encoder_json} cannot be read as JSON ({error})") from None
    max_length = settings.get("max_length", 512)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 8:
        raise MongarsError(
            f"export: max_length {max_length!r} in {encoder_json} is not an integer >= 8; "
            "re-run llm2vec"
        )
    return query_instruction_of(settings), max_length


def write_f16_gguf(
    model_dir: str | Path,
    out_path: str | Path,
    *,
    name: str,
    encoder_pooling: str | None = None,
) -> dict[str, Any]:
    """Write ``out_path`` (f16) from an HF folder; ``encoder_pooling`` set makes it a non-causal
    embedding model. Returns the spec and tokenizer facts verification needs."""
    import gguf

    folder = Path(model_dir)
    spec = read_model_spec(folder)
    meta = read_tokenizer_meta(folder, spec.vocab_size)
    names = _iter_names(folder)
    plan = _TensorPlan(spec, folder)

    writer = gguf.GGUFWriter(
        str(out_path), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, spec.arch)]
    )
    try:
        _add_hparams(writer, spec, name)
        if encoder_pooling is not None:
            writer.add_causal_attention(False)
            writer.add_pooling_type(getattr(gguf.PoolingType, encoder_pooling.upper()))
        _add_tokenizer(writer, meta)

        extra: list[tuple[str, np.ndarray]] = []
        if spec.rope_scaling["rope_type"] == "llama3":
            extra.append(
                (
                    gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                    llama3_rope_factors(spec),
                )
            )
        # Tensor infos need shapes and sizes before any data: read headers only.
        infos = _tensor_infos(plan, names)
        for tensor_name, array in extra:
            writer.add_tensor_info(tensor_name, array.shape, array.dtype, array.nbytes)
        for tensor_name, shape, dtype, nbytes in infos:
            writer.add_tensor_info(tensor_name, shape, dtype, nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, array in extra:
            writer.write_tensor_data(array)
        for _, array in _iter_tensors(plan, names):
            writer.write_tensor_data(array)
    finally:
        writer.close()
    return {"spec": spec, "tokenizer": meta}


def _tensor_infos(
    plan: _TensorPlan, names: list[tuple[str, Path]]
) -> list[tuple[str, tuple[int, ...], np.dtype, int]]:
    """(gguf name, shape, output dtype, bytes) for every tensor, from safetensors headers only."""
    from safetensors import safe_open

    infos: list[tuple[str, tuple[int, ...], np.dtype, int]] = []
    seen: dict[str, str] = {}
    for hf_name, path in names:
        name = plan.gguf_name(hf_name)
        if name is None:
            continue
        if name in seen:
            raise MongarsError(f"export: tensors {seen[name]!r} and {hf_name!r} both map to {name}")
        seen[name] = hf_name
        with safe_open(str(path), framework="pt") as handle:
            shape = tuple(handle.get_slice(hf_name).get_shape())
        dtype = np.dtype(np.float16 if len(shape) >= 2 else np.float32)
        infos.append((name, shape, dtype, int(np.prod(shape)) * dtype.itemsize))
    return infos
