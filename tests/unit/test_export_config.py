"""Export config, method names, export_cmd splitting and architecture/tokenizer refusals (fast)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from monGARS.mlops.configs import load_config
from monGARS.mlops.errors import ConfigError, MongarsError
from monGARS.mlops.export.config import QUANT_FTYPES, VALID_METHODS, ExportConfig
from monGARS.mlops.export.external import build_export_args, run_export_cmd
from monGARS.mlops.export.hf_spec import read_model_spec
from monGARS.mlops.export.tokenizer_meta import detect_bpe_pre


def test_defaults_are_valid_and_write_q8_0_and_q4_k_m() -> None:
    config = load_config(ExportConfig, {})
    assert config.effective_quant_types() == ["q8_0", "q4_k_m"]
    assert config.logit_bounds("f16")[1] < config.logit_bounds("q8_0")[1]
    assert config.logit_bounds("q8_0")[1] < config.logit_bounds("q4_k_m")[1]


# Worst figures measured per tier (ExportConfig's comment, docs/export.md): (cosine, rel diff).
MEASURED = {
    "f16": (0.9999994, 8.2e-4),
    "q8_0": (0.99764, 0.020),
    "kquant": (0.943, 0.235),
    "lowbit": (0.71, 0.59),
}
TIERS = {"f16": "f16", "q8_0": "q8_0", "q6_k": "kquant", "q4_k_m": "kquant", "q4_0": "kquant"}
TIERS |= {"q3_k_m": "lowbit", "q2_k": "lowbit"}


def _passes(bounds: tuple[float, float], figures: tuple[float, float]) -> bool:
    return figures[0] >= bounds[0] and figures[1] <= bounds[1]


@pytest.mark.parametrize(("quant", "tier"), sorted(TIERS.items()))
def test_default_bounds_pass_their_tier_and_refuse_the_next_worse_one(
    quant: str, tier: str
) -> None:
    """Each default bound accepts its tier's measured worst file and refuses a file that behaves
    like the next coarser tier: an f16 file that is really a 4-bit one fails verification."""
    bounds = ExportConfig().logit_bounds(quant)
    assert _passes(bounds, MEASURED[tier]), f"{quant}: bound {bounds} refuses its measured figures"
    order = list(MEASURED)
    worse = order[order.index(tier) + 1 :]
    for other in worse:
        assert not _passes(bounds, MEASURED[other]), (
            f"{quant}: bound {bounds} accepts a file as bad as {other} {MEASURED[other]}"
        )
    assert not _passes(bounds, (0.2, 2.0))  # noise


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("gguf", ["q8_0", "q4_k_m"]),
        ("Q5_K_M", ["q8_0", "q4_k_m", "q5_k_m"]),
        ("merged_16bit", ["q8_0", "q4_k_m"]),
        ("fast_quantized", ["q8_0", "q4_k_m"]),
        ("q6_k", ["q8_0", "q4_k_m", "q6_k"]),
    ],
)
def test_runbook_export_methods_map_to_llama_cpp_types(method: str, expected: list[str]) -> None:
    assert load_config(ExportConfig, {"export_method": method}).effective_quant_types() == expected


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(ExportConfig, {"export_method": "q4_k_mm"})
    message = str(caught.value)
    assert "export_method" in message and "'q4_k_mm'" in message
    for valid in ("gguf", "q4_k_m", "q8_0", "merged_16bit"):
        assert valid in message
    assert "\n" not in message


def test_unknown_quant_type_and_bad_bounds_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            ExportConfig,
            {"quant_types": "q8_0,iq2_xxs", "f16_min_cosine": 2.0, "q8_max_rel_diff": 0},
        )
    assert caught.value.problems and len(caught.value.problems) == 3
    assert any("iq2_xxs" in problem for problem in caught.value.problems)


def test_every_quant_type_asks_llama_cpp_for_the_file_type_it_is_named_after() -> None:
    """The ftype passed to llama_model_quantize is what lands in ``general.file_type``; gguf's
    own enum (written independently of llama_cpp's constants) says which number each name is."""
    import gguf
    import llama_cpp

    for name, constant in QUANT_FTYPES.items():
        expected = gguf.LlamaFileType[f"MOSTLY_{name.upper()}"]
        assert getattr(llama_cpp, constant) == expected.value, (
            f"quant {name!r} asks llama.cpp for ftype {getattr(llama_cpp, constant)} "
            f"({constant}), a {name.upper()} file is general.file_type {expected.value}"
        )
    assert set(QUANT_FTYPES) <= set(VALID_METHODS)


def test_export_cmd_needs_both_placeholders() -> None:
    with pytest.raises(ConfigError, match=r"export_cmd: must contain \{gguf_path\}"):
        load_config(ExportConfig, {"export_cmd": "convert {model_dir}"})
    with pytest.raises(ConfigError, match="export_cmd: cannot be split"):
        load_config(ExportConfig, {"export_cmd": "convert '{model_dir} {gguf_path}"})


def test_export_cmd_is_an_argument_list_never_a_shell(tmp_path: Path) -> None:
    nasty = tmp_path / "a b; touch pwned"
    args = build_export_args("conv --in {model_dir} --out={gguf_path}", nasty, nasty / "x.gguf")
    assert args == ["conv", "--in", str(nasty), f"--out={nasty / 'x.gguf'}"]

    script = tmp_path / "echo_args.py"
    script.write_text(
        "import json, pathlib, sys\n"
        "pathlib.Path(sys.argv[2]).write_text(json.dumps(sys.argv[1:]))\n",
        encoding="utf-8",
    )
    out = tmp_path / "out; rm -rf x.gguf"
    ran = run_export_cmd(f"{sys.executable} {script} {{model_dir}} {{gguf_path}}", nasty, out)
    assert ran[-2:] == [str(nasty), str(out)]
    assert json.loads(out.read_text(encoding="utf-8")) == [str(nasty), str(out)]
    assert not (tmp_path / "pwned").exists()


def test_failing_export_cmd_is_a_one_line_error(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('converter says no', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(MongarsError, match=r"exited with 3 \(converter says no\)"):
        run_export_cmd(
            f"{sys.executable} {script} {{model_dir}} {{gguf_path}}", tmp_path, tmp_path / "o"
        )
    with pytest.raises(MongarsError, match="not found"):
        run_export_cmd("no-such-converter-xyz {model_dir} {gguf_path}", tmp_path, tmp_path / "o")


@pytest.mark.parametrize("model_type", ["gpt2", "bert", "phi3"])
def test_unsupported_architecture_points_at_export_cmd(tmp_path: Path, model_type: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    with pytest.raises(MongarsError) as caught:
        read_model_spec(tmp_path)
    message = str(caught.value)
    assert repr(model_type) in message and "export_cmd" in message and "--export-cmd" in message
    assert "llama" in message and "qwen2" in message


def test_unsupported_rope_scaling_is_refused(tmp_path: Path) -> None:
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 1,
        "intermediate_size": 128,
        "vocab_size": 10,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0},
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(MongarsError, match=r"rope scaling 'yarn'.*export_cmd"):
        read_model_spec(tmp_path)


def _split(regex: str) -> dict:
    return {
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": regex},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        }
    }


def test_pre_tokenizer_is_detected_from_tokenizer_json_structure() -> None:
    from monGARS.mlops.export.tokenizer_meta import KNOWN_SPLIT_REGEXES

    byte_level = {
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    }
    assert detect_bpe_pre(byte_level) == "gpt-2"
    by_name = {name: regex for regex, name in KNOWN_SPLIT_REGEXES.items()}
    assert detect_bpe_pre(_split(by_name["llama-bpe"])) == "llama-bpe"
    assert detect_bpe_pre(_split(by_name["qwen2"])) == "qwen2"


@pytest.mark.parametrize(
    "data",
    [
        _split(r"\p{N}{1,5}|\s+"),
        {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}},
        {"pre_tokenizer": {"type": "Whitespace"}},
    ],
)
def test_unknown_pre_tokenizer_is_refused_clearly(data: dict) -> None:
    with pytest.raises(MongarsError, match="export_cmd"):
        detect_bpe_pre(data)
