"""DatasetsConfig: defaults, every problem reported at once, file and KFP-string loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monGARS.mlops.datasets.config import DatasetsConfig, load_datasets_config
from monGARS.mlops.errors import ConfigError


def test_default_config_builds_the_shipped_sample_one_source_per_kind() -> None:
    config = load_datasets_config()
    specs = config.source_specs()
    assert [spec.kind for spec in specs] == [
        "instruction",
        "reasoning",
        "conversation",
        "retrieval",
    ]
    assert all(spec.adapter == "native" for spec in specs)
    assert [spec.name for spec in specs] == [
        "sample_fr_instruction",
        "sample_fr_reasoning",
        "sample_fr_conversation",
        "sample_fr_retrieval",
    ]
    assert config.code_roots == [] and config.languages == ["fr"]
    assert config.CONFIG_NAME == "datasets"


def test_every_problem_is_reported_at_once_with_its_field() -> None:
    values = {
        "sources": [
            {"uri": "a.jsonl", "kind": "poems"},
            {"uri": "b.jsonl", "kind": "retrieval", "adapter": "xp3"},
            {
                "uri": "c.jsonl",
                "kind": "instruction",
                "adapter": "generic",
                "fields": {"instruction": "q"},
            },
            {"uri": "d.jsonl", "kind": "instruction", "max_records": -1, "colour": "red"},
        ],
        "val_split": 1.5,
        "languages": ["fr", "xx"],
        "module_map": ["no-equals-sign"],
        "pii_drop": ["card", "shoe_size"],
        "min_chars": 50,
        "max_chars": 10,
    }
    with pytest.raises(ConfigError) as caught:
        load_datasets_config(values)
    problems = caught.value.problems
    text = str(caught.value)
    for field in (
        "sources[0].kind",
        "sources[1].kind",  # xp3 gives instruction records only
        "sources[2].fields",  # output is missing from the mapping
        "sources[3].max_records",
        "sources[3]: unknown keys ['colour']",
        "val_split",
        "languages",
        "module_map[0]",
        "pii_drop",
        "max_chars",
    ):
        assert field in text, field
    assert len(problems) >= 10
    assert text.count("\n") == 0  # one line


def test_duplicate_source_names_are_refused_with_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"sources\[1\]\.name: 'corpus' is already used by sources\[0\]"
    ):
        load_datasets_config(
            {
                "sources": [
                    {"uri": "a/corpus.jsonl", "kind": "instruction", "name": "corpus"},
                    {"uri": "b/other.jsonl", "kind": "instruction", "name": "corpus"},
                ]
            }
        )


def test_unknown_top_level_key_and_wrong_type_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_datasets_config({"seeds": 3, "val_split": "lots"})
    assert "seeds: unknown field" in str(caught.value)
    assert "val_split: expected float" in str(caught.value)


def test_config_loads_from_yaml_and_sources_from_a_json_string(tmp_path: Path) -> None:
    path = tmp_path / "datasets.yaml"
    path.write_text(
        "seed: 7\nval_split: 0.2\nmodule_map:\n  - 'acme/models/*=Modèles IA'\n"
        "sources:\n  - uri: data/x.csv\n    kind: instruction\n    adapter: generic\n"
        "    fields: {instruction: question, output: reponse}\n",
        encoding="utf-8",
    )
    config = load_datasets_config(path=path)
    assert config.seed == 7 and config.val_split == 0.2
    (spec,) = config.source_specs()
    assert spec.fields == {"instruction": "question", "output": "reponse"}
    assert spec.name == "data_x"
    assert config.module_rules() == [("acme/models/*", "mod_les_ia")]
    # A KFP string parameter carries the sources as JSON; the mapping overrides the file.
    overridden = load_datasets_config(
        {"sources": json.dumps([{"uri": "gs://b/fr/", "kind": "retrieval", "adapter": "miracl"}])},
        path=path,
    )
    assert overridden.source_specs()[0].uri == "gs://b/fr/"
    assert overridden.seed == 7


def test_sources_that_are_not_json_give_one_line_error() -> None:
    with pytest.raises(ConfigError, match="sources: not valid JSON"):
        load_datasets_config({"sources": "[{uri: nope"})


def test_missing_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    from monGARS.mlops.errors import MongarsError

    with pytest.raises(MongarsError, match="not found"):
        load_datasets_config(path=tmp_path / "absent.yaml")


def test_config_is_frozen() -> None:
    config = DatasetsConfig()
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "workers: must be between 0 and 256, 0 meaning one per CPU the container may use"),
        (1000, "workers: must be between 0 and 256"),
        ("two", "workers: expected int, got 'two'"),
    ],
)
def test_bad_workers_value_is_refused_with_one_clear_line(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_datasets_config({"workers": value})
    assert "\n" not in str(caught.value)
    (problem,) = caught.value.problems
    assert problem.startswith(expected)


def test_workers_default_is_zero_meaning_the_container_cpus() -> None:
    assert load_datasets_config({}).workers == 0
    assert load_datasets_config({"workers": "3"}).workers == 3  # KFP string parameter
