"""On the tiny default, the retrieval evaluation scores only queries and passages that no
llm2vec phase trains on: not as MNTP/SimCSE text, not as a supervised pair.

"Tiny default" = the shipped French sample corpus through build_datasets with the tiny preset, as
``make run`` builds it. Whether the trained encoder then beats the untrained one is measured, not
asserted: on the tiny model it depends on the start model and the seed (docs/llm2vec.md,
"Figures").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monGARS.mlops.training.llm2vec.config import TINY_LLM2VEC_OVERRIDES
from monGARS.mlops.training.llm2vec.data import load_retrieval_eval, load_training_texts
from monGARS.mlops.training.llm2vec.supervised import load_contrastive_records
from monGARS.mlops.training.llm2vec.upstream import load_llm2vec_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from monGARS.mlops.datasets.build import build_datasets
    from monGARS.mlops.datasets.config import load_datasets_config
    from monGARS.mlops.stages import _tiny_preset

    out = tmp_path_factory.mktemp("tiny-default") / "datasets"
    build_datasets(
        load_datasets_config({"progress": False, **_tiny_preset()["datasets_config"]}), out
    )
    return out


def test_held_out_queries_are_never_trained_on(datasets: Path) -> None:
    config = load_llm2vec_config(TINY_LLM2VEC_OVERRIDES)
    eval_set = load_retrieval_eval(datasets, config.min_eval_queries)
    # The shipped corpus holds out enough val queries: no train record is borrowed.
    assert eval_set.split == "val" and len(eval_set.queries) >= 15
    scored = {*eval_set.queries, *eval_set.passages}
    pairs, excluded = load_contrastive_records(datasets, exclude=scored)
    # Enough pairs for the auto mode to pick the supervised phase.
    assert config.contrastive_phases(len(pairs)) == ["supervised"] and len(pairs) >= 80
    trained = {p.query for p in pairs} | {t for p in pairs for t in (*p.positives, *p.negatives)}
    assert not trained & scored and excluded == 0
    modules = sorted(p.name for p in (datasets / "modules").iterdir() if p.is_dir())
    for module in modules:
        texts = load_training_texts(
            datasets, module, list(config.text_sources), seed=0, exclude=scored
        )
        assert texts.texts and not set(texts.texts) & scored
