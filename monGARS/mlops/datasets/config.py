"""The build_datasets config: sources, cleaning thresholds, code mining and the module mapping.

Sources are plain dicts (so they travel as YAML/JSON and KFP parameters) checked here into
``SourceSpec`` objects; every problem of every source is reported at once with its index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monGARS.mlops.configs import Checks, load_config, read_config_file
from monGARS.mlops.datasets.langid import DEFAULT_MIN_PROBABILITY, SUPPORTED_LANGUAGES
from monGARS.mlops.datasets.pii import PII_KINDS
from monGARS.mlops.datasets.records import KINDS
from monGARS.mlops.errors import ConfigError
from monGARS.mlops.names import to_identifier

PACKAGE_SCHEME = "mongars://"  # files shipped inside the package: mongars://sample_fr/<file>
HUB_SCHEME = "hf://"
FORMATS = ("jsonl", "parquet", "csv")
ADAPTER_KINDS: dict[str, tuple[str, ...]] = {
    "native": KINDS,
    "generic": KINDS,
    "xp3": ("instruction",),
    "aya": ("instruction",),
    "oasst2": ("conversation",),
    "miracl": ("retrieval",),
}
# Generic adapter: target fields per kind (required, optional). Values name the source's fields
# (dotted paths reach into nested objects). ``role``/``content`` name the keys inside messages.
GENERIC_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "instruction": (("instruction", "output"), ("id", "input")),
    "reasoning": (("question", "reasoning", "answer"), ("id",)),
    "conversation": (("messages",), ("id", "role", "content")),
    "retrieval": (("query", "positives"), ("id", "negatives")),
}
SOURCE_KEYS = (
    "uri",
    "kind",
    "adapter",
    "name",
    "fields",
    "split",
    "config",
    "subset",
    "format",
    "max_records",
    "max_rows",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class SourceSpec:
    """One checked source: where to read, which schema it has, what kind of records it gives."""

    uri: str
    kind: str
    adapter: str = "native"
    name: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    split: str = "train"
    config: str | None = None
    subset: str | None = None
    format: str | None = None
    max_records: int = 0  # records kept (after cleaning) from this source; 0: no cap
    max_rows: int = 0  # raw rows read from this source; 0: no cap

    def public(self) -> dict[str, Any]:
        """The spec as written into summaries (no secrets are ever part of it)."""
        return {key: getattr(self, key) for key in SOURCE_KEYS}


def default_name(uri: str) -> str:
    """A source name from the last two parts of its URI (sample_fr/x.jsonl -> sample_fr_x)."""
    stem = uri
    for prefix in (PACKAGE_SCHEME, HUB_SCHEME, "gs://"):
        if stem.startswith(prefix):
            stem = stem[len(prefix) :]
    stem = stem.rstrip("/")
    for suffix in (".jsonl.gz", ".jsonl", ".json", ".parquet", ".csv"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    parts = [part for part in stem.split("/") if part]
    return to_identifier("_".join(parts[-2:]) if parts else "source")


def _str_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(value.strip()))


def parse_source(index: int, raw: Any) -> tuple[SourceSpec | None, list[str]]:
    """Check one source dict; return the spec (or None) and every problem, prefixed by its index."""
    where = f"sources[{index}]"
    if not isinstance(raw, Mapping):
        return None, [f"{where}: expected a mapping with at least uri and kind, got {raw!r}"[:200]]
    checks = Checks()
    unknown = sorted(set(raw) - set(SOURCE_KEYS))
    checks.require(not unknown, where, f"unknown keys {unknown}; valid: {', '.join(SOURCE_KEYS)}")
    uri, kind = raw.get("uri"), raw.get("kind")
    adapter = raw.get("adapter", "native")
    checks.require(
        isinstance(uri, str) and bool(uri.strip()),
        f"{where}.uri",
        "give a path, gs:// URI or hub id",
    )
    checks.require(
        kind in KINDS, f"{where}.kind", f"must be one of {', '.join(KINDS)} (got {kind!r})"
    )
    checks.require(
        adapter in ADAPTER_KINDS,
        f"{where}.adapter",
        f"must be one of {', '.join(ADAPTER_KINDS)} (got {adapter!r})",
    )
    if adapter in ADAPTER_KINDS and kind in KINDS:
        checks.require(
            kind in ADAPTER_KINDS[adapter],
            f"{where}.kind",
            f"the {adapter} adapter gives {', '.join(ADAPTER_KINDS[adapter])} records, not {kind}",
        )
    fields = raw.get("fields", {})
    if not isinstance(fields, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in fields.items()
    ):
        checks.require(False, f"{where}.fields", "expected a mapping of target field: source field")
        fields = {}
    if adapter == "generic" and kind in GENERIC_FIELDS:
        required, optional = GENERIC_FIELDS[kind]
        missing = [key for key in required if key not in fields]
        extra = sorted(set(fields) - set(required) - set(optional))
        checks.require(
            not missing,
            f"{where}.fields",
            f"the generic adapter needs {missing} for {kind} records",
        )
        checks.require(not extra, f"{where}.fields", f"unknown target fields {extra} for {kind}")
    elif fields:
        checks.require(False, f"{where}.fields", "only the generic adapter takes a field mapping")
    for key in ("split", "config", "subset"):
        checks.require(_str_or_none(raw.get(key)), f"{where}.{key}", "expected a non-empty string")
    fmt = raw.get("format")
    checks.require(fmt is None or fmt in FORMATS, f"{where}.format", f"must be one of {FORMATS}")
    for key in ("max_records", "max_rows"):
        value = raw.get(key, 0)
        checks.require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            f"{where}.{key}",
            f"expected an integer >= 0, 0 meaning no cap (got {value!r})",
        )
    name = raw.get("name")
    if name is not None:
        checks.require(
            isinstance(name, str) and bool(_NAME.fullmatch(name)),
            f"{where}.name",
            "use 1-64 lowercase letters, digits or '_', starting with a letter or digit",
        )
    if checks.found:
        return None, checks.found
    spec = SourceSpec(
        uri=uri.strip(),
        kind=kind,
        adapter=adapter,
        name=name or default_name(uri.strip()),
        fields=dict(fields),
        split=raw.get("split") or "train",
        config=raw.get("config"),
        subset=raw.get("subset"),
        format=fmt,
        max_records=raw.get("max_records", 0),
        max_rows=raw.get("max_rows", 0),
    )
    return spec, []


def default_sources() -> list[dict[str, Any]]:
    """The shipped French sample corpus, one native source per kind file."""
    return [{"uri": f"{PACKAGE_SCHEME}sample_fr/{kind}.jsonl", "kind": kind} for kind in KINDS]


@dataclass(frozen=True)
class DatasetsConfig:
    """Everything build_datasets needs; defaults: the shipped sample, and monGARS mined itself."""

    CONFIG_NAME = "datasets"

    # Where records come from (see docs/datasets.md); default: the shipped French sample corpus.
    sources: list[dict[str, Any]] = field(default_factory=default_sources)
    # Source trees for the code miner: folders, archives or gs:// URIs; [] means the installed
    # monGARS package.
    code_roots: list[str] = field(default_factory=list)
    # "glob=module" pairs matched against "<root name>/<path>"; first match wins; unmatched files
    # fall back to the default of one module per sub-package.
    module_map: list[str] = field(default_factory=list)
    val_split: float = 0.1  # share of each kind/module held out for validation (hash of id + seed)
    seed: int = 42  # the pipeline's split_seed default (monGARS.mlops.parameters)
    min_chars: int = 16  # a record's own text, all fields joined
    max_chars: int = 20_000
    languages: list[str] = field(default_factory=lambda: ["fr"])
    # Share of the language model's probability (over the 7 supported languages) that the
    # accepted languages need; measured on bench/bench_langid.py (docs/datasets.md).
    language_min_probability: float = DEFAULT_MIN_PROBABILITY
    # Records with too little prose to judge (too short, all code, all numbers): keep or drop.
    language_undecided: str = "keep"
    near_dedup: bool = True
    near_dup_threshold: float = 0.8  # estimated Jaccard similarity of word shingles
    minhash_permutations: int = 128
    shingle_size: int = 3  # words per shingle
    # PII kinds that drop the record; the other kinds are redacted in place.
    pii_drop: list[str] = field(default_factory=lambda: ["card", "iban", "nir", "secret"])
    # Modules with fewer mined records are excluded from modules.json (reported in the summary).
    min_module_records: int = 4
    progress: bool = True  # tqdm bars on long sources (they switch off when not on a terminal)

    def source_specs(self) -> list[SourceSpec]:
        """The checked sources (the config is valid, so every one parses)."""
        return [
            spec for spec, _ in (parse_source(i, raw) for i, raw in enumerate(self.sources)) if spec
        ]

    def module_rules(self) -> list[tuple[str, str]]:
        """The module map as (glob, sanitised module name) pairs, in order."""
        rules = []
        for pair in self.module_map:
            pattern, _, module = pair.partition("=")
            rules.append((pattern.strip(), to_identifier(module.strip())))
        return rules

    def problems(self) -> list[str]:
        checks = Checks()
        checks.require(bool(self.sources), "sources", "give at least one source (uri and kind)")
        names: dict[str, int] = {}
        for index, raw in enumerate(self.sources):
            spec, found = parse_source(index, raw)
            checks.found.extend(found)
            if spec is not None:
                if spec.name in names:
                    checks.require(
                        False,
                        f"sources[{index}].name",
                        f"{spec.name!r} is already used by sources[{names[spec.name]}]; "
                        "give each source a distinct name",
                    )
                names.setdefault(spec.name, index)
        for index, root in enumerate(self.code_roots):
            checks.require(bool(root.strip()), f"code_roots[{index}]", "empty path")
        for index, pair in enumerate(self.module_map):
            pattern, sep, module = pair.partition("=")
            checks.require(
                bool(sep and pattern.strip() and module.strip()),
                f"module_map[{index}]",
                f"expected 'glob=module', e.g. 'monGARS/mlops/training/*=training' (got {pair!r})",
            )
        checks.fraction("val_split", self.val_split)
        checks.at_least("min_chars", self.min_chars, 1)
        checks.require(
            self.max_chars > self.min_chars,
            "max_chars",
            f"must be greater than min_chars ({self.min_chars})",
        )
        bad_languages = sorted(set(self.languages) - set(SUPPORTED_LANGUAGES))
        checks.require(bool(self.languages), "languages", "give at least one language code")
        checks.require(
            not bad_languages,
            "languages",
            f"unsupported {bad_languages}; "
            f"the offline identifier knows {', '.join(SUPPORTED_LANGUAGES)}",
        )
        checks.fraction("language_min_probability", self.language_min_probability)
        checks.require(
            self.language_undecided in ("keep", "drop"),
            "language_undecided",
            f"must be 'keep' or 'drop' (got {self.language_undecided!r})",
        )
        checks.require(
            0 < self.near_dup_threshold <= 1,
            "near_dup_threshold",
            f"must be in (0, 1] (got {self.near_dup_threshold})",
        )
        checks.require(
            16 <= self.minhash_permutations <= 1024,
            "minhash_permutations",
            f"must be between 16 and 1024 (got {self.minhash_permutations})",
        )
        checks.require(
            1 <= self.shingle_size <= 10,
            "shingle_size",
            f"must be between 1 and 10 words (got {self.shingle_size})",
        )
        bad_pii = sorted(set(self.pii_drop) - set(PII_KINDS))
        checks.require(
            not bad_pii, "pii_drop", f"unknown kinds {bad_pii}; valid: {', '.join(PII_KINDS)}"
        )
        checks.at_least("min_module_records", self.min_module_records, 2)
        return checks.found


def load_datasets_config(
    values: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> DatasetsConfig:
    """Build the config from a YAML/JSON file and/or a mapping (the mapping wins).

    ``sources`` may arrive as a JSON string (a KFP string parameter); it is decoded here.
    """
    merged: dict[str, Any] = dict(read_config_file(path)) if path is not None else {}
    merged.update(values or {})
    for key in ("sources",):
        raw = merged.get(key)
        if isinstance(raw, str):
            try:
                merged[key] = json.loads(raw) if raw.strip() else []
            except json.JSONDecodeError as error:
                raise ConfigError(
                    DatasetsConfig.CONFIG_NAME,
                    [f"{key}: not valid JSON ({error.msg}); give a JSON list of source objects"],
                ) from None
    return load_config(DatasetsConfig, merged)
