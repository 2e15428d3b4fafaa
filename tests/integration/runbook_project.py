"""A small French project as the runbook's user has it: a source tree to mine (``--repo-root
.``), upstream-style llm2vec JSON configs, and the runbook's script next to them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# Upstream llm2vec train_configs/{mntp,simcse}/*.json, as their users have them (smaller values).
MNTP = {
    "model_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2",
    "dataset_name": "wikitext",
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "do_train": True,
    "max_seq_length": 128,
    "mask_token_type": "blank",
    "data_collator_type": "all_mask",
    "mlm_probability": 0.35,
    "overwrite_output_dir": True,
    "output_dir": "output/mntp/Mistral-7B-Instruct-v0.2",
    "save_steps": 200,
    "stop_after_n_steps": 10,
    "lora_r": 8,
    "torch_dtype": "float32",
}
SIMCSE = {
    "model_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2",
    "peft_model_name_or_path": "output/mntp/Mistral-7B-Instruct-v0.2",
    "simcse_dropout": 0.25,
    "pooling_mode": "mean",
    "dataset_name": "Wiki1M",
    "learning_rate": 3e-4,
    "loss_scale": 20,
    "per_device_train_batch_size": 16,
    "do_train": True,
    "max_seq_length": 64,
    "output_dir": "output/mntp-simcse/Mistral-7B-Instruct-v0.2",
    "stop_after_n_steps": 10,
    "lora_r": 8,
    "seed": 42,
}
SOURCES = {
    "boutique/__init__.py": '"""Boutique : un petit magasin en ligne."""\n',
    "boutique/api/__init__.py": "",
    "boutique/api/panier.py": '''"""Gestion du panier d'achat de la boutique."""


def total_panier(panier: dict) -> float:
    """Renvoie le montant total du panier, remises comprises."""
    return sum(a["prix"] * a["quantite"] for a in panier.get("articles", []))


def calculer_remise(montant: float, code: str) -> float:
    """Applique le code promotionnel au montant et renvoie la remise accordée."""
    return montant * 0.1 if code == "BIENVENUE" else 0.0


class Panier:
    """Un panier d'achat associé à un client de la boutique."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.articles: list[dict] = []

    def ajouter(self, nom: str, prix: float, quantite: int = 1) -> None:
        """Ajoute un article au panier."""
        self.articles.append({"nom": nom, "prix": prix, "quantite": quantite})

    def vider(self) -> None:
        """Retire tous les articles du panier."""
        self.articles.clear()
''',
    "boutique/training/__init__.py": "",
    "boutique/training/entrainement.py": '''"""Entraînement du modèle de recommandation."""

from boutique.api.panier import total_panier


def preparer_lots(exemples: list[dict], taille: int = 8) -> list[list[dict]]:
    """Découpe les exemples en lots de taille fixe pour l'entraînement."""
    return [exemples[i : i + taille] for i in range(0, len(exemples), taille)]


def calculer_perte(predictions: list[float], cibles: list[float]) -> float:
    """Calcule l'erreur quadratique moyenne entre les prédictions et les cibles."""
    return sum((p - c) ** 2 for p, c in zip(predictions, cibles)) / max(len(cibles), 1)


class EntraineurRecommandation:
    """Entraîne le modèle qui recommande des articles aux clients."""

    def __init__(self, taux_apprentissage: float = 0.01) -> None:
        self.taux_apprentissage = taux_apprentissage

    def etape(self, lot: list[dict]) -> float:
        """Effectue une étape d'entraînement sur un lot et renvoie la perte."""
        return calculer_perte([total_panier(x) for x in lot], [0.0 for _ in lot])
''',
}


def write_project(
    project: Path, mntp: dict[str, Any] = MNTP, simcse: dict[str, Any] = SIMCSE
) -> Path:
    """The project folder: its sources, ``mntp.json``, ``simcse.json`` and the runbook's script
    (a link: the runbook runs it from the folder it sits in)."""
    for name, text in SOURCES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    (project / "mntp.json").write_text(json.dumps(mntp, indent=4))
    (project / "simcse.json").write_text(json.dumps(simcse, indent=4))
    (project / "mongars_multistage_pipeline.py").symlink_to(REPO / "mongars_multistage_pipeline.py")
    return project


def run_runbook_line(
    project: Path, line: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run one of the runbook's ``python mongars_multistage_pipeline.py ...`` lines in ``project``,
    as printed (``python`` is this interpreter)."""
    argv = shlex.split(line)
    assert argv[0] == "python", line
    environment = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1800,
    )
