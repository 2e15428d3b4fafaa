"""export_module on the tiny model: merged LoRA + non-causal encoder -> verified GGUF bundle."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from monGARS.mlops.atomic import sha256_file
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.export.config import SAMPLE_QUERIES, SAMPLE_TEXTS, ExportConfig
from monGARS.mlops.export.export import export_module

pytestmark = pytest.mark.integration

# An instruction of the test's own, so the one the bundle uses is visibly the encoder.json's.
QUERY_INSTRUCTION = "Trouve le passage qui répond à la question"


def make_adapter(base: Path, out: Path, seed: int = 1) -> Path:
    """An sft-style output folder whose LoRA really changes the model (B matrices non-zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(str(out / "adapter"))
    return out


def make_encoder(base: Path, out: Path, pooling: str = "mean") -> Path:
    """An llm2vec-style output folder: encoder/ (is_causal false) and encoder.json."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base))
    model.config.is_causal = False
    model.save_pretrained(str(out / "encoder"))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out / "encoder"))
    settings = {"pooling": pooling, "max_length": 512, "query_instruction": QUERY_INSTRUCTION}
    (out / "encoder.json").write_text(json.dumps(settings))
    return out


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("export")
    sft = make_adapter(tiny_model_dir, root / "sft")
    llm2vec = make_encoder(tiny_model_dir, root / "llm2vec")
    out = root / "bundle"
    metadata = export_module(ExportConfig(), tiny_model_dir, sft, llm2vec, "demo", out)
    return {"out": out, "metadata": metadata, "sft": sft, "root": root}


def test_bundle_has_every_file_named_by_module_and_type(exported: dict) -> None:
    out: Path = exported["out"]
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted(
        [
            "demo-chat-F16.gguf",
            "demo-chat-Q8_0.gguf",
            "demo-chat-Q4_K_M.gguf",
            "demo-encoder-F16.gguf",
            "demo-encoder-Q8_0.gguf",
            "demo-encoder-Q4_K_M.gguf",
            "Modelfile",
            "bundle.json",
            "verification.json",
        ]
    )
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial/scratch


def test_manifest_is_relocatable_and_hashes_match(exported: dict) -> None:
    out: Path = exported["out"]
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["module"] == "demo" and bundle["quant_types"] == ["q8_0", "q4_k_m"]
    for family in ("chat", "encoder"):
        for entry in bundle[family]["files"].values():
            assert "/" not in entry["path"]
            path = out / entry["path"]
            assert entry["bytes"] == path.stat().st_size
            assert entry["sha256"] == sha256_file(path)
            assert entry["verified"] is True
    assert bundle["encoder"]["causal"] is False and bundle["encoder"]["pooling"] == "mean"
    metadata = exported["metadata"]
    assert all(isinstance(value, str | int | float) for value in metadata.values())
    assert metadata["chat_f16_sha256"] == bundle["chat"]["files"]["F16"]["sha256"]


def test_parity_within_documented_bounds_for_f16_and_each_default_quant(exported: dict) -> None:
    config = ExportConfig()
    checks = json.loads((exported["out"] / "verification.json").read_text())["files"]
    for quant, label in (("f16", "F16"), ("q8_0", "Q8_0"), ("q4_k_m", "Q4_K_M")):
        chat = checks[f"demo-chat-{label}.gguf"]
        min_cosine, max_rel = config.logit_bounds(quant)
        assert chat["passed"] and chat["token_mismatches"] == 0
        assert chat["logits_min_cosine"] >= min_cosine
        assert chat["logits_rel_diff"] <= max_rel
        assert chat["generated_tokens"] >= 1
    f16 = checks["demo-chat-F16.gguf"]
    assert f16["logits_rel_diff"] < 2e-3 and f16["top1_agreement"] > 0.99
    assert checks["demo-encoder-F16.gguf"]["embedding_min_cosine"] >= 0.9999
    assert checks["demo-encoder-Q8_0.gguf"]["embedding_min_cosine"] >= 0.99


def test_encoder_verification_covers_instructed_queries(exported: dict) -> None:
    """HF and llama.cpp agree on queries read after the encoder's instruction, and the bundle
    carries that instruction for servers."""
    checks = json.loads((exported["out"] / "verification.json").read_text())["files"]
    for name in ("demo-encoder-F16.gguf", "demo-encoder-Q8_0.gguf"):
        check = checks[name]
        assert check["queries"] == len(SAMPLE_QUERIES) and check["token_mismatches"] == 0
        assert check["query_instruction"] == QUERY_INSTRUCTION
    assert checks["demo-encoder-F16.gguf"]["query_min_cosine"] >= 0.9999
    assert checks["demo-encoder-Q8_0.gguf"]["query_min_cosine"] >= 0.99
    manifest = json.loads((exported["out"] / "bundle.json").read_text())
    assert manifest["encoder"]["query_instruction"] == QUERY_INSTRUCTION
    assert manifest["encoder"]["max_length"] == 512


def test_bundle_embeds_documents_and_queries_as_the_hf_encoder(exported: dict) -> None:
    """Bundle.embed / embed_queries (llama.cpp, f16) against Encoder.embed / embed_queries (HF)."""
    from monGARS.mlops.export.bundle import load_bundle
    from monGARS.mlops.training.llm2vec.encoder import load_encoder

    encoder = load_encoder(exported["root"] / "llm2vec", device="cpu")
    documents, queries = list(SAMPLE_TEXTS[:3]), list(SAMPLE_QUERIES)
    with load_bundle(exported["out"], n_ctx=256) as bundle:
        gguf_documents = bundle.embed(documents, normalize=True)
        gguf_queries = bundle.embed_queries(queries, normalize=True)
    hf_documents = encoder.embed(documents)
    hf_queries = encoder.embed_queries(queries)
    assert (gguf_documents * hf_documents).sum(axis=1).min() > 0.9999
    assert (gguf_queries * hf_queries).sum(axis=1).min() > 0.9999
    # The instruction matters: the same queries embedded as documents land elsewhere.
    assert (gguf_queries * encoder.embed(queries)).sum(axis=1).max() < 0.999


def test_gguf_holds_the_merged_weights_not_the_base(exported: dict, tiny_model_dir: Path) -> None:
    """The f16 file matches the merged model and measurably differs from the base."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from monGARS.mlops.export.verify import open_llama

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ids = tokenizer(SAMPLE_TEXTS[0])["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        base_logits = base(torch.tensor([ids])).logits[0].numpy()
    with open_llama(exported["out"] / "demo-chat-F16.gguf", n_ctx=128, logits_all=True) as llm:
        llm.eval(ids)
        gguf_logits = np.asarray(llm.scores[: len(ids)])
    f16_error = json.loads((exported["out"] / "verification.json").read_text())["files"][
        "demo-chat-F16.gguf"
    ]["logits_max_abs_diff"]
    assert np.abs(gguf_logits - base_logits).max() > 20 * f16_error


def test_encoder_file_is_non_causal_with_mean_pooling(exported: dict) -> None:
    import gguf

    reader = gguf.GGUFReader(str(exported["out"] / "demo-encoder-F16.gguf"))
    fields = {
        name: reader.fields[name] for name in ("llama.attention.causal", "llama.pooling_type")
    }
    assert bool(fields["llama.attention.causal"].contents()) is False
    assert int(fields["llama.pooling_type"].contents()) == int(gguf.PoolingType.MEAN)
    chat = gguf.GGUFReader(str(exported["out"] / "demo-chat-F16.gguf"))
    assert "llama.attention.causal" not in chat.fields


def test_every_file_declares_its_quant_type_and_the_tokenizer_special_ids(
    exported: dict, tiny_model_dir: Path
) -> None:
    """Read each GGUF's metadata back: the type its name promises, the HF tokenizer's ids.

    Parity bounds alone do not tell Q4_K_M from Q4_K_S, and a swapped BOS/EOS id still gives
    close logits; llama.cpp stops generating on ``eos_token_id``, so it must be the HF one.
    """
    import gguf
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert tokenizer.bos_token_id != tokenizer.eos_token_id  # else the check below proves nothing
    expected_ids = {
        gguf.Keys.Tokenizer.BOS_ID: tokenizer.bos_token_id,
        gguf.Keys.Tokenizer.EOS_ID: tokenizer.eos_token_id,
        gguf.Keys.Tokenizer.PAD_ID: tokenizer.pad_token_id,
    }
    end_of_turn = set(GenerationConfig.from_pretrained(str(tiny_model_dir)).eos_token_id)
    end_of_turn.discard(tokenizer.eos_token_id)
    bundle = json.loads((exported["out"] / "bundle.json").read_text())
    checked = 0
    for family in ("chat", "encoder"):
        for label, entry in bundle[family]["files"].items():
            reader = gguf.GGUFReader(str(exported["out"] / entry["path"]))
            file_type = int(reader.fields[gguf.Keys.General.FILE_TYPE].contents())
            assert file_type == gguf.LlamaFileType[f"MOSTLY_{label}"].value, (
                f"{entry['path']} is labelled {label} but its general.file_type is "
                f"{gguf.LlamaFileType(file_type).name}"
            )
            for key, expected in expected_ids.items():
                got = int(reader.fields[key].contents())
                assert got == expected, (
                    f"{entry['path']}: {key} is {got}, the tokenizer's {expected}"
                )
            if end_of_turn:
                got = int(reader.fields[gguf.Keys.Tokenizer.EOT_ID].contents())
                assert got in end_of_turn, f"{entry['path']}: end-of-turn id {got}"
            checked += 1
    assert checked == 6


def test_non_causal_parity_would_catch_a_causal_encoder(
    exported: dict, tiny_model_dir: Path
) -> None:
    """The same GGUF against a causal HF reference falls well below the 0.99 bound."""
    from monGARS.mlops.export.reference import encoder_reference
    from monGARS.mlops.export.verify import verify_encoder_file

    causal = encoder_reference(tiny_model_dir, SAMPLE_TEXTS, "mean")
    assert causal.causal is True
    bidirectional = encoder_reference(
        exported["root"] / "llm2vec" / "encoder", SAMPLE_TEXTS, "mean"
    )
    causal.causal = False  # run llama.cpp non-causally, compare with causal HF vectors
    result = verify_encoder_file(exported["out"] / "demo-encoder-F16.gguf", causal, min_cosine=0.99)
    assert not result["passed"] and result["embedding_min_cosine"] < 0.9
    result = verify_encoder_file(
        exported["out"] / "demo-encoder-F16.gguf", bidirectional, min_cosine=0.99
    )
    assert result["passed"]


def test_modelfile_points_at_the_default_chat_file(exported: dict) -> None:
    text = (exported["out"] / "Modelfile").read_text()
    assert text.startswith("FROM ./demo-chat-Q8_0.gguf\n")
    assert "<|im_start|>user\n{{ .Content }}<|im_end|>\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER num_ctx 1024" in text  # capped at the tiny model's context


def test_loader_generates_and_embeds_from_a_moved_bundle(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from monGARS.mlops.export.bundle import load_bundle

    moved = tmp_path / "elsewhere"
    shutil.copytree(exported["out"], moved)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the thread budget, not llama-cpp's defaults
    with load_bundle(moved, n_ctx=256, check_hashes=True) as bundle:
        reply = bundle.generate([{"role": "user", "content": "Bonjour"}], max_tokens=4)
        completion = bundle.generate("def f(x):", max_tokens=4, quant="f16")
        vectors = bundle.embed(list(SAMPLE_TEXTS[:2]))
        contexts = [*bundle._chat.values(), bundle._encoder]
        assert [(llm.n_threads, llm.n_threads_batch) for llm in contexts] == [(3, 3)] * 3
    assert isinstance(reply, str) and isinstance(completion, str) and completion
    assert vectors.shape == (2, 256) and np.isfinite(vectors).all()
    (moved / "demo-chat-Q8_0.gguf").write_bytes(b"truncated")
    with pytest.raises(MongarsError, match="missing or truncated"):
        load_bundle(moved)


def test_failed_verification_fails_and_leaves_nothing_finished(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    strict = ExportConfig(quant_types=[], f16_max_rel_diff=1e-9)
    with pytest.raises(MongarsError, match=r"verification failed for module m.*relative max diff"):
        export_module(strict, tiny_model_dir, None, None, "m", out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_cmd_replaces_the_writer_and_is_still_verified(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "my converter.py"
    script.write_text(
        "import sys\n"
        "from monGARS.mlops.export.writer import write_f16_gguf\n"
        "write_f16_gguf(sys.argv[1], sys.argv[2], name='external')\n",
        encoding="utf-8",
    )
    out = tmp_path / "out dir; echo hi"
    config = ExportConfig(
        quant_types=[], export_cmd=f"'{sys.executable}' '{script}' {{model_dir}} {{gguf_path}}"
    )
    metadata = export_module(config, tiny_model_dir, None, None, "ext", out)
    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle["chat"]["writer"] == "export_cmd"
    assert metadata["chat_f16_logits_rel_diff"] < 2e-3
    assert os.listdir(out) and not (tmp_path / "hi").exists()

    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nsys.exit(5)\n")
    bad = ExportConfig(
        quant_types=[], export_cmd=f"{sys.executable} {failing} {{model_dir}} {{gguf_path}}"
    )
    with pytest.raises(MongarsError, match="exited with 5"):
        export_module(bad, tiny_model_dir, None, None, "ext2", tmp_path / "never")
    assert not (tmp_path / "never").exists()
