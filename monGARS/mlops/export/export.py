"""The export stage: merge, write GGUF (f16 + quantised), verify every file, bundle it for use.

Everything is written into an ``atomic_dir``: a failed merge, conversion or verification leaves
no folder that looks finished, only a hidden ``.partial-`` sibling that is removed on the way out.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_dir, sha256_file, write_json, write_text
from monGARS.mlops.configs import config_to_dict, load_config
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.export.config import SAMPLE_QUERIES, SAMPLE_TEXTS, ExportConfig
from monGARS.mlops.export.external import run_export_cmd
from monGARS.mlops.export.merge import encoder_folder, merge_chat_model
from monGARS.mlops.export.quantize import quantize_gguf
from monGARS.mlops.names import check_safe_name

LOG = logging.getLogger(__name__)

BUNDLE_FORMAT = "mongars-gguf-bundle"
BUNDLE_VERSION = 1
BUNDLE_JSON = "bundle.json"
VERIFICATION_JSON = "verification.json"
MODELFILE = "Modelfile"
# Which quantised chat file Ollama and Bundle.generate use by default: the most faithful one.
DEFAULT_PREFERENCE = ("q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s")


def gguf_file_name(module: str, kind: str, quant: str) -> str:
    """``<module>-<kind>-<TYPE>.gguf``, e.g. ``mlops-chat-Q4_K_M.gguf``."""
    return f"{module}-{kind}-{quant.upper()}.gguf"


def _as_config(config: ExportConfig | Mapping[str, Any] | None) -> ExportConfig:
    if isinstance(config, ExportConfig):
        return config
    return load_config(ExportConfig, dict(config or {}))


def _write_f16(
    config: ExportConfig, model_dir: Path, target: Path, name: str, pooling: str | None
) -> dict[str, Any]:
    """The f16 file, from the built-in writer or the user's converter; returns tokenizer facts."""
    from monGARS.mlops.export.hf_spec import read_model_spec
    from monGARS.mlops.export.tokenizer_meta import read_tokenizer_meta
    from monGARS.mlops.export.writer import write_f16_gguf

    if config.export_cmd.strip():
        argv = run_export_cmd(config.export_cmd, model_dir, target)
        LOG.info("export_cmd wrote %s (%s)", target.name, argv[0])
        facts: dict[str, Any] = {"writer": "export_cmd"}
        try:  # tokenizer facts are optional here: the converter may cover unknown families
            spec = read_model_spec(model_dir)
            facts["tokenizer"] = read_tokenizer_meta(model_dir, spec.vocab_size)
        except MongarsError:
            facts["tokenizer"] = None
        return facts
    written = write_f16_gguf(model_dir, target, name=name, encoder_pooling=pooling)
    return {"writer": "builtin", **written}


def _write_family(
    config: ExportConfig,
    model_dir: Path,
    stage: Path,
    module: str,
    kind: str,
    quants: list[str],
    pooling: str | None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    files = {"f16": stage / gguf_file_name(module, kind, "f16")}
    facts = _write_f16(config, model_dir, files["f16"], f"{module}-{kind}", pooling)
    for quant in quants:
        files[quant] = stage / gguf_file_name(module, kind, quant)
        quantize_gguf(files["f16"], files[quant], quant)
    return files, facts


def _verify_chat(
    config: ExportConfig, model_dir: Path, files: dict[str, Path], facts: dict[str, Any]
) -> dict[str, Any]:
    from monGARS.mlops.export.reference import chat_reference
    from monGARS.mlops.export.verify import verify_chat_file

    reference = chat_reference(model_dir, SAMPLE_TEXTS)
    meta = facts.get("tokenizer")
    special_parity = True if meta is None else meta.special_text_parity
    results = {}
    for quant, path in files.items():
        min_cosine, max_rel = config.logit_bounds(quant)
        results[path.name] = {
            "quant": quant,
            **verify_chat_file(
                path,
                reference,
                min_cosine=min_cosine,
                max_rel_diff=max_rel,
                generate_tokens=config.generate_tokens,
                check_special_text=special_parity,
                exact_next_token=quant == "f16",
            ),
        }
    return results


def _verify_encoder(
    config: ExportConfig, model_dir: Path, files: dict[str, Path], info: dict[str, Any]
) -> dict[str, Any]:
    """Documents and instructed queries, HF vs each GGUF file (see verify_encoder_file)."""
    from monGARS.mlops.export.reference import encoder_reference
    from monGARS.mlops.export.verify import verify_encoder_file

    reference = encoder_reference(
        model_dir,
        SAMPLE_TEXTS,
        info["pooling"],
        queries=SAMPLE_QUERIES,
        query_instruction=info["query_instruction"],
        max_length=info["max_length"],
    )
    results = {}
    for quant, path in files.items():
        # Quantised encoders get the quant tier's cosine bound, never looser than the config's.
        bound = (
            config.encoder_min_cosine
            if quant == "f16"
            else min(config.encoder_min_cosine, config.logit_bounds(quant)[0])
        )
        results[path.name] = {
            "quant": quant,
            **verify_encoder_file(path, reference, min_cosine=bound),
        }
    return results


def _default_quant(quants: list[str]) -> str:
    for name in DEFAULT_PREFERENCE:
        if name in quants:
            return name
    return quants[0] if quants else "f16"


def _file_entries(stage: Path, files: dict[str, Path], checks: dict[str, Any]) -> dict[str, Any]:
    entries = {}
    for quant, path in files.items():
        check = checks.get(path.name, {})
        entries[quant.upper()] = {
            "path": path.name,
            "quant": quant,
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
            "verified": bool(check.get("passed", False)),
        }
    return entries


def _failures(checks: dict[str, Any]) -> list[str]:
    return [
        f"{name}: {'; '.join(result['problems'])}"
        for name, result in checks.items()
        if result["problems"]
    ]


def export_module(
    config: ExportConfig | Mapping[str, Any] | None,
    base_model_dir: str | Path,
    chat_adapter_dir: str | Path | None,
    encoder_dir: str | Path | None,
    module: str,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Write and verify one module's GGUF bundle into ``out_dir``; return flat artifact metadata."""
    from monGARS.mlops.export.modelfile import render_modelfile
    from monGARS.mlops.export.writer import read_encoder_pooling, read_encoder_queries
    from monGARS.mlops.modeling import load_tokenizer

    cfg = _as_config(config)
    check_safe_name("module", module)
    quants = cfg.effective_quant_types()  # validated with the config (ExportConfig.problems)
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".export-scratch-", dir=target.parent) as scratch_name,
        atomic_dir(target) as stage,
    ):
        scratch = Path(scratch_name)
        chat_dir = merge_chat_model(base_model_dir, chat_adapter_dir, scratch)
        chat_files, chat_facts = _write_family(cfg, chat_dir, stage, module, "chat", quants, None)
        encoder_files: dict[str, Path] = {}
        encoder_info: dict[str, Any] | None = None
        if encoder_dir is not None:
            enc_dir, enc_json = encoder_folder(encoder_dir, base_model_dir, scratch)
            pooling = read_encoder_pooling(enc_json)
            query_instruction, max_length = read_encoder_queries(enc_json)
            enc_quants = quants if cfg.quantize_encoder else []
            encoder_files, enc_facts = _write_family(
                cfg, enc_dir, stage, module, "encoder", enc_quants, pooling
            )
            spec = enc_facts.get("spec")
            encoder_info = {
                "pooling": pooling,
                "causal": bool(spec.is_causal) if spec is not None else _config_causal(enc_dir),
                "embedding_length": spec.embedding_length if spec is not None else None,
                # How Bundle.embed / embed_queries read texts: the llm2vec stage's settings.
                "query_instruction": query_instruction,
                "max_length": max_length,
                "pooled_tokens": "text",
            }

        checks: dict[str, Any] = {}
        if cfg.verify:
            checks.update(_verify_chat(cfg, chat_dir, chat_files, chat_facts))
            if encoder_info is not None:
                checks.update(_verify_encoder(cfg, enc_dir, encoder_files, encoder_info))
            failures = _failures(checks)
            if failures:
                raise MongarsError(
                    f"export: verification failed for module {module}: " + " | ".join(failures)
                )

        default_chat = _default_quant(quants)
        tokenizer = load_tokenizer(chat_dir)
        meta = chat_facts.get("tokenizer")
        modelfile, templated = render_modelfile(
            gguf_file_name(module, "chat", default_chat),
            tokenizer,
            eot_id=meta.eot_id if meta is not None else None,
            n_ctx=min(cfg.n_ctx, spec_context)
            if (spec_context := _context_length(chat_dir))
            else cfg.n_ctx,
        )
        write_text(stage / MODELFILE, modelfile)
        verification = {
            "module": module,
            "verified": cfg.verify,
            "sample_texts": list(SAMPLE_TEXTS),
            "sample_queries": list(SAMPLE_QUERIES),
            "files": checks,
        }
        write_json(stage / VERIFICATION_JSON, verification)
        bundle = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "module": module,
            "quant_types": quants,
            "verified": cfg.verify,
            "chat": {
                "files": _file_entries(stage, chat_files, checks),
                "default": default_chat.upper(),
                "writer": chat_facts["writer"],
                "chat_template": bool(getattr(tokenizer, "chat_template", None)),
            },
            "encoder": None
            if encoder_info is None
            else {
                "files": _file_entries(stage, encoder_files, checks),
                "default": "F16",
                **encoder_info,
            },
            "modelfile": MODELFILE,
            "modelfile_template": "derived" if templated else "from_gguf",
            "verification": VERIFICATION_JSON,
            "config": config_to_dict(cfg),
        }
        write_json(stage / BUNDLE_JSON, bundle)
    return _metadata(bundle, checks)


def _context_length(folder: Path) -> int | None:
    import json

    try:
        value = json.loads((folder / "config.json").read_text(encoding="utf-8")).get(
            "max_position_embeddings"
        )
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _config_causal(folder: Path) -> bool:
    import json

    return bool(
        json.loads((folder / "config.json").read_text(encoding="utf-8")).get("is_causal", True)
    )


def _metadata(bundle: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    """Flat str/int/float metadata for the KFP artifact: sizes, hashes and parity figures."""
    flat: dict[str, Any] = {
        "module": bundle["module"],
        "quant_types": ",".join(bundle["quant_types"]),
        "verified": int(bundle["verified"]),
        "default_chat": bundle["chat"]["default"],
    }
    total = 0
    for kind in ("chat", "encoder"):
        family = bundle.get(kind)
        if not family:
            continue
        flat[f"{kind}_files"] = len(family["files"])
        for label, entry in family["files"].items():
            key = f"{kind}_{label.lower()}"
            flat[f"{key}_bytes"] = entry["bytes"]
            flat[f"{key}_sha256"] = entry["sha256"]
            total += entry["bytes"]
            check = checks.get(entry["path"], {})
            for figure in (
                "logits_rel_diff",
                "logits_min_cosine",
                "top1_agreement",
                "embedding_min_cosine",
                "query_min_cosine",
            ):
                if check.get(figure) is not None:
                    flat[f"{key}_{figure}"] = float(check[figure])
    flat["total_bytes"] = total
    return flat
