"""Adapters on small fixtures written in the real source schemas (xP3, aya, oasst2, miracl, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monGARS.mlops.datasets.adapters import ADAPTERS
from monGARS.mlops.datasets.config import parse_source
from monGARS.mlops.datasets.readers import iter_rows
from monGARS.mlops.datasets.stats import SourceStats

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def adapt(source: dict[str, Any]) -> tuple[list[dict[str, Any]], SourceStats]:
    spec, problems = parse_source(0, source)
    assert spec is not None, problems
    stats = SourceStats(spec.name, spec.uri, spec.kind, spec.adapter)
    records = list(ADAPTERS[spec.adapter](iter_rows(spec, stats), spec, stats, ["fr"]))
    return records, stats


def test_xp3_rows_become_instructions_and_bad_rows_are_counted() -> None:
    records, stats = adapt(
        {"uri": str(FIXTURES / "xp3_fr.jsonl"), "kind": "instruction", "adapter": "xp3"}
    )
    assert stats.read == 10
    assert dict(stats.dropped) == {"malformed_json": 1, "invalid_fields": 1}
    assert len(records) == 8
    first = records[0]
    assert set(first) == {"id", "source", "instruction", "input", "output"}
    assert first["instruction"].startswith("Résume ce texte en une phrase")
    assert first["input"] == "" and first["source"] == "datasets_xp3_fr"
    # xP3 rows have no id: a content hash, prefixed with the source name, stands in.
    assert first["id"].startswith("datasets_xp3_fr-") and len({r["id"] for r in records}) == 7


def test_aya_keeps_french_tagged_rows_only() -> None:
    records, stats = adapt(
        {"uri": str(FIXTURES / "aya_collection_fr.jsonl"), "kind": "instruction", "adapter": "aya"}
    )
    assert dict(stats.dropped) == {"language_tag": 2}  # eng and spa rows
    assert [r["id"] for r in records] == [
        "datasets_aya_collection_fr-101",
        "datasets_aya_collection_fr-102",
        "datasets_aya_collection_fr-103",
        "datasets_aya_collection_fr-106",  # tagged fra but German: the language filter's job
    ]
    assert records[1]["output"] == "En breton, on dit « trugarez » pour remercier quelqu'un."


def test_oasst2_message_rows_become_whole_best_ranked_threads() -> None:
    records, stats = adapt(
        {"uri": str(FIXTURES / "oasst2_fr.jsonl"), "kind": "conversation", "adapter": "oasst2"}
    )
    assert dict(stats.dropped) == {"language_tag": 1, "incomplete_thread": 1, "invalid_fields": 1}
    assert [r["id"] for r in records] == [
        "datasets_oasst2_fr-tree-a0",
        "datasets_oasst2_fr-tree-b0",
    ]
    thread = records[0]["messages"]
    assert [m["role"] for m in thread] == ["user", "assistant", "user", "assistant"]
    assert thread[1]["content"].startswith("Commencez par installer Python")  # rank 0 beats rank 1
    assert thread[2]["content"] == "Merci ! Et quels projets me conseillez-vous ensuite ?"
    assert all("supprimé" not in m["content"] for m in thread)  # deleted message never chosen
    assert len(records[1]["messages"]) == 2


def test_oasst2_nested_tree_export_is_read_too() -> None:
    records, stats = adapt(
        {
            "uri": str(FIXTURES / "oasst2_trees_fr.jsonl"),
            "kind": "conversation",
            "adapter": "oasst2",
        }
    )
    assert not stats.dropped
    (record,) = records
    contents = [m["content"] for m in record["messages"]]
    assert len(contents) == 4
    assert contents[1].startswith("« Cosmos » de Carl Sagan")
    assert contents[3].startswith("Oui, de nombreux albums")


def test_miracl_passages_keep_title_and_text() -> None:
    records, stats = adapt(
        {"uri": str(FIXTURES / "miracl_fr.jsonl"), "kind": "retrieval", "adapter": "miracl"}
    )
    assert len(records) == 5 and stats.read == 5 and not stats.dropped
    first = records[0]
    assert first["id"] == "datasets_miracl_fr-fr-q1"
    assert first["query"] == "Quand la tour Eiffel a-t-elle été construite ?"
    assert first["positives"] == [
        "Tour Eiffel\nLa tour Eiffel a été construite de 1887 à 1889 "
        "pour l'Exposition universelle de Paris."
    ]
    assert len(first["negatives"]) == 2 and first["negatives"][0].startswith("Arc de triomphe\n")
    assert records[2]["negatives"] == []
    assert records[4]["positives"] == []  # no positive passage: the schema check drops it later


def test_generic_maps_sharegpt_conversations_with_role_aliases() -> None:
    records, stats = adapt(
        {
            "uri": str(FIXTURES / "sharegpt_fr.jsonl"),
            "kind": "conversation",
            "adapter": "generic",
            "fields": {
                "id": "conv_id",
                "messages": "conversations",
                "role": "from",
                "content": "value",
            },
        }
    )
    assert not stats.dropped
    assert [r["id"] for r in records] == [
        "datasets_sharegpt_fr-sg-1",
        "datasets_sharegpt_fr-sg-2",
        "datasets_sharegpt_fr-sg-3",
    ]
    assert [m["role"] for m in records[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert records[2]["messages"][0] == {
        "role": "system",
        "content": "Tu réponds brièvement et en français.",
    }


def test_generic_reads_nested_fields_with_dotted_paths() -> None:
    records, stats = adapt(
        {
            "uri": str(FIXTURES / "nested_reasoning_fr.jsonl"),
            "kind": "reasoning",
            "adapter": "generic",
            "fields": {
                "id": "uid",
                "question": "problem.text",
                "reasoning": "solution.steps",
                "answer": "solution.final",
            },
        }
    )
    assert dict(stats.dropped) == {"invalid_fields": 1}  # nr-3 has no solution
    assert records[0]["answer"] == "Il parcourt 50 kilomètres."
    assert records[1]["reasoning"].startswith("Une journée compte 24 heures")


def test_generic_csv_source() -> None:
    records, stats = adapt(
        {
            "uri": str(FIXTURES / "generic_fr.csv"),
            "kind": "instruction",
            "adapter": "generic",
            "fields": {"id": "identifiant", "instruction": "question", "output": "reponse"},
        }
    )
    assert stats.read == 5 and len(records) == 5
    assert records[3]["instruction"] == "Quelle est la meilleure façon de conserver le pain ?"


def test_native_rows_with_every_kind_of_damage_are_counted() -> None:
    records, stats = adapt(
        {"uri": str(FIXTURES / "native_bad_instruction.jsonl"), "kind": "instruction"}
    )
    assert dict(stats.dropped) == {"malformed_json": 1, "not_an_object": 1, "invalid_fields": 2}
    assert [r["id"] for r in records] == ["nb-1", "nb-4", "nb-5", "nb-6", "nb-7"]  # native ids kept


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_adapters_never_raise_on_rows_of_the_wrong_shape(adapter: str, tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text('{"a": 1}\n{"text": null, "messages": 3, "inputs": []}\n{}\n', encoding="utf-8")
    kind = {
        "xp3": "instruction",
        "aya": "instruction",
        "oasst2": "conversation",
        "miracl": "retrieval",
    }
    fields = {"generic": {"instruction": "x", "output": "y"}}
    records, stats = adapt(
        {
            "uri": str(path),
            "kind": kind.get(adapter, "instruction"),
            "adapter": adapter,
            **({"fields": fields[adapter]} if adapter in fields else {}),
        }
    )
    assert records == []
    assert sum(stats.dropped.values()) == 3
