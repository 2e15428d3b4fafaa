"""Bad hyperparameters and inputs are refused with one clear line before any model is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sft_data import MODULE, make_datasets

from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.training.common.backends import Environment
from monGARS.mlops.training.sft import cli as sft_cli
from monGARS.mlops.training.sft import train as sft
from monGARS.mlops.training.sft.config import TINY_SFT_OVERRIDES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory, sample_corpus_dir: Path) -> Path:
    return make_datasets(tmp_path_factory.mktemp("sft-data"), sample_corpus_dir, train=8, val=2)


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load the model for training fails the test: refusals come first."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded before the input was refused")

    monkeypatch.setattr(sft, "load_for_training", forbidden)


def _refused(
    error: type[Exception],
    values: dict[str, Any],
    base: Path,
    data: Path,
    out: Path,
    module: str = MODULE,
    env: Environment | None = None,
) -> str:
    with pytest.raises(error) as caught:
        sft.train_sft({**TINY_SFT_OVERRIDES, **values}, base, data, module, out, env=env)
    message = str(caught.value)
    assert "\n" not in message
    assert not out.exists()
    return message


def test_bad_hyperparameters_all_reported(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    message = _refused(
        ConfigError,
        {"lora_r": 0, "learning_rate": -2e-4, "max_seq_length": 4},
        tiny_model_dir,
        datasets_dir,
        tmp_path / "out",
    )
    assert message.startswith("invalid sft config (3 problems): ")
    assert "lora_r: must be >= 1 (got 0)" in message
    assert "learning_rate: must be > 0 (got -0.0002)" in message
    assert "max_seq_length: must be >= 16" in message


def test_unknown_target_module_lists_linear_modules(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    message = _refused(
        MongarsError,
        {"target_modules": ["q_proj", "query_key_value"]},
        tiny_model_dir,
        datasets_dir,
        tmp_path / "out",
    )
    assert message == (
        "target_modules: query_key_value not found in this llama model; its linear modules are "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"
    )


def test_missing_or_broken_base_model(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    message = _refused(MongarsError, {}, tmp_path / "nowhere", datasets_dir, tmp_path / "out")
    assert message.startswith("base_model: ") and "does not exist" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _refused(MongarsError, {}, empty, datasets_dir, tmp_path / "out")
    assert "has no config.json" in message


def test_unsloth_without_cuda(tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path) -> None:
    cpu = Environment(cuda=False, unsloth=False, unsloth_error="no CUDA device")
    message = _refused(
        MongarsError,
        {"backend": "unsloth"},
        tiny_model_dir,
        datasets_dir,
        tmp_path / "out",
        env=cpu,
    )
    assert message.startswith("backend: unsloth cannot run here (no CUDA device)")


def test_missing_module_and_bad_names(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    message = _refused(
        MongarsError, {}, tiny_model_dir, datasets_dir, tmp_path / "out", module="absent"
    )
    assert "modules in this datasets artifact: mlops" in message
    message = _refused(
        MongarsError, {}, tiny_model_dir, datasets_dir, tmp_path / "out", module="../etc"
    )
    assert message.startswith("module: '../etc' is not a safe name")
    message = _refused(MongarsError, {}, tiny_model_dir, tmp_path, tmp_path / "out")
    assert "has no modules/ folder" in message


def test_french_mix_without_corpora(
    tiny_model_dir: Path, tmp_path: Path, sample_corpus_dir: Path
) -> None:
    data = make_datasets(tmp_path / "data", sample_corpus_dir, train=4, val=1)
    for path in data.glob("corpora/*/train.jsonl"):
        path.unlink()
    message = _refused(
        MongarsError, {"french_mix_ratio": 0.3}, tiny_model_dir, data, tmp_path / "out"
    )
    assert message.startswith("french_mix_ratio: 0.3 asks for French records")


def test_sequences_too_short_for_any_answer(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    message = _refused(
        MongarsError, {"max_seq_length": 16}, tiny_model_dir, datasets_dir, tmp_path / "out"
    )
    assert message.startswith("module: no training record of mlops keeps an assistant token")


def test_cli_prints_one_error_line(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = sft_cli.main(
        [
            "--base-model", str(tiny_model_dir),
            "--datasets", str(datasets_dir),
            "--module", MODULE,
            "--out", str(tmp_path / "out"),
            "--set", "lora_r=0",
            "--set", "learning_rate=-1",
        ]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid sft config (2 problems): ")
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_base_model_without_tokenizer(
    tiny_model_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "no-tokenizer"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).symlink_to(tiny_model_dir / name)
    message = _refused(MongarsError, {}, broken, datasets_dir, tmp_path / "out")
    assert message.startswith(f"base_model: {broken} has no loadable tokenizer")
