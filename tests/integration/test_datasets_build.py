"""build_datasets end to end: layout, schemas, drop reasons, determinism, gs:// via an emulator."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tarfile
from pathlib import Path
from typing import Any

import pytest

from monGARS.mlops.datasets.build import build_datasets
from monGARS.mlops.datasets.config import load_datasets_config
from monGARS.mlops.datasets.records import KINDS, check_messages, check_record
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.tiny_model import sample_corpus_dir

SAMPLE_RETRIEVAL = sample_corpus_dir() / "retrieval.jsonl"

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
CODE_TREE = str(FIXTURES / "code_tree")


def fixture_sources() -> list[dict[str, Any]]:
    return [
        {
            "uri": str(FIXTURES / "xp3_fr.jsonl"),
            "kind": "instruction",
            "adapter": "xp3",
            "name": "xp3",
        },
        {
            "uri": str(FIXTURES / "aya_collection_fr.jsonl"),
            "kind": "instruction",
            "adapter": "aya",
            "name": "aya",
        },
        {
            "uri": str(FIXTURES / "oasst2_fr.jsonl"),
            "kind": "conversation",
            "adapter": "oasst2",
            "name": "oasst2",
        },
        {
            "uri": str(FIXTURES / "miracl_fr.jsonl"),
            "kind": "retrieval",
            "adapter": "miracl",
            "name": "miracl",
        },
        {
            "uri": str(FIXTURES / "generic_fr.csv"),
            "kind": "instruction",
            "adapter": "generic",
            "name": "faq_csv",
            "fields": {"id": "identifiant", "instruction": "question", "output": "reponse"},
        },
        {
            "uri": str(FIXTURES / "native_bad_instruction.jsonl"),
            "kind": "instruction",
            "name": "native_bad",
        },
        {
            "uri": str(FIXTURES / "sharegpt_fr.jsonl"),
            "kind": "conversation",
            "adapter": "generic",
            "name": "sharegpt",
            "fields": {
                "id": "conv_id",
                "messages": "conversations",
                "role": "from",
                "content": "value",
            },
        },
        {
            "uri": str(FIXTURES / "nested_reasoning_fr.jsonl"),
            "kind": "reasoning",
            "adapter": "generic",
            "name": "nested",
            "fields": {
                "question": "problem.text",
                "reasoning": "solution.steps",
                "answer": "solution.final",
            },
        },
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:  # keys sorted, compact, UTF-8 kept
        assert line == json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True)
    return [json.loads(line) for line in lines]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_default_build_writes_the_contract_layout(tmp_path: Path) -> None:
    out = tmp_path / "datasets"
    result = build_datasets(load_datasets_config({"progress": False}), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "corpora",
        "modules",
        "modules.json",
        "summary.json",
        "summary.md",
    ]
    for kind in KINDS:
        train = read_jsonl(out / "corpora" / kind / "train.jsonl")
        val = read_jsonl(out / "corpora" / kind / "val.jsonl")
        assert train and val, kind
        for record in train + val:
            check_record(kind, record)
    modules = json.loads((out / "modules.json").read_text(encoding="utf-8"))
    assert modules == result.modules and len(modules) >= 2
    assert {"mlops", "mlops_datasets"} <= set(modules)
    for module in modules:
        records = read_jsonl(out / "modules" / module / "train.jsonl") + read_jsonl(
            out / "modules" / module / "val.jsonl"
        )
        for record in records:
            assert set(record) == {"id", "module", "source", "messages", "fact"}
            assert record["module"] == module and record["source"] == "code:monGARS"
            check_messages(record["messages"])
            assert isinstance(record["fact"], dict) and record["fact"]["type"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["records_kept"] == sum(
        counts["train"] + counts["val"] for counts in summary["outputs"].values()
    )
    # What summary.json counts is what the files hold, and no record is on both sides.
    sides = [(summary["outputs"][kind], out / "corpora" / kind) for kind in KINDS]
    sides += [(summary["modules"][module], out / "modules" / module) for module in modules]
    for counts, folder in sides:
        train_ids = [r["id"] for r in read_jsonl(folder / "train.jsonl")]
        val_ids = [r["id"] for r in read_jsonl(folder / "val.jsonl")]
        assert not set(train_ids) & set(val_ids), f"{folder}: records in both train and val"
        assert (counts["train"], counts["val"]) == (len(train_ids), len(val_ids)), folder
    assert all(isinstance(v, str | int | float) for v in result.metadata.values())
    assert result.metadata["module_count"] == len(modules)
    assert result.metadata["instruction_train"] + result.metadata["instruction_val"] == 40
    shipped = sum(1 for line in SAMPLE_RETRIEVAL.read_text(encoding="utf-8").splitlines() if line)
    row = f"| sample_fr_retrieval | retrieval | native | {shipped} | {shipped} | 0 |"
    assert row in result.summary_markdown
    assert (out / "summary.md").read_text(encoding="utf-8") == result.summary_markdown


def test_every_drop_is_counted_by_reason_per_source(tmp_path: Path) -> None:
    config = load_datasets_config(
        {"sources": fixture_sources(), "code_roots": [CODE_TREE], "progress": False}
    )
    build_datasets(config, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    by_name = {source["name"]: source for source in summary["sources"]}
    expected = {
        "xp3": (
            4,
            {
                "malformed_json": 1,
                "invalid_fields": 1,
                "duplicate_exact": 1,
                "duplicate_near": 1,
                "pii_card": 1,
                "language": 1,
            },
        ),
        "aya": (3, {"language_tag": 2, "language": 1}),
        "oasst2": (2, {"language_tag": 1, "incomplete_thread": 1, "invalid_fields": 1}),
        "miracl": (3, {"language": 1, "invalid_fields": 1}),
        "faq_csv": (3, {"pii_nir": 1, "pii_iban": 1}),
        "native_bad": (
            1,
            {
                "malformed_json": 1,
                "not_an_object": 1,
                "invalid_fields": 2,
                "spam_repetition": 1,
                "spam_urls": 1,
                "too_short": 1,
                "pii_secret": 1,
            },
        ),
        "sharegpt": (2, {"invalid_fields": 1}),
        "nested": (2, {"invalid_fields": 1}),
    }
    for name, (kept, dropped) in expected.items():
        assert (by_name[name]["kept"], by_name[name]["dropped"]) == (kept, dropped), name
    assert by_name["aya"]["redacted"] == {"email": 1}
    assert by_name["faq_csv"]["redacted"] == {"phone": 2}
    assert summary["duplicates"] == {"duplicate_exact": 1, "duplicate_near": 1}
    retrieval = read_jsonl(tmp_path / "out" / "corpora" / "retrieval" / "train.jsonl") + read_jsonl(
        tmp_path / "out" / "corpora" / "retrieval" / "val.jsonl"
    )
    assert sorted(r["id"] for r in retrieval) == ["miracl-fr-q1", "miracl-fr-q2", "miracl-fr-q3"]
    conversations = read_jsonl(
        tmp_path / "out" / "corpora" / "conversation" / "train.jsonl"
    ) + read_jsonl(tmp_path / "out" / "corpora" / "conversation" / "val.jsonl")
    assert max(len(c["messages"]) for c in conversations) == 4  # whole threads, not flattened


def test_duplicates_are_removed_across_sources_and_caps_keep_the_index_clean(
    tmp_path: Path, sample_corpus_dir: Path
) -> None:
    rows = [
        json.loads(line)
        for line in (sample_corpus_dir / "instruction.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    copies = tmp_path / "copies.jsonl"
    # A near duplicate well above the 0.8 threshold (word 3-gram Jaccard 0.98): LSH finds a pair
    # at 0.88 only 98 % of the time with the documented 12 x 10 banding, so a one-word swap in
    # this 53-word record would test the luck of the hash seed, not the dedup.
    near = dict(rows[3], output=rows[3]["output"] + " Voilà.")
    lines = [
        {"q": rows[0]["instruction"].upper(), "a": rows[0]["output"]},  # exact modulo case
        {"q": near["instruction"] + " " + near["input"], "a": near["output"]},  # near duplicate
        {"q": rows[7]["instruction"], "a": rows[7]["output"]},  # beyond the first source's cap
    ]
    copies.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    sources = [
        {
            "uri": "mongars://sample_fr/instruction.jsonl",
            "kind": "instruction",
            "max_records": 5,
            "name": "capped",
        },
        {
            "uri": str(copies),
            "kind": "instruction",
            "adapter": "generic",
            "fields": {"instruction": "q", "output": "a"},
            "name": "copies",
        },
    ]
    config = load_datasets_config(
        {"sources": sources, "code_roots": [CODE_TREE], "progress": False}
    )
    build_datasets(config, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    capped, copied = summary["sources"]
    assert capped["kept"] == 5 and capped["capped"] is True
    assert copied["dropped"] == {"duplicate_exact": 1, "duplicate_near": 1}
    assert copied["kept"] == 1  # record 7 never entered the index: the cap stopped before it


def test_same_inputs_and_seed_give_byte_identical_outputs(tmp_path: Path) -> None:
    values = {"sources": fixture_sources(), "code_roots": [CODE_TREE], "progress": False, "seed": 3}
    first = build_datasets(load_datasets_config(values), tmp_path / "one")
    second = build_datasets(load_datasets_config(values), tmp_path / "two")
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two")
    assert first.metadata == second.metadata
    other = build_datasets(
        load_datasets_config({**values, "seed": 4, "val_split": 0.5}), tmp_path / "three"
    )
    assert other.metadata["content_sha256"] != first.metadata["content_sha256"]


def test_split_side_depends_only_on_id_and_seed(tmp_path: Path) -> None:
    def sides(out: Path) -> dict[str, str]:
        found = {}
        for side in ("train", "val"):
            for record in read_jsonl(out / "corpora" / "retrieval" / f"{side}.jsonl"):
                found[record["id"]] = side
        return found

    base = {"code_roots": [CODE_TREE], "progress": False, "val_split": 0.3}
    alone = [{"uri": "mongars://sample_fr/retrieval.jsonl", "kind": "retrieval"}]
    build_datasets(load_datasets_config({**base, "sources": alone}), tmp_path / "a")
    more = [
        *alone,
        {"uri": str(FIXTURES / "miracl_fr.jsonl"), "kind": "retrieval", "adapter": "miracl"},
    ]
    build_datasets(load_datasets_config({**base, "sources": more}), tmp_path / "b")
    a, b = sides(tmp_path / "a"), sides(tmp_path / "b")
    assert 0 < list(a.values()).count("val") < len(a)
    assert {key: b[key] for key in a} == a


def test_small_modules_are_excluded_and_reported(tmp_path: Path) -> None:
    config = load_datasets_config(
        {
            "code_roots": [CODE_TREE],
            "module_map": ["code_tree/acme/data/*=Données", "code_tree/acme/models/*=acme_models"],
            "progress": False,
        }
    )
    result = build_datasets(config, tmp_path / "out")
    assert result.modules == ["acme_core", "acme_models", "donn_es"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["modules"]["acme"]["status"].startswith(
        "excluded: 1 records < min_module_records"
    )
    assert not (tmp_path / "out" / "modules" / "acme").exists()
    assert "| acme | 0 | 0 | excluded" in result.summary_markdown
    for module in result.modules:
        assert (tmp_path / "out" / "modules" / module / "val.jsonl").stat().st_size > 0
    with pytest.raises(MongarsError, match=r"min_module_records: no module has 500 or more"):
        build_datasets(
            load_datasets_config({"code_roots": [CODE_TREE], "min_module_records": 500}),
            tmp_path / "x",
        )
    assert not (tmp_path / "x").exists()


def test_nothing_usable_fails_naming_sources_and_reasons_and_writes_nothing(tmp_path: Path) -> None:
    english = tmp_path / "english.jsonl"
    english.write_text(
        json.dumps(
            {
                "id": "e1",
                "instruction": "Explain what a loss function is in machine learning.",
                "input": "",
                "output": "A loss function measures how far the predictions are from the targets.",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    config = load_datasets_config(
        {
            "sources": [
                {"uri": str(english), "kind": "instruction", "name": "english"},
                {"uri": str(tmp_path / "missing.jsonl"), "kind": "instruction", "name": "missing"},
            ],
            "code_roots": [CODE_TREE],
        }
    )
    out = tmp_path / "out"
    with pytest.raises(MongarsError) as caught:
        build_datasets(config, out)
    message = str(caught.value)
    assert "\n" not in message
    assert "english: read 1, kept 0 (language 1)" in message
    assert "missing: not found" in message
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


# ---- gs:// through a local GCS emulator ------------------------------------------------------


def test_gcs_sources_and_code_archive_are_read_through_gcsfs(
    gcs_bucket: str, tmp_path: Path
) -> None:
    from monGARS.mlops import storage

    gcs_bucket = gcs_bucket.removeprefix("gs://")  # the bare bucket name

    assert os.environ["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    fs, _ = storage.filesystem_for(f"gs://{gcs_bucket}/x")
    fs.put(str(FIXTURES / "miracl_fr.jsonl"), f"{gcs_bucket}/fr/retrieval/part-0.jsonl")
    fs.put(str(FIXTURES / "xp3_fr.jsonl"), f"{gcs_bucket}/fr/xp3.jsonl")
    archive = tmp_path / "acme.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(FIXTURES / "code_tree" / "acme", arcname="acme")
    fs.put(str(archive), f"{gcs_bucket}/src/acme.tar.gz")
    config = load_datasets_config(
        {
            "sources": [
                {
                    "uri": f"gs://{gcs_bucket}/fr/retrieval/",
                    "kind": "retrieval",
                    "adapter": "miracl",
                },
                {"uri": f"gs://{gcs_bucket}/fr/xp3.jsonl", "kind": "instruction", "adapter": "xp3"},
                {
                    "uri": f"gs://{gcs_bucket}/fr/absent.jsonl",
                    "kind": "instruction",
                    "name": "absent",
                },
            ],
            "code_roots": [f"gs://{gcs_bucket}/src/acme.tar.gz"],
            "progress": False,
        }
    )
    result = build_datasets(config, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    retrieval, xp3, absent = summary["sources"]
    assert (retrieval["read"], retrieval["kept"]) == (5, 3)
    assert (xp3["read"], xp3["kept"]) == (10, 4)
    assert absent["error"] == "does not exist; check the path or bucket"
    assert summary["code"]["roots"] == ["acme"]
    # The archive's root is the package itself, so modules are its sub-packages (as for monGARS).
    assert result.modules == ["core", "data", "models"]
    with pytest.raises(
        MongarsError, match=rf"code_roots\[0\]: gs://{gcs_bucket}/src/none.tar.gz does not exist"
    ):
        build_datasets(
            load_datasets_config({"code_roots": [f"gs://{gcs_bucket}/src/none.tar.gz"]}),
            tmp_path / "o2",
        )


def test_killed_build_leaves_nothing_that_looks_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monGARS.mlops.datasets import build as build_module

    good = tmp_path / "good"
    build_datasets(load_datasets_config({"progress": False, "code_roots": [CODE_TREE]}), good)
    before = hashlib.sha256(b"".join(tree_bytes(good).values())).hexdigest()

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # killed midway: corpora written, modules not yet

    monkeypatch.setattr(build_module, "_mine_modules", crash)
    with pytest.raises(KeyboardInterrupt):
        build_datasets(load_datasets_config({"progress": False}), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]
    # A previous complete artifact survives a failed rebuild untouched.
    with pytest.raises(KeyboardInterrupt):
        build_datasets(load_datasets_config({"progress": False}), good)
    assert hashlib.sha256(b"".join(tree_bytes(good).values())).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]


_FRENCH_WORDS = [
    "maison",
    "jardin",
    "rivière",
    "montagne",
    "village",
    "école",
    "marché",
    "voiture",
    "fenêtre",
    "cuisine",
    "bibliothèque",
    "ordinateur",
    "fichier",
    "dossier",
    "réseau",
    "serveur",
    "modèle",
    "données",
    "calcul",
    "mémoire",
    "projet",
    "équipe",
    "semaine",
    "matin",
    "soir",
    "hiver",
    "printemps",
    "été",
    "automne",
    "chemin",
    "forêt",
    "plage",
    "musée",
    "théâtre",
]
_FRENCH_VERBS = [
    "prépare",
    "décrit",
    "compare",
    "mesure",
    "corrige",
    "explique",
    "range",
    "vérifie",
    "ouvre",
    "ferme",
]


def synthetic_french_rows(count: int, seed: int) -> list[dict[str, Any]]:
    """French instruction rows with exact and near copies of earlier rows, English rows and PII."""
    import random

    rng = random.Random(seed)

    def sentence() -> str:
        words = [rng.choice(["Le", "La", "Chaque", "Notre"]), rng.choice(_FRENCH_WORDS)]
        words += [rng.choice(_FRENCH_VERBS), "la", rng.choice(_FRENCH_WORDS)]
        for _ in range(rng.randint(2, 4)):
            words += [rng.choice(["de la", "du", "avec le", "pour la", "dans le"])]
            words += [rng.choice(_FRENCH_WORDS) + str(rng.randrange(100))]
        return " ".join(words) + "."

    rows: list[dict[str, Any]] = []
    for index in range(count):
        roll = rng.random()
        if rows and roll < 0.06:
            source = rows[rng.randrange(len(rows))]
            row = dict(source, instruction=source["instruction"].upper())
        elif rows and roll < 0.12:
            source = rows[rng.randrange(len(rows))]
            words = source["output"].split()
            words[rng.randrange(len(words))] = rng.choice(_FRENCH_WORDS)
            row = dict(source, output=" ".join(words))
        else:
            row = {
                "instruction": "Explique pourquoi " + sentence(),
                "input": "",
                "output": " ".join(sentence() for _ in range(rng.randint(4, 6))),
            }
            if roll < 0.15:
                row["output"] = (
                    "The model is trained on the data and the results are compared with the "
                    "previous run so that we can see which settings work better."
                )
            elif roll < 0.16:
                row["output"] += " Écrivez-moi à jeanne.dupont@example.fr pour la suite."
            elif roll < 0.17:
                row["output"] += " Carte : 4111 1111 1111 1111."
        rows.append({**row, "id": f"syn-{index}", "source": "synthetic"})
    return rows


def test_output_bytes_do_not_depend_on_the_worker_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monGARS.mlops.datasets import build, parallel
    from monGARS.mlops.datasets.config import default_sources

    corpus = tmp_path / "synthetic.jsonl"
    corpus.write_text(
        "".join(
            json.dumps(row, ensure_ascii=False) + "\n" for row in synthetic_french_rows(1500, 7)
        ),
        encoding="utf-8",
    )
    sources = [
        *default_sources(),
        # Stopped by its cap while workers are already cleaning the batches after it.
        {"uri": str(corpus), "kind": "instruction", "name": "capped", "max_records": 250},
        {"uri": str(corpus), "kind": "instruction", "name": "synthetic"},
    ]
    monkeypatch.setattr(build, "BATCH_SIZE", 64)  # many batches in flight, even on the sample
    pools = []
    started = parallel.BatchRunner._executor

    def spy(runner: parallel.BatchRunner) -> Any:
        if runner._pool is None:
            pools.append(runner.workers)
        return started(runner)

    monkeypatch.setattr(parallel.BatchRunner, "_executor", spy)
    results = {}
    for workers in (1, 2):
        config = load_datasets_config(
            {"sources": sources, "code_roots": [CODE_TREE], "progress": False, "workers": workers}
        )
        results[workers] = build_datasets(config, tmp_path / f"workers{workers}")
    assert pools == [2]  # one pool of two worker processes, for the second build only
    assert tree_bytes(tmp_path / "workers1") == tree_bytes(tmp_path / "workers2")
    one, two = (dict(results[w].metadata) for w in (1, 2))
    assert (one.pop("workers"), two.pop("workers")) == (1, 2)
    assert one == two
    summary = json.loads((tmp_path / "workers2" / "summary.json").read_text(encoding="utf-8"))
    by_name = {source["name"]: source for source in summary["sources"]}
    capped, synthetic = by_name["capped"], by_name["synthetic"]
    assert capped["kept"] == 250 and capped["capped"] is True
    assert capped["read"] < 1500  # the rows read up to the batch where the cap stopped it
    assert synthetic["read"] == 1500 and synthetic["kept"] > 900
    for reason in ("duplicate_exact", "duplicate_near", "language", "pii_card"):
        assert synthetic["dropped"].get(reason, 0) > 0, reason
    assert synthetic["redacted"].get("email", 0) > 0
    assert "workers" not in summary["config"]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [(signal.SIGKILL, "out-of-memory killer: lower workers"), (signal.SIGTERM, "signal SIGTERM")],
)
def test_a_worker_that_dies_stops_the_build_saying_why(sent: int, expected: str) -> None:
    from monGARS.mlops.datasets import parallel
    from monGARS.mlops.datasets.cleaning import CleaningRules

    plan = parallel.WorkPlan(
        rules=CleaningRules(), seed=0, near=True, near_threshold=0.8, num_perm=128, shingle_size=3
    )
    runner = parallel.BatchRunner(plan, workers=2)
    rows = synthetic_french_rows(32, 3)

    def batches() -> Any:
        for index in range(40):
            if index == 4:  # the pool is running by now: one of its workers goes
                os.kill(runner.worker_pids()[0], sent)
            yield rows, index

    try:
        with pytest.raises(MongarsError, match=expected):
            for _ in runner.map("instruction", batches()):
                pass
    finally:
        runner.close()
