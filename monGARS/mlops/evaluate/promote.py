"""The promote step: per module, gate the evaluated run and publish it to the champion registry.

For each module it reads the evaluate stage's small artifact (figures and items), re-scores the
current champion's chat GGUF (and encoder) on those very items, applies the gate (``gate.py``),
and only when the module passes writes its bundle as a new champion version and switches the
pointer (``registry.py``). A rejected module never writes to the registry. The step's own output
is small: ``promotion.json`` with each module's decision, reasons and the three rows of figures
(base → tuned → champion).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_dir, write_json
from monGARS.mlops.configs import config_to_dict, load_config
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.evaluate.config import PromotionConfig
from monGARS.mlops.evaluate.gate import Check, Decision, decide
from monGARS.mlops.evaluate.registry import ChampionRegistry, PointerConflict
from monGARS.mlops.evaluate.run import (
    EVALUATION_JSON,
    ITEMS_JSON,
    chat_figures,
    items_from_payload,
    retrieval_figures,
    summary,
)

LOG = logging.getLogger(__name__)
PROMOTION_JSON = "promotion.json"
LINEAGE_JSON = "lineage.json"
REGISTRY_DIRNAME = "champions"


def _as_config(config: PromotionConfig | Mapping[str, Any] | None) -> PromotionConfig:
    if isinstance(config, PromotionConfig):
        return config
    return load_config(PromotionConfig, dict(config or {}))


def resolve_registry(uri: str) -> str:
    """The registry URI: as given, else ``champions/`` on the shared cache volume, else ''."""
    if uri.strip():
        return uri.strip()
    from monGARS.mlops.shared_cache import cache_dir

    cache = cache_dir(writable=True)
    return str(cache / REGISTRY_DIRNAME) if cache else ""


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MongarsError(f"promote: {what} {path} cannot be read ({error})") from None


def _bundle_files(bundle_dir: Path) -> dict[str, Path]:
    """Every file of an export bundle (GGUFs, Modelfile, bundle.json, verification.json)."""
    return {p.name: p for p in sorted(bundle_dir.iterdir()) if p.is_file()}


def champion_figures(
    registry: ChampionRegistry, module: str, version: str, evaluation_dir: Path, scratch: Path
) -> dict[str, Any]:
    """The champion's chat (and encoder) figures on this run's items, same quant as stored."""
    manifest = registry.manifest(module, version)
    bundle = registry.read_version_json(module, version, "bundle.json")
    chat_name = bundle["chat"]["files"][bundle["chat"]["default"]]["path"]
    names = [chat_name]
    encoder = bundle.get("encoder")
    if encoder:
        names.append(encoder["files"][encoder["default"]]["path"])
    local = registry.download(module, version, scratch / f"champion-{module}", names)
    payload = _read_json(evaluation_dir / ITEMS_JSON, "items")
    items = items_from_payload(payload)
    config = _read_json(evaluation_dir / EVALUATION_JSON, "evaluation")["config"]
    figures = chat_figures(local / chat_name, items, config["max_new_tokens"], payload["stop_ids"])
    if encoder:
        figures["retrieval"] = retrieval_figures(
            local / names[1],
            payload["retrieval"],
            pooling=encoder.get("pooling", "mean"),
            causal=bool(encoder.get("causal", False)),
            query_instruction=encoder.get("query_instruction") or None,
        )
    return {
        "version": version,
        "run_id": manifest.get("lineage", {}).get("run_id"),
        **summary(figures),
    }


def promote_modules(
    config: PromotionConfig | Mapping[str, Any] | None,
    evaluation_dirs: Sequence[str | Path],
    bundle_dirs: Sequence[str | Path],
    lineage: Mapping[str, Any],
    out_dir: str | Path,
) -> dict[str, Any]:
    """Gate and publish every evaluated module (see module doc); return the promotion record."""
    cfg = _as_config(config)
    bundles: dict[str, Path] = {}
    for folder in map(Path, bundle_dirs):
        bundles[str(_read_json(folder / "bundle.json", "bundle")["module"])] = folder
    uri = resolve_registry(cfg.registry)
    registry = ChampionRegistry(uri) if uri else None
    import os

    run_id = str(lineage.get("run_id", ""))
    # Version names read better with the local run id or the KFP run's name than with a uuid.
    run_label = os.environ.get("MONGARS_RUN_ID") or str(lineage.get("job_name") or run_id)
    modules: dict[str, Any] = {}
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".promote-scratch-", dir=target.parent) as scratch:
        for folder in sorted(map(Path, evaluation_dirs)):
            evaluation = _read_json(folder / EVALUATION_JSON, "evaluation")
            module = str(evaluation["module"])
            if module not in bundles:
                raise MongarsError(f"promote: module {module} was evaluated but has no GGUF bundle")
            modules[module] = _promote_one(
                cfg, registry, module, folder, evaluation, bundles[module], lineage, run_label,
                Path(scratch),
            )  # fmt: skip
    record = {
        "registry": uri,
        "published": bool(registry) and cfg.publish,
        "config": config_to_dict(cfg),
        "run_id": run_id,
        "modules": modules,
        "promoted": sorted(m for m, r in modules.items() if r["promoted"]),
        "rejected": sorted(m for m, r in modules.items() if not r["promoted"]),
    }
    with atomic_dir(target) as stage:
        write_json(stage / PROMOTION_JSON, record)
    return record


def module_lineage_record(
    cfg: PromotionConfig,
    module: str,
    evaluation: Mapping[str, Any],
    bundle_dir: Path,
    lineage: Mapping[str, Any],
) -> dict[str, Any]:
    """What a champion version records of its origin: run, image, base, data, parameters."""
    import os

    measured = dict(evaluation.get("lineage") or {})
    training = measured.pop("training_config", {})
    bundle = _read_json(bundle_dir / "bundle.json", "bundle")
    return {
        **lineage,
        "local_run_id": os.environ.get("MONGARS_RUN_ID", ""),
        "module": module,
        **measured,
        "parameters": {
            "training": training,
            "export": bundle.get("config", {}),
            "evaluate": evaluation.get("config", {}),
            "promote": config_to_dict(cfg),
        },
        "evaluation": {
            "items_digest": evaluation.get("items_digest"),
            "quant": evaluation["quant"],
        },
    }


def _promote_one(
    cfg: PromotionConfig,
    registry: ChampionRegistry | None,
    module: str,
    evaluation_dir: Path,
    evaluation: Mapping[str, Any],
    bundle_dir: Path,
    lineage: Mapping[str, Any],
    run_id: str,
    scratch: Path,
) -> dict[str, Any]:
    tuned = evaluation["summary"]["tuned"]
    base = evaluation["summary"]["base"]
    pointer = registry.pointer(module) if registry else None
    if registry is not None and pointer is not None and _is_champion(registry, pointer, bundle_dir):
        # A resumed or repeated run whose files already are the champion: nothing to publish.
        return {
            "module": module,
            "outcome": "promoted",
            "promoted": True,
            "reasons": [],
            "checks": [],
            "note": "these files already are the champion",
            "figures": {"base": base, "tuned": tuned, "champion": None},
            "gguf_vs_hf": evaluation.get("gguf_vs_hf"),
            "champion_before": pointer.version,
            "champion_after": pointer.version,
            "published": True,
        }
    champion = (
        champion_figures(registry, module, pointer.version, evaluation_dir, scratch)
        if registry and pointer
        else None
    )
    decision = decide(module, tuned, base, champion, cfg)
    published: dict[str, Any] | None = None
    if decision.promoted and registry is not None and cfg.publish:
        files = {**_bundle_files(bundle_dir), EVALUATION_JSON: evaluation_dir / EVALUATION_JSON}
        module_lineage = module_lineage_record(cfg, module, evaluation, bundle_dir, lineage)
        lineage_path = scratch / f"{module}-{LINEAGE_JSON}"
        write_json(lineage_path, module_lineage)
        files[LINEAGE_JSON] = lineage_path
        try:
            published = registry.promote(
                module,
                files,
                {"lineage": module_lineage, "summary": tuned, "base": base},
                expected=pointer,
                run_id=run_id,
            )
        except PointerConflict as conflict:
            decision = Decision(
                module, False, [*decision.checks, Check("registry", False, str(conflict))]
            )
    LOG.info("promote %s: %s %s", module, decision.outcome, "; ".join(decision.reasons))
    return {
        **decision.to_dict(),
        "figures": {"base": base, "tuned": tuned, "champion": champion},
        "gguf_vs_hf": evaluation.get("gguf_vs_hf"),
        "champion_before": pointer.version if pointer else None,
        "champion_after": published["version"]
        if published
        else (pointer.version if pointer else None),
        "published": published is not None,
    }


def _is_champion(registry: ChampionRegistry, pointer: Any, bundle_dir: Path) -> bool:
    """Do the champion's stored GGUF files have exactly this bundle's sha256s (from bundle.json)?"""
    stored = registry.manifest(pointer.data["module"], pointer.version)["files"]
    bundle = _read_json(bundle_dir / "bundle.json", "bundle")
    entries = [
        entry
        for kind in ("chat", "encoder")
        for entry in ((bundle.get(kind) or {}).get("files") or {}).values()
    ]
    return bool(entries) and all(
        stored.get(entry["path"], {}).get("sha256") == entry["sha256"] for entry in entries
    )


def flat_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """KFP metrics: ``promoted_modules``, ``rejected_modules`` and ``<module>_promoted`` (1/0)."""
    flat: dict[str, Any] = {
        "promoted_modules": len(record["promoted"]),
        "rejected_modules": len(record["rejected"]),
    }
    for module, result in record["modules"].items():
        flat[f"{module}_promoted"] = int(result["promoted"])
    return flat


def outcome_lines(record: Mapping[str, Any]) -> list[str]:
    """One line per module: what the console's last lines and the report say."""
    lines = []
    for module, result in sorted(record["modules"].items()):
        if result["promoted"]:
            where = (
                f"champion {result['champion_after']}" if result["published"] else "not published"
            )
            lines.append(f"{module}: promoted ({where})")
        else:
            kept = result["champion_before"] or "none"
            lines.append(
                f"{module}: rejected ({'; '.join(result['reasons'])}); champion stays {kept}"
            )
    return lines
