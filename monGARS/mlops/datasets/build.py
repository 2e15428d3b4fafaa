"""build_datasets: French corpora from the configured sources, and per-module code datasets.

Layout written (docs/architecture.md), all at once through an atomic folder:

    corpora/<kind>/train.jsonl, val.jsonl
    modules/<module>/train.jsonl, val.jsonl
    modules.json, summary.json, summary.md

Sources stream through adapter -> cleaning -> dedup -> split writer in batches, so memory holds
one batch plus the dedup index, whatever the size of a source.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monGARS.mlops.atomic import atomic_dir, write_json, write_text
from monGARS.mlops.configs import config_to_dict
from monGARS.mlops.datasets.adapters import ADAPTERS
from monGARS.mlops.datasets.cleaning import CleaningRules, clean_record
from monGARS.mlops.datasets.codemine import mine_tree
from monGARS.mlops.datasets.coderecords import module_records
from monGARS.mlops.datasets.codetree import iter_source_files, resolve_roots
from monGARS.mlops.datasets.config import DatasetsConfig, SourceSpec
from monGARS.mlops.datasets.dedup import Deduplicator
from monGARS.mlops.datasets.normalize import dedup_key
from monGARS.mlops.datasets.pii import find_pii
from monGARS.mlops.datasets.readers import iter_rows
from monGARS.mlops.datasets.records import KINDS, content_text
from monGARS.mlops.datasets.split import SplitWriter, split_score
from monGARS.mlops.datasets.stats import SourceStats
from monGARS.mlops.datasets.summary import render_markdown
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.names import check_safe_name

BATCH_SIZE = 512  # records per dedup batch (MinHash is vectorised over a batch)

Metadata = dict[str, str | int | float]


@dataclass(frozen=True)
class DatasetsResult:
    """What the component needs: the fan-out list, artifact metadata and the summary page."""

    modules: list[str]
    metadata: Metadata
    summary_markdown: str


def _progress(
    rows: Iterable[dict[str, Any]], spec: SourceSpec, enabled: bool
) -> Iterator[dict[str, Any]]:
    """A tqdm bar over a source's rows; tqdm switches itself off when stderr is not a terminal."""
    from tqdm.auto import tqdm

    yield from tqdm(
        rows,
        desc=spec.name,
        unit=" rows",
        total=spec.max_rows or None,
        disable=None if enabled else True,
        mininterval=2.0,
        leave=False,
        file=sys.stderr,
    )


class _CorpusBuilder:
    """Runs every source through cleaning and cross-source dedup into the per-kind writers."""

    def __init__(self, config: DatasetsConfig, corpora_dir: Path) -> None:
        self.config = config
        self.rules = CleaningRules.from_config(config)
        self.dedup = Deduplicator(
            near_threshold=config.near_dup_threshold,
            num_perm=config.minhash_permutations,
            shingle_size=config.shingle_size,
            seed=config.seed,
            near=config.near_dedup,
        )
        self.writers = {
            kind: SplitWriter(corpora_dir / kind, config.val_split, config.seed) for kind in KINDS
        }
        self.ids: dict[str, set[str]] = {kind: set() for kind in KINDS}

    def _flush(self, spec: SourceSpec, stats: SourceStats, batch: list[dict[str, Any]]) -> None:
        """Dedup and write a batch, never letting records beyond the source's cap into the index."""
        kind = spec.kind
        while batch:
            room = spec.max_records - stats.kept if spec.max_records else len(batch)
            if room <= 0:
                stats.capped = True
                return
            chunk, batch = batch[:room], batch[room:]
            reasons = self.dedup.check_batch(kind, [content_text(kind, r) for r in chunk])
            for record, reason in zip(chunk, reasons, strict=True):
                if reason is None and record["id"] in self.ids[kind]:
                    reason = "duplicate_id"
                if reason is not None:
                    stats.drop(reason)
                    continue
                self.ids[kind].add(record["id"])
                self.writers[kind].write(record)
                stats.kept += 1

    def run_source(self, spec: SourceSpec) -> SourceStats:
        stats = SourceStats(spec.name, spec.uri, spec.kind, spec.adapter)
        rows = _progress(iter_rows(spec, stats), spec, self.config.progress)
        adapter = ADAPTERS[spec.adapter]
        batch: list[dict[str, Any]] = []
        for candidate in adapter(rows, spec, stats, list(self.config.languages)):
            cleaned = clean_record(spec.kind, candidate, self.rules)
            if cleaned.record is None:
                stats.drop(cleaned.reason or "invalid_fields")
                continue
            stats.redacted.update(cleaned.redacted)
            stats.notes.update(cleaned.notes)
            batch.append(cleaned.record)
            if len(batch) >= BATCH_SIZE:
                self._flush(spec, stats, batch)
                batch = []
                if spec.max_records and stats.kept >= spec.max_records:
                    stats.capped = True
                    break
        self._flush(spec, stats, batch)
        return stats

    def close(self) -> dict[str, dict[str, int]]:
        return {kind: writer.close() for kind, writer in self.writers.items()}


def _nothing_usable(all_stats: list[SourceStats]) -> MongarsError:
    parts = []
    for stats in all_stats:
        if stats.error:
            parts.append(f"{stats.name}: {stats.error}")
        else:
            reasons = ", ".join(f"{r} {n}" for r, n in stats.dropped.most_common(3)) or "no rows"
            parts.append(f"{stats.name}: read {stats.read}, kept 0 ({reasons})")
    return MongarsError("sources: no usable record remains; " + "; ".join(parts))


def _mine_modules(
    config: DatasetsConfig, modules_dir: Path
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Mine the code roots and write one train/val folder per module that has enough records."""
    with tempfile.TemporaryDirectory(prefix="mongars-code-") as scratch:
        roots = resolve_roots(list(config.code_roots), Path(scratch))
        sources = [source for root in roots for source in iter_source_files(root)]
        if not sources:
            names = ", ".join(root.name for root in roots)
            raise MongarsError(
                f"code_roots: no Python source found in {names} (tests, virtualenvs, vendored, "
                "generated and build folders are skipped); point code_roots at a source tree"
            )
        tree = mine_tree(sources)
        records = list(module_records(tree, config.module_rules()))
    drop_kinds = set(config.pii_drop)
    dropped: Counter[str] = Counter()
    by_module: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for record in records:
        text = "\n".join(message["content"] for message in record["messages"])
        leaked = {match.kind for match in find_pii(text)} & drop_kinds
        if leaked:
            dropped[f"pii_{sorted(leaked)[0]}"] += 1
            continue
        key = hashlib.blake2b(dedup_key(text).encode("utf-8"), digest_size=16).hexdigest()
        if key in seen:
            dropped["duplicate_exact"] += 1
            continue
        seen.add(key)
        by_module.setdefault(record["module"], []).append(record)
    modules_info: dict[str, Any] = {}
    kept_modules = []
    for module in sorted(by_module):
        check_safe_name("module", module)
        module_list = by_module[module]
        if len(module_list) < config.min_module_records:
            modules_info[module] = {
                "train": 0,
                "val": 0,
                "records": len(module_list),
                "status": f"excluded: {len(module_list)} records < min_module_records "
                f"({config.min_module_records})",
            }
            continue
        writer = SplitWriter(modules_dir / module, config.val_split, config.seed)
        for record in sorted(
            module_list, key=lambda r: (split_score(r["id"], config.seed), r["id"])
        ):
            writer.write(record)
        counts = writer.close()
        modules_info[module] = {**counts, "records": len(module_list), "status": "included"}
        kept_modules.append(module)
    if not kept_modules:
        found = ", ".join(f"{m}={len(r)}" for m, r in sorted(by_module.items())) or "none"
        raise MongarsError(
            f"min_module_records: no module has {config.min_module_records} or more mined records "
            f"(found: {found}); lower min_module_records, change module_map or add code_roots"
        )
    facts: Counter[str] = Counter()
    for file_facts in tree.files:
        facts["function"] += len(file_facts.functions)
        facts["class"] += len(file_facts.classes)
        facts["framework_call"] += len(file_facts.calls)
    for _, fact in tree.module_facts():
        facts[fact["type"]] += 1
    code_summary = {
        "roots": [root.name for root in roots],
        "files": len(tree.files),
        "facts": dict(sorted(facts.items())),
        "records": len(records),
        "dropped": dict(sorted(dropped.items())),
        "parse_errors": [f.source.display_path for f in tree.files if f.error],
    }
    return kept_modules, modules_info, code_summary


def _content_hash(folder: Path) -> str:
    """sha256 over every dataset file (relative path and bytes), for the artifact metadata."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*.jsonl") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _metadata(summary: dict[str, Any], modules: list[str], content_sha: str) -> Metadata:
    meta: Metadata = {
        "sources": len(summary["sources"]),
        "rows_read": summary["totals"]["rows_read"],
        "records_kept": summary["totals"]["records_kept"],
        "records_dropped": summary["totals"]["records_dropped"],
        "duplicates_exact": summary["duplicates"]["duplicate_exact"],
        "duplicates_near": summary["duplicates"]["duplicate_near"],
        "modules": ",".join(modules),
        "module_count": len(modules),
        "module_records": sum(info["train"] + info["val"] for info in summary["modules"].values()),
        "code_files": summary["code"]["files"],
        "seed": summary["config"]["seed"],
        "val_split": summary["config"]["val_split"],
        "content_sha256": content_sha,
    }
    for kind, counts in summary["outputs"].items():
        meta[f"{kind}_train"] = counts["train"]
        meta[f"{kind}_val"] = counts["val"]
    return meta


def build_datasets(config: DatasetsConfig, out_dir: Path) -> DatasetsResult:
    """Build every corpus and module dataset into ``out_dir`` (replaced atomically).

    Raises ``MongarsError`` when no corpus record or no module survives, naming sources and
    reasons; bad rows and unreachable sources are otherwise counted in the summary.
    """
    with atomic_dir(Path(out_dir)) as work:
        corpus = _CorpusBuilder(config, work / "corpora")
        all_stats = [corpus.run_source(spec) for spec in config.source_specs()]
        outputs = corpus.close()
        if not any(stats.kept for stats in all_stats):
            raise _nothing_usable(all_stats)
        modules, modules_info, code_summary = _mine_modules(config, work / "modules")
        write_json(work / "modules.json", modules)
        config_public = config_to_dict(config)
        summary = {
            "config": config_public,
            "sources": [stats.as_dict() for stats in all_stats],
            "totals": {
                "rows_read": sum(s.read for s in all_stats),
                "records_kept": sum(s.kept for s in all_stats),
                "records_dropped": sum(sum(s.dropped.values()) for s in all_stats),
            },
            "duplicates": dict(corpus.dedup.removed),
            "outputs": outputs,
            "modules": modules_info,
            "code": code_summary,
        }
        markdown = render_markdown(summary)
        write_json(work / "summary.json", summary)
        write_text(work / "summary.md", markdown)
        metadata = _metadata(summary, modules, _content_hash(work))
    return DatasetsResult(modules=modules, metadata=metadata, summary_markdown=markdown)
