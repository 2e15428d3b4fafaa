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


DOCS = Path(__file__).resolve().parents[2] / "docs" / "export.md"


def _docs_rows(first_cell: str) -> dict[str, list[str]]:
    """Rows of docs/export.md's tables keyed by their first cell (backticks dropped)."""
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] != first_cell:
            rows[cells[0]] = cells[1:]
    return rows


def _bounds_table() -> dict[str, tuple[float, float, float, float]]:
    """type -> (worst cosine measured, worst rel measured, bound cosine, bound rel)."""
    table = {}
    for quant, cells in _docs_rows("type").items():
        if quant in ("f16", *QUANT_FTYPES) and len(cells) == 4:
            worst_rel = max(float(x) for x in cells[0].split("/"))
            table[quant] = (float(cells[1].split()[0]), worst_rel, float(cells[2]), float(cells[3]))
    return table


def test_documented_bounds_are_the_defaults() -> None:
    table = _bounds_table()
    assert set(table) >= {"f16", "q8_0", "q4_k_m", "q2_k"}, sorted(table)
    for quant, (_, _, cosine, rel) in table.items():
        assert ExportConfig().logit_bounds(quant) == (cosine, rel), f"docs/export.md {quant}"


def test_documented_config_defaults_are_the_code_defaults() -> None:
    rows = _docs_rows("field")
    config = ExportConfig()
    assert rows["verify"][0] == str(config.verify).lower() == "true"
    assert rows["quantize_encoder"][0] == str(config.quantize_encoder).lower() == "true"
    assert int(rows["generate_tokens"][0]) == config.generate_tokens
    assert int(rows["n_ctx"][0]) == config.n_ctx
    assert json.loads(rows["quant_types"][0]) == config.quant_types
    assert json.loads(rows["export_method"][0]) == config.export_method


def _passes(bounds: tuple[float, float], cosine: float, rel: float) -> bool:
    return cosine >= bounds[0] and rel <= bounds[1]


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q6_k", "q4_k_m", "q4_0", "q3_k_m", "q2_k"])
def test_each_bound_passes_its_measured_worst_and_refuses_noise(quant: str) -> None:
    """Each default bound accepts its type's worst measured figures (docs/export.md), and each
    of its two figures alone refuses a file whose logits are noise."""
    cosine, rel, _, _ = _bounds_table()[quant]
    bounds = ExportConfig().logit_bounds(quant)
    assert _passes(bounds, cosine, rel), f"{quant}: bound {bounds} refuses its measured figures"
    assert not _passes(bounds, 0.2, rel), f"{quant}: cosine bound {bounds[0]} accepts noise"
    assert not _passes(bounds, cosine, 2.0), f"{quant}: rel bound {bounds[1]} accepts noise"


def test_tiers_are_nested_finer_types_get_tighter_bounds() -> None:
    """An f16 file that behaves like a q8_0 one fails, a q8_0 like a k-quant fails, and so on."""
    config = ExportConfig()
    tiers = [config.logit_bounds(quant) for quant in ("f16", "q8_0", "q4_k_m", "q2_k")]
    cosines, rels = [b[0] for b in tiers], [b[1] for b in tiers]
    assert cosines == sorted(cosines, reverse=True) and len(set(cosines)) == 4, cosines
    assert rels == sorted(rels) and len(set(rels)) == 4, rels


def test_encoder_bound_tells_a_causal_encoder_from_a_faithful_one() -> None:
    """docs/export.md: f16 0.9999997, q8_0 0.99990, q4_k_m 0.980; the same file against the
    causal model 0.56. Quantised encoders get min(encoder bound, the tier's)."""
    config = ExportConfig()
    assert 0.56 < config.encoder_min_cosine <= 0.99990
    assert min(config.encoder_min_cosine, config.logit_bounds("q4_k_m")[0]) <= 0.980


def test_config_is_immutable() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        ExportConfig().verify = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"f16_min_cosine": 1.0001}, "f16_min_cosine"),
        ({"q8_min_cosine": -1.0001}, "q8_min_cosine"),
        ({"encoder_min_cosine": -1.5}, "encoder_min_cosine"),
        ({"generate_tokens": 0}, "generate_tokens"),
        ({"n_ctx": 63}, "n_ctx"),
        ({"kquant_max_rel_diff": 0.0}, "kquant_max_rel_diff"),
    ],
)
def test_values_just_outside_the_ranges_are_refused(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(ExportConfig, values)


def test_values_at_the_edges_of_the_ranges_are_accepted() -> None:
    for values in (
        {"f16_min_cosine": 1.0, "q8_min_cosine": -1.0, "kquant_min_cosine": -0.5},
        {"lowbit_min_cosine": 0.5, "generate_tokens": 1, "n_ctx": 64},
    ):
        load_config(ExportConfig, values)


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
