"""A small datasets artifact in the architecture.md layout, for the sft tests."""

from __future__ import annotations

import json
from pathlib import Path

MODULE = "mlops"

_FUNCTIONS = [
    ("charger_modele", "charge le modèle et le tokenizer depuis un dossier"),
    ("ecrire_json", "écrit un fichier JSON de façon atomique"),
    ("entrainer", "entraîne un adaptateur LoRA sur les exemples du module"),
    ("evaluer", "calcule la perte sur la partie validation"),
    ("exporter", "convertit le modèle fusionné en fichier GGUF"),
    ("nettoyer", "supprime les doublons et les textes trop courts"),
    ("quantifier", "réduit la précision des poids à quatre bits"),
    ("verifier", "charge le fichier avec llama.cpp et compare les logits"),
]
_QUESTIONS = [
    "Que fait la fonction {name} ?",
    "À quoi sert {name} dans le module ?",
    "Explique le rôle de {name}.",
    "Décris la fonction {name} en une phrase.",
]


def module_records(count: int, offset: int = 0) -> list[dict]:
    records = []
    for index in range(offset, offset + count):
        name, role = _FUNCTIONS[index % len(_FUNCTIONS)]
        question = _QUESTIONS[(index // len(_FUNCTIONS)) % len(_QUESTIONS)]
        messages = [
            {"role": "system", "content": "Tu es monGARS, un assistant qui connaît le code."},
            {"role": "user", "content": question.format(name=name)},
            {"role": "assistant", "content": f"La fonction {name} {role}."},
        ]
        if index % 3 == 0:  # some two-turn threads
            messages += [
                {"role": "user", "content": "Et ensuite ?"},
                {"role": "assistant", "content": f"Elle renvoie le résultat de {name}."},
            ]
        records.append(
            {
                "id": f"{MODULE}-{index:04d}",
                "module": MODULE,
                "source": "tests",
                "messages": messages,
                "fact": {"name": name, "doc": role},
            }
        )
    return records


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def make_datasets(root: Path, sample_corpus_dir: Path, train: int = 24, val: int = 8) -> Path:
    """Write modules/<MODULE>/{train,val}.jsonl, corpora/<kind>/{train,val}.jsonl, modules.json."""
    _write(root / "modules" / MODULE / "train.jsonl", module_records(train))
    _write(root / "modules" / MODULE / "val.jsonl", module_records(val, offset=train))
    for kind in ("instruction", "reasoning", "conversation", "retrieval"):
        lines = (sample_corpus_dir / f"{kind}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [{"source": "sample", **json.loads(line)} for line in lines if line.strip()]
        _write(root / "corpora" / kind / "train.jsonl", records[:-1])
        _write(root / "corpora" / kind / "val.jsonl", records[-1:])
    (root / "modules.json").write_text(json.dumps([MODULE]), encoding="utf-8")
    return root
