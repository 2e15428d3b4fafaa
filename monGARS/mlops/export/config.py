"""The export stage's config: which GGUF types to write and how strictly to verify them.

Quantisation names are llama.cpp's (``q8_0``, ``q4_k_m``, ...). The original runbook's
``--export-method`` took Unsloth ``save_pretrained_gguf`` names; they are accepted here and mapped
onto the same llama.cpp types, so an old command line keeps working.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import ClassVar

from monGARS.mlops.configs import Checks

# llama.cpp quantisation names -> the ``LLAMA_FTYPE_*`` constant llama_model_quantize takes.
# IQ types are left out on purpose: they need an importance matrix this stage does not compute.
QUANT_FTYPES: dict[str, str] = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q3_k_l": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q3_k_s": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
}

# ``--export-method`` values of the original runbook (Unsloth's quantization_method names) and
# their meaning here. ``f16`` is always written, so the 16-bit methods add nothing.
METHOD_ALIASES: dict[str, str | None] = {
    "gguf": None,
    "f16": None,
    "merged_16bit": None,
    "not_quantized": None,
    "fast_quantized": "q8_0",
    "quantized": "q4_k_m",
    "q4_k": "q4_k_m",
    "q5_k": "q5_k_m",
}

VALID_METHODS: tuple[str, ...] = tuple(sorted({*METHOD_ALIASES, *QUANT_FTYPES}))

# Placeholders an ``export_cmd`` template may use.
EXPORT_CMD_FIELDS = ("model_dir", "gguf_path")

# Texts the verification tokenises and runs through both runtimes: French prose with accents and
# apostrophes, numbers, and Python code with indentation, so the pre-tokenizer's regex, byte
# handling and whitespace runs are all exercised.
SAMPLE_TEXTS: tuple[str, ...] = (
    "Bonjour ! Je m'appelle monGARS et j'aide à écrire du code Python.",
    "L'élève a-t-il déjà étudié la dérivée de f(x) = 3x² + 2x − 7 ? Réponse : oui, en 2024.",
    'def moyenne(valeurs: list[float]) -> float:\n    """Retourne la moyenne."""\n'
    "    return sum(valeurs) / len(valeurs)\n",
    "Où se trouve le fichier « config.yaml » ?  Il est dans ./conf/  (voir README).",
    'for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(f"{i} est pair")  # commentaire\n',
)
# Queries the encoder verification embeds after the encoder's query instruction (HF and llama.cpp
# must agree on the instruction's tokens, attended to and left out of the pooled span).
SAMPLE_QUERIES: tuple[str, ...] = (
    "Comment calculer la moyenne d'une liste en Python ?",
    "Où est le fichier de configuration ?",
)


def normalise_method(value: str) -> str:
    """Lower-case and trim a method or quant name, as users type them in any case."""
    return value.strip().lower()


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What the export stage writes and how it proves the files behave like the HF models."""

    CONFIG_NAME: ClassVar[str] = "export"

    # Quantised types written next to the always-present f16 (llama.cpp names). Default from the
    # issue: q8_0 (near-lossless) and q4_k_m (the usual size/quality trade-off).
    quant_types: list[str] = dataclasses.field(default_factory=lambda: ["q8_0", "q4_k_m"])
    # "gguf" (f16 + quant_types), or a runbook --export-method value, which adds its type.
    export_method: str = "gguf"
    # For architectures the writer does not cover: an argument template with {model_dir} and
    # {gguf_path}, run without a shell; it must write an f16 GGUF at {gguf_path}.
    export_cmd: str = ""
    # Verify every written file with llama.cpp; turning it off is for debugging only.
    verify: bool = True
    # Quantise the encoder too (its f16 file is always written).
    quantize_encoder: bool = True
    # Parity bounds. Logit bounds compare llama.cpp next-token logits with the merged HF model's
    # at every position of the sample texts; "rel" is max |diff| / max |HF logit|, "cosine" the
    # worst per-position cosine. Measured on the tiny random model, with and without a LoRA merged
    # (docs/export.md): f16 rel <= 8.2e-4, cos >= 0.9999994; q8_0 rel <= 0.020, cos >= 0.99764
    # (one position of a RAFT-trained tiny module, whose logits are nearly flat);
    # q6_k..q4_0 rel <= 0.235, cos >= 0.943; q3_k_m/q2_k rel <= 0.59, cos >= 0.71.
    # Each bound leaves >= 2.5x margin on rel and on (1 - cos).
    f16_min_cosine: float = 0.9999
    f16_max_rel_diff: float = 0.005
    q8_min_cosine: float = 0.994
    q8_max_rel_diff: float = 0.08
    kquant_min_cosine: float = 0.85
    kquant_max_rel_diff: float = 0.6
    lowbit_min_cosine: float = 0.3
    lowbit_max_rel_diff: float = 1.5
    # Encoder: cosine between llama.cpp's pooled embedding and the HF encoder's, per sample text.
    encoder_min_cosine: float = 0.99
    # Tokens the chat model must generate in the smoke test.
    generate_tokens: int = 8
    # Context length for the Modelfile's num_ctx (capped at the model's own context length).
    n_ctx: int = 2048

    def problems(self) -> list[str]:
        checks = Checks()
        method = normalise_method(self.export_method)
        checks.require(
            method in VALID_METHODS,
            "export_method",
            f"unknown method {self.export_method!r}; valid methods are {', '.join(VALID_METHODS)}",
        )
        for name in self.quant_types:
            checks.require(
                normalise_method(name) in QUANT_FTYPES,
                "quant_types",
                f"unknown quantisation {name!r}; valid types are {', '.join(sorted(QUANT_FTYPES))}"
                " (f16 is always written)",
            )
        if self.export_cmd.strip():
            try:
                parts = shlex.split(self.export_cmd)
            except ValueError as error:
                parts = []
                checks.require(False, "export_cmd", f"cannot be split into arguments ({error})")
            if parts:
                joined = " ".join(parts)
                for field in EXPORT_CMD_FIELDS:
                    checks.require(
                        "{" + field + "}" in joined,
                        "export_cmd",
                        f"must contain {{{field}}} so the command knows where to read and write",
                    )
        for field in (
            "f16_min_cosine",
            "q8_min_cosine",
            "kquant_min_cosine",
            "lowbit_min_cosine",
            "encoder_min_cosine",
        ):
            value = getattr(self, field)
            checks.require(
                -1 <= value <= 1, field, f"must be a cosine between -1 and 1 (got {value})"
            )
        for field in (
            "f16_max_rel_diff",
            "q8_max_rel_diff",
            "kquant_max_rel_diff",
            "lowbit_max_rel_diff",
        ):
            checks.positive(field, getattr(self, field))
        checks.at_least("generate_tokens", self.generate_tokens, 1)
        checks.at_least("n_ctx", self.n_ctx, 64)
        return checks.found

    def effective_quant_types(self) -> list[str]:
        """The quantised types to write: quant_types plus the one export_method names, in order."""
        types: list[str] = []
        for name in self.quant_types:
            normalised = normalise_method(name)
            if normalised not in types:
                types.append(normalised)
        method = normalise_method(self.export_method)
        extra = METHOD_ALIASES.get(method, method)
        if extra is not None and extra not in types:
            types.append(extra)
        return types

    def logit_bounds(self, quant: str) -> tuple[float, float]:
        """(min cosine, max relative diff) for a file of type ``quant`` ('f16' or a quant name)."""
        if quant == "f16":
            return self.f16_min_cosine, self.f16_max_rel_diff
        if quant == "q8_0":
            return self.q8_min_cosine, self.q8_max_rel_diff
        if quant.startswith(("q3", "q2")):
            return self.lowbit_min_cosine, self.lowbit_max_rel_diff
        return self.kquant_min_cosine, self.kquant_max_rel_diff
