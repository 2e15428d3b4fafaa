"""French question/answer records derived from mined code facts, grouped into modules.

Every answer is assembled from one fact (a signature, a docstring, an import list, call sites),
so no two facts give the same answer, and each record keeps its ``fact`` for RAFT to use as the
oracle document. Question wording varies between a few phrasings, picked by a hash of the fact so
the choice is deterministic.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from monGARS.mlops.datasets.codemine import Fact, FileFacts, TreeFacts
from monGARS.mlops.datasets.codetree import SourceFile
from monGARS.mlops.names import to_identifier

MAX_LISTED = 20  # call sites / methods listed in one answer


def module_for(source: SourceFile, rules: list[tuple[str, str]]) -> str:
    """The module a file belongs to: first matching ``glob=module`` rule, else its sub-package."""
    for pattern, module in rules:
        if fnmatch.fnmatchcase(source.display_path, pattern):
            return module
    return to_identifier(source.package_dir or source.root.name)


def _pick(options: tuple[str, ...], fact: Fact) -> str:
    digest = hashlib.sha1(json.dumps(fact, sort_keys=True).encode("utf-8")).digest()
    return options[digest[0] % len(options)]


def _code_list(items: list[str]) -> str:
    shown = [f"`{item}`" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"et {len(items) - MAX_LISTED} autres")
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " et " + shown[-1]


def _parameters_sentence(params: list[dict[str, str]], subject: str) -> str:
    if not params:
        return f"{subject} ne prend aucun paramètre."
    described = []
    for param in params:
        detail = []
        if param["annotation"]:
            detail.append(f"de type `{param['annotation']}`")
        if param["default"]:
            detail.append(f"valeur par défaut `{param['default']}`")
        suffix = f" ({', '.join(detail)})" if detail else ""
        described.append(f"`{param['name']}`{suffix}")
    noun = "paramètre" if len(params) == 1 else "paramètres"
    return f"{subject} prend {len(params)} {noun} : " + " ; ".join(described) + "."


def _returns_sentence(returns: str, subject: str) -> str:
    if not returns:
        return f"{subject} n'annote pas son type de retour."
    if returns == "None":
        return f"{subject} ne renvoie rien (`None`) : elle agit par effet de bord."
    return f"{subject} renvoie une valeur de type `{returns}`."


def _function_records(fact: Fact, calls: list[Fact]) -> Iterator[tuple[str, str]]:
    name, module = fact["qualname"], fact["module"]
    noun = "la méthode" if fact["kind"] == "method" else "la fonction"
    question = _pick(
        (
            f"Que fait {noun} `{name}` du module `{module}` ?",
            f"À quoi sert {noun} `{name}` dans `{module}` ?",
            f"Explique le rôle de {noun} `{name}` ({module}).",
        ),
        fact,
    )
    parts = [
        f"{noun.capitalize()} `{name}` est définie dans `{fact['path']}` (ligne {fact['line']}) "
        f"avec la signature `{fact['signature']}`."
    ]
    if fact["docstring"]:
        parts.append(f"Sa documentation dit : « {fact['docstring']} »")
    else:
        parts.append("Elle n'a pas de docstring : sa signature est sa seule documentation.")
    parts.append(_returns_sentence(fact["returns"], "Elle"))
    own_calls = [call["call"] for call in calls if call["function"] == name]
    if own_calls:
        unique = sorted(set(own_calls))
        parts.append(f"Elle appelle directement {_code_list(unique)}.")
    yield question, " ".join(parts)
    if fact["parameters"]:
        question = _pick(
            (
                f"Quels paramètres attend `{name}` et que renvoie-t-elle ?",
                f"Comment appeler `{name}` du module `{module}` ?",
            ),
            fact,
        )
        answer = " ".join(
            [
                _parameters_sentence(fact["parameters"], f"`{name}`"),
                _returns_sentence(fact["returns"], "Elle"),
            ]
        )
        yield question, answer


def _class_record(fact: Fact) -> tuple[str, str]:
    name, module = fact["name"], fact["module"]
    question = _pick(
        (
            f"Que propose la classe `{name}` du module `{module}` ?",
            f"À quoi sert la classe `{name}` ({module}) ?",
            f"Décris la classe `{name}` définie dans `{module}`.",
        ),
        fact,
    )
    parts = [f"La classe `{name}` est définie dans `{fact['path']}` (ligne {fact['line']})"]
    if fact["bases"]:
        parts[0] += f" et hérite de {_code_list(fact['bases'])}"
    parts[0] += "."
    if fact["docstring"]:
        parts.append(f"Sa documentation dit : « {fact['docstring']} »")
    if fact["fields"]:
        parts.append(f"Ses champs : {_code_list(fact['fields'])}.")
    if fact["methods"]:
        parts.append(f"Ses méthodes publiques : {_code_list(fact['methods'])}.")
    elif not fact["fields"]:
        parts.append("Elle ne déclare ni champ annoté ni méthode publique.")
    return question, " ".join(parts)


def _imports_record(fact: Fact) -> tuple[str, str]:
    module = fact["module"]
    question = _pick(
        (
            f"De quels modules dépend `{module}` ?",
            f"Quelles dépendances importe le module `{module}` ?",
            f"Qu'importe `{module}` ?",
        ),
        fact,
    )
    parts = []
    if fact["internal"]:
        count = len(fact["internal"])
        noun = "module du projet" if count == 1 else "modules du projet"
        parts.append(f"`{module}` importe {count} {noun} : {_code_list(fact['internal'])}.")
    else:
        parts.append(f"`{module}` n'importe aucun autre module du projet.")
    if fact["external"]:
        parts.append(f"Bibliothèques externes : {_code_list(fact['external'])}.")
    return question, " ".join(parts)


def _imported_by_record(fact: Fact) -> tuple[str, str]:
    module = fact["module"]
    question = _pick(
        (
            f"Quels modules du projet utilisent `{module}` ?",
            f"Qui importe le module `{module}` ?",
        ),
        fact,
    )
    count = len(fact["importers"])
    noun = "module" if count == 1 else "modules"
    return question, f"`{module}` est importé par {count} {noun} : {_code_list(fact['importers'])}."


def _framework_record(fact: Fact) -> tuple[str, str]:
    module, framework = fact["module"], fact["framework"]
    question = _pick(
        (
            f"Où et comment `{module}` utilise-t-il {framework} ?",
            f"Quels appels à {framework} trouve-t-on dans `{module}` ?",
        ),
        fact,
    )
    calls = fact["calls"]
    noun = "appel" if len(calls) == 1 else "appels"
    lines = [f"`{module}` ({fact['path']}) fait {len(calls)} {noun} à {framework} :"]
    for call in calls[:MAX_LISTED]:
        where = (
            "au niveau du module"
            if call["function"] == "<module>"
            else f"dans `{call['function']}`"
        )
        lines.append(f"- {where}, ligne {call['line']} : `{call['call']}(...)`")
    if len(calls) > MAX_LISTED:
        lines.append(f"- et {len(calls) - MAX_LISTED} autres appels.")
    return question, "\n".join(lines)


def fact_records(file_facts: FileFacts, extra: list[Fact]) -> Iterator[tuple[Fact, str, str]]:
    """(fact, question, answer) for every fact of one file, in a stable order."""
    for fact in file_facts.functions:
        for question, answer in _function_records(fact, file_facts.calls):
            yield fact, question, answer
    for fact in file_facts.classes:
        yield fact, *_class_record(fact)
    builders = {
        "imports": _imports_record,
        "imported_by": _imported_by_record,
        "framework_usage": _framework_record,
    }
    for fact in extra:
        yield fact, *builders[fact["type"]](fact)


def module_records(tree: TreeFacts, rules: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Module chat records ``{"id", "module", "source", "messages", "fact"}`` for a whole tree."""
    extras: dict[str, list[Fact]] = {}
    for file_facts, fact in tree.module_facts():
        extras.setdefault(file_facts.source.display_path, []).append(fact)
    for file_facts in tree.files:
        module = module_for(file_facts.source, rules)
        source = f"code:{file_facts.source.root.name}"
        for fact, question, answer in fact_records(
            file_facts, extras.get(file_facts.source.display_path, [])
        ):
            key = json.dumps([question, fact], sort_keys=True, ensure_ascii=False)
            yield {
                "id": f"{module}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}",
                "module": module,
                "source": source,
                "messages": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ],
                "fact": fact,
            }
