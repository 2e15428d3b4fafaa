"""The evaluate stage: a module's exported GGUF files scored on its held-out split, base → tuned.

Per module, on the same items (``items.py``) and the same quant (the bundle's default chat file,
the one Ollama and ``Bundle.generate`` serve):

- ``tuned``: the exported chat GGUF and encoder GGUF, through llama.cpp;
- ``base``: the base model converted to that quant once per revision (``base_gguf.py``); its
  retrieval figure embeds with the base model itself (causal, mean pooling);
- ``hf``: the merged Hugging Face model the GGUF was written from, and ``gguf_vs_hf``, what the
  conversion and quantisation cost on the task.

The artifact is small: ``evaluation.json`` (every figure, a few sample answers, timings) and
``items.json`` (the items' token ids, references and facts, the retrieval set), from which the
promote step re-scores the current champion without the tokenizer or the datasets.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_dir, write_json
from monGARS.mlops.configs import config_to_dict, load_config
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.evaluate.config import EvaluateConfig
from monGARS.mlops.evaluate.items import EvalItem, items_digest, load_items
from monGARS.mlops.evaluate.scores import answer_scores
from monGARS.mlops.names import check_safe_name

LOG = logging.getLogger(__name__)
EVALUATION_JSON = "evaluation.json"
ITEMS_JSON = "items.json"
SAMPLES = 3
HEADLINE = ("assistant_nll", "perplexity", "exact_match", "token_f1", "fact_recall", "french_share")


def _as_config(config: EvaluateConfig | Mapping[str, Any] | None) -> EvaluateConfig:
    if isinstance(config, EvaluateConfig):
        return config
    return load_config(EvaluateConfig, dict(config or {}))


def _context(items: list[EvalItem], max_new_tokens: int) -> int:
    return max(max(len(i.input_ids), len(i.prompt_ids) + max_new_tokens) for i in items) + 8


def chat_figures(
    path: Path, items: list[EvalItem], max_new_tokens: int, stop_ids: list[int]
) -> dict[str, Any]:
    """Every chat figure of one GGUF file on ``items`` (answers decoded by llama.cpp)."""
    from monGARS.mlops.evaluate.models import GgufChat, score_model

    scorer = GgufChat(path, _context(items, max_new_tokens))
    try:
        scored = score_model(
            scorer, items, scorer.decode, max_new_tokens=max_new_tokens, stop_ids=stop_ids
        )
    finally:
        scorer.close()
    return _with_scores(scored, items)


def _with_scores(scored: dict[str, Any], items: list[EvalItem]) -> dict[str, Any]:
    scores = answer_scores(scored["answers"], [i.reference for i in items], [i.fact for i in items])
    return {**scored, **scores}


def retrieval_figures(
    path: Path,
    retrieval: Mapping[str, Any],
    *,
    pooling: str,
    causal: bool,
    query_instruction: str | None = None,
) -> dict[str, Any] | None:
    """MRR and recall@k of a GGUF file used as an encoder, on the stored retrieval set (queries
    read after the llm2vec stage's query instruction, as it measured them)."""
    if not retrieval.get("queries"):
        return None
    from monGARS.mlops.evaluate.models import gguf_embedder
    from monGARS.mlops.training.common.retrieval_eval import evaluate_retrieval

    longest = max(len(t) for t in [*retrieval["queries"], *retrieval["passages"]])
    embed, close = gguf_embedder(
        path, pooling=pooling, causal=causal, n_ctx=max(64, min(2048, longest + 64))
    )
    try:
        return evaluate_retrieval(
            embed,
            retrieval["queries"],
            retrieval["passages"],
            [set(r) for r in retrieval["relevant"]],
            embed_queries=lambda texts: embed(texts, query_instruction),
        )
    finally:
        close()


def _retrieval_set(datasets_dir: Path, max_queries: int) -> dict[str, Any]:
    """The held-out retrieval queries (at most ``max_queries``) and their passage pool.

    ``load_retrieval_eval`` with min_queries=1 returns the val split, or when val is empty the
    first train record in hash order — which the llm2vec stage held out of training too (it takes
    at least one query the same way), so the encoder is never scored on what it trained on.
    """
    from monGARS.mlops.training.llm2vec.data import load_retrieval_eval

    if max_queries == 0 or not (datasets_dir / "corpora" / "retrieval").is_dir():
        return {"queries": [], "passages": [], "relevant": [], "split": "none"}
    try:
        held_out = load_retrieval_eval(datasets_dir, 1)
    except MongarsError:
        return {"queries": [], "passages": [], "relevant": [], "split": "none"}
    keep = min(max_queries, len(held_out.queries))
    return {  # the whole pool stays: fewer queries, never an easier ranking
        "queries": held_out.queries[:keep],
        "passages": held_out.passages,
        "relevant": [sorted(wanted) for wanted in held_out.relevant[:keep]],
        "split": held_out.split,
    }


def summary(figures: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headline numbers of one model's figures (what the gate and the report read)."""
    if not figures:
        return {}
    out = {key: figures.get(key) for key in HEADLINE}
    retrieval = figures.get("retrieval") or {}
    for key in ("mrr", "recall_at_1", "recall_at_10"):
        if key in retrieval:
            out[f"retrieval_{key}"] = retrieval[key]
    return out


def _on_first(figures: Mapping[str, Any], items: list[EvalItem], count: int) -> dict[str, Any]:
    """A model's figures with its answer scores restricted to the first ``count`` items."""
    scored = {**figures, "answers": figures["answers"][:count]}
    scored["answer_ids"] = figures["answer_ids"][:count]
    return _with_scores(scored, items[:count])


def _parity(gguf: Mapping[str, Any], hf: Mapping[str, Any]) -> dict[str, Any]:
    """GGUF minus HF on the same items (answers: the items both answered)."""
    pairs = list(zip(gguf["answer_ids"], hf["answer_ids"], strict=True))
    same = sum(1 for a, b in pairs if a == b)
    nll_delta = gguf["assistant_nll"] - hf["assistant_nll"]
    return {
        "nll_delta": nll_delta if math.isfinite(nll_delta) else None,
        "answered_items": len(pairs),
        "same_answer_share": round(same / len(pairs), 4) if pairs else None,
        "token_f1_delta": round((gguf["token_f1"] or 0.0) - (hf["token_f1"] or 0.0), 4),
        "fact_recall_delta": None
        if gguf["fact_recall"] is None
        else round(gguf["fact_recall"] - (hf["fact_recall"] or 0.0), 4),
    }


def _items_payload(items: list[EvalItem], stop_ids: list[int]) -> dict[str, Any]:
    return {
        "digest": items_digest(items),
        "stop_ids": stop_ids,
        "items": [
            {
                "record_id": i.record_id,
                "prompt_ids": i.prompt_ids,
                "input_ids": i.input_ids,
                "labels": i.labels,
                "reference": i.reference,
                "fact": i.fact,
            }
            for i in items
        ],
    }


def items_from_payload(payload: Mapping[str, Any]) -> list[EvalItem]:
    return [EvalItem(**item) for item in payload["items"]]


def _compact(figures: dict[str, Any]) -> dict[str, Any]:
    """Figures without the per-item lists (kept only for the samples)."""
    return {k: v for k, v in figures.items() if k not in ("answers", "answer_ids", "item_nll")}


def evaluate_module(
    config: EvaluateConfig | Mapping[str, Any] | None,
    bundle_dir: str | Path,
    chat_model_dir: str | Path,
    base_artifact: str | Path,
    datasets_dir: str | Path,
    module: str,
    out_dir: str | Path,
    export_values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one module (see module doc); write the artifact; return flat metadata."""
    import tempfile

    from monGARS.mlops.export.bundle import load_bundle
    from monGARS.mlops.modeling import load_tokenizer
    from monGARS.mlops.shared_cache import resolve_model_dir
    from monGARS.mlops.training.raft.eval import stop_token_ids

    cfg = _as_config(config)
    check_safe_name("module", module)
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 2)
        return now

    bundle = load_bundle(bundle_dir)
    quant = bundle.manifest["chat"]["default"]
    tokenizer = load_tokenizer(chat_model_dir)
    items = load_items(
        datasets_dir,
        module,
        tokenizer,
        max_examples=cfg.max_examples,
        max_seq_length=cfg.max_seq_length,
    )
    stop_ids = stop_token_ids(tokenizer)
    retrieval = _retrieval_set(Path(datasets_dir), cfg.retrieval_max_queries)
    base_dir = resolve_model_dir(base_artifact)
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".evaluate-scratch-", dir=target.parent) as scratch,
        atomic_dir(target) as stage,
    ):
        mark = lap("items", started)
        tuned = chat_figures(bundle.file("chat"), items, cfg.max_new_tokens, stop_ids)
        encoder = bundle.manifest.get("encoder")
        if encoder:
            tuned["retrieval"] = retrieval_figures(
                bundle.file("encoder"),
                retrieval,
                pooling=encoder.get("pooling", "mean"),
                causal=bool(encoder.get("causal", False)),
                query_instruction=encoder.get("query_instruction") or None,
            )
        mark = lap("tuned_gguf", mark)
        from monGARS.mlops.evaluate.base_gguf import base_gguf

        # The base goes through the same writer settings the module's export used.
        conversion = dict(export_values or bundle.manifest.get("config") or {})
        base_path, base_info = base_gguf(base_artifact, base_dir, quant, Path(scratch), conversion)
        mark = lap("base_convert", mark)
        base = chat_figures(base_path, items, cfg.max_new_tokens, stop_ids)
        if encoder:
            base["retrieval"] = retrieval_figures(
                base_path,
                retrieval,
                pooling="mean",
                causal=True,
                query_instruction=encoder.get("query_instruction") or None,
            )
        mark = lap("base_gguf", mark)
        hf: dict[str, Any] | None = None
        tuned_on_hf_items: dict[str, Any] | None = None
        parity: dict[str, Any] | None = None
        if cfg.hf_parity:
            hf = _hf_figures(chat_model_dir, bundle.file("chat"), items, cfg, stop_ids)
            tuned_on_hf_items = _on_first(tuned, items, len(hf["answers"]))
            parity = _parity(tuned_on_hf_items, hf)
            mark = lap("hf", mark)
        timings["total"] = round(time.monotonic() - started, 2)
        evaluation = {
            "module": module,
            "quant": quant,
            "items": len(items),
            "items_digest": items_digest(items),
            "retrieval_split": retrieval["split"],
            "retrieval_queries": len(retrieval["queries"]),
            **base_info,
            "tuned": _compact(tuned),
            "base": _compact(base),
            "hf": _compact(hf) if hf else None,
            "gguf_vs_hf": parity,
            "summary": {
                "tuned": summary(tuned),
                "base": summary(base),
                "hf": summary(hf),
                "tuned_on_hf_items": summary(tuned_on_hf_items),
            },
            "samples": [
                {
                    "record_id": item.record_id,
                    "reference": item.reference,
                    "tuned": tuned["answers"][index],
                    "base": base["answers"][index],
                }
                for index, item in enumerate(items[:SAMPLES])
            ],
            "bundle": {
                "chat": bundle.file("chat").name,
                "chat_sha256": bundle.manifest["chat"]["files"][quant]["sha256"],
            },
            "seconds": timings,
            "config": config_to_dict(cfg),
            "lineage": lineage(base_artifact, chat_model_dir, datasets_dir, module, base_info),
        }
        write_json(stage / EVALUATION_JSON, evaluation)
        write_json(stage / ITEMS_JSON, {**_items_payload(items, stop_ids), "retrieval": retrieval})
    LOG.info("evaluate %s: %s", module, flat_metadata(evaluation))
    return flat_metadata(evaluation)


def _hf_figures(
    chat_model_dir: str | Path,
    gguf_path: Path,
    items: list[EvalItem],
    cfg: EvaluateConfig,
    stop_ids: list[int],
) -> dict[str, Any]:
    """The merged HF model on the same items, its answers decoded by the GGUF's detokenizer."""
    from monGARS.mlops.evaluate.models import GgufChat, HfChat, score_model

    decoder = GgufChat(gguf_path, 64)
    model = HfChat(chat_model_dir)
    try:
        scored = score_model(
            model,
            items,
            decoder.decode,
            max_new_tokens=cfg.max_new_tokens,
            stop_ids=stop_ids,
            answer_limit=cfg.hf_answers,
        )
    finally:
        model.close()
        decoder.close()
    return _with_scores(scored, items[: len(scored["answers"])])


def _digest_files(paths: list[Path]) -> str:
    import hashlib

    from monGARS.mlops.atomic import sha256_file

    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:16]


def lineage(
    base_artifact: str | Path,
    chat_model_dir: str | Path,
    datasets_dir: str | Path,
    module: str,
    base_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Where the evaluated model came from: base revision, dataset digests, training settings."""
    import json

    from monGARS.mlops.shared_cache import REFERENCE_FILE

    reference_path = Path(base_artifact) / REFERENCE_FILE
    reference = (
        json.loads(reference_path.read_text(encoding="utf-8")) if reference_path.is_file() else {}
    )
    provenance_path = Path(chat_model_dir) / "provenance.json"
    provenance = (
        json.loads(provenance_path.read_text(encoding="utf-8")) if provenance_path.is_file() else {}
    )
    data = Path(datasets_dir)
    module_files = sorted((data / "modules" / module).glob("*.jsonl"))
    corpus_files = sorted((data / "corpora").glob("*/*.jsonl"))
    return {
        "base_model": reference.get("base_model", ""),
        "base_revision": reference.get("revision") or base_info.get("base_key", ""),
        "base_key": base_info.get("base_key", ""),
        "module_datasets_sha256": _digest_files(module_files),
        "corpora_sha256": _digest_files(corpus_files),
        "training_config": provenance.get("training_config", {}),
    }


def flat_metadata(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """Flat figures for KFP metadata and metrics: ``<model>_<figure>``, timings, parity."""
    flat: dict[str, Any] = {
        "module": evaluation["module"],
        "quant": evaluation["quant"],
        "items": evaluation["items"],
        "seconds": evaluation["seconds"]["total"],
    }
    for model, figures in evaluation["summary"].items():
        for key, value in (figures or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                flat[f"{model}_{key}"] = value
    for key, value in (evaluation.get("gguf_vs_hf") or {}).items():
        if isinstance(value, int | float):
            flat[f"gguf_vs_hf_{key}"] = value
    return flat
