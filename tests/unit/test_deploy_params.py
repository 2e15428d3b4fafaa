"""Pipeline packages and run parameters: typed against the pipeline, refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monGARS.deploy.pipeline_package import (
    default_version_name,
    load_package,
    parse_param_flags,
    resolve_parameters,
)
from monGARS.mlops.errors import MongarsError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def package_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    committed = REPO / "pipelines" / "mongars.yaml"
    if committed.is_file():
        return committed
    from monGARS.deploy.pipeline_package import compile_package

    return compile_package(tmp_path_factory.mktemp("pkg") / "mongars.yaml").path


def test_package_exposes_name_parameters_images_and_defaults(package_path: Path) -> None:
    package = load_package(package_path)
    assert package.name == "mongars"
    assert package.parameters["lora_r"]["parameterType"] == "NUMBER_INTEGER"
    defaults = package.defaults()
    assert defaults["lora_r"] == 16 and isinstance(defaults["lora_r"], int)
    assert package.accelerator == ("nvidia.com/gpu", 1)
    assert package.backend_version == (2, 15)
    assert isinstance(defaults["gpu_tolerations"], list)
    assert package.images and all(":" in image for image in package.images)


def test_flags_are_typed_by_the_pipeline_and_win_over_the_file(package_path: Path) -> None:
    package = load_package(package_path)
    flags = parse_param_flags(
        [
            "raft=true",
            "lora_r=2",
            "learning_rate=1e-4",
            "epochs=3",
            'gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}',
            "run_name=2026",
            "base_model=mistralai/Mistral-7B-v0.2",
        ]
    )
    values = resolve_parameters(package, flags, {"lora_r": 4, "seed": 7})
    assert values == {
        "raft": True,
        "lora_r": 2,
        "learning_rate": 1e-4,
        "epochs": 3.0,
        "gpu_node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "run_name": "2026",  # strings stay strings
        "base_model": "mistralai/Mistral-7B-v0.2",
        "seed": 7,
    }
    assert isinstance(values["epochs"], float)


def test_unknown_and_mistyped_parameters_are_all_reported(package_path: Path) -> None:
    package = load_package(package_path)
    with pytest.raises(MongarsError) as caught:
        resolve_parameters(package, parse_param_flags(["lora_q=2", "raft=maybe", "lora_r=1.5"]))
    message = str(caught.value)
    assert "lora_q: not a parameter" in message and "did you mean lora_r?" in message
    assert "raft: expected boolean" in message
    assert "lora_r: expected number integer" in message
    assert "\n" not in message


def test_a_token_in_parameters_is_refused_without_echoing_it(package_path: Path) -> None:
    package = load_package(package_path)
    token = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
    with pytest.raises(MongarsError, match="looks like a Hugging Face token") as caught:
        resolve_parameters(package, {}, {"datasets_config": {"auth": token}})
    assert token not in str(caught.value)


@pytest.mark.parametrize("bad", ["novalue", "=5"])
def test_malformed_param_flags(bad: str) -> None:
    with pytest.raises(MongarsError, match="expected key=value"):
        parse_param_flags([bad])


def test_package_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MongarsError, match="not found"):
        load_package(tmp_path / "missing.yaml")
    not_pipeline = tmp_path / "x.yaml"
    not_pipeline.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap"}))
    with pytest.raises(MongarsError, match="not a compiled KFP pipeline"):
        load_package(not_pipeline)
    broken = tmp_path / "broken.yaml"
    broken.write_text("root: [unclosed\n")
    with pytest.raises(MongarsError, match="not readable YAML"):
        load_package(broken)


def test_version_name_follows_the_yaml_content(package_path: Path, tmp_path: Path) -> None:
    first = load_package(package_path)
    changed = tmp_path / "changed.yaml"
    changed.write_text(package_path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert default_version_name(first, "0.1.0") == default_version_name(
        load_package(package_path), "0.1.0"
    )
    assert default_version_name(first, "0.1.0") != default_version_name(
        load_package(changed), "0.1.0"
    )
    assert default_version_name(first, "0.1.0").startswith("0.1.0-")


def test_an_empty_secret_name_is_refused(package_path: Path) -> None:
    package = load_package(package_path)
    with pytest.raises(MongarsError, match="hf_token_secret: must name a Kubernetes Secret"):
        resolve_parameters(package, parse_param_flags(["hf_token_secret="]))


def test_a_package_the_backend_cannot_run_is_refused() -> None:
    stale = Path(__file__).resolve().parents[1] / "data" / "mongars-before-backend-rules.yaml"
    with pytest.raises(MongarsError, match="would fail on the KFP backend") as caught:
        load_package(stale)
    assert "\n" not in str(caught.value)
