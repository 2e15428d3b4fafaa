"""Turn a Hugging Face tokenizer folder into GGUF tokenizer metadata llama.cpp reads the same way.

Two families are covered:

* byte-level BPE (GGUF model ``gpt2``): tokens, token types, merges and the pre-tokenizer name.
  llama.cpp recognises BPE pre-tokenizers only by name, so the name is derived from the
  ``pre_tokenizer`` structure of ``tokenizer.json`` (GPT-2's ByteLevel regex, Llama 3's and
  Qwen2's Split regexes); anything else is refused rather than silently tokenised differently.
* SentencePiece-style BPE with a Metaspace (``▁``) pre-tokenizer or normaliser (GGUF model
  ``llama``): tokens, scores and token types. llama.cpp merges the adjacent pair whose joined text
  has the highest score, so each token scores minus the rank of the merge that creates it, which
  reproduces the BPE merge order.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from monGARS.mlops.errors import MongarsError

# gguf.TokenType values (kept here so this module imports without gguf).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Split regexes of known byte-level tokenizers -> llama.cpp pre-tokenizer name.
_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
KNOWN_SPLIT_REGEXES: dict[str, str] = {
    _LLAMA3_REGEX: "llama-bpe",
    _QWEN2_REGEX: "qwen2",
    _GPT2_REGEX: "gpt-2",
}

SPM_SPACE = "\u2581"


@dataclasses.dataclass
class TokenizerMeta:
    """Everything the GGUF ``tokenizer.*`` keys carry."""

    model: str  # "gpt2" or "llama"
    pre: str | None  # llama.cpp pre-tokenizer name (gpt2 model only)
    tokens: list[str]
    token_types: list[int]
    merges: list[str] | None
    scores: list[float] | None
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None
    eot_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool | None
    chat_template: str | None
    # Whether llama.cpp also matches HF on text with special tokens in it. SentencePiece
    # tokenizers that prepend "▁" only to the first fragment ("first" scheme) do not.
    special_text_parity: bool = True

    def token_strings(self, ids: list[int]) -> list[str]:
        return [self.tokens[i] for i in ids]


def _read_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise MongarsError(
            f"export: {folder} has no tokenizer.json; the GGUF writer needs a fast tokenizer "
            "(save it with tokenizer.save_pretrained) or set export_cmd (--export-cmd)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MongarsError(f"export: {path} cannot be read as JSON ({error})") from None


def _flatten(component: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """A pre-tokenizer/normaliser as a flat list of steps (``Sequence`` unwrapped)."""
    if not component:
        return []
    if component.get("type") == "Sequence":
        steps: list[dict[str, Any]] = []
        for item in component.get(key, []):
            steps.extend(_flatten(item, key))
        return steps
    return [component]


def detect_bpe_pre(data: dict[str, Any]) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE ``tokenizer.json``, or a refusal."""
    steps = _flatten(data.get("pre_tokenizer"), "pretokenizers")
    kinds = [step.get("type") for step in steps]
    normalizers = [step.get("type") for step in _flatten(data.get("normalizer"), "normalizers")]
    if any(kind not in {"NFC"} for kind in normalizers):
        raise MongarsError(
            f"export: tokenizer normaliser {normalizers} is not supported for byte-level BPE; "
            "set export_cmd (--export-cmd) to a converter that knows this tokenizer"
        )
    if kinds == ["ByteLevel"]:
        step = steps[0]
        if step.get("add_prefix_space"):
            raise MongarsError(
                "export: ByteLevel pre-tokenizer with add_prefix_space=true has no llama.cpp "
                "equivalent; set export_cmd (--export-cmd)"
            )
        if step.get("use_regex", True):
            return "gpt-2"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        split = steps[0]
        pattern = (split.get("pattern") or {}).get("Regex")
        if (
            pattern in KNOWN_SPLIT_REGEXES
            and split.get("behavior") == "Isolated"
            and not split.get("invert", False)
            and not steps[1].get("add_prefix_space", False)
        ):
            return KNOWN_SPLIT_REGEXES[pattern]
    raise MongarsError(
        f"export: unknown byte-level pre-tokenizer {kinds} in tokenizer.json; llama.cpp would "
        "tokenise it differently from Hugging Face (known: GPT-2 ByteLevel, Llama 3 and Qwen2 "
        "Split regexes); set export_cmd (--export-cmd) to a converter that knows it"
    )


def _spm_prefix(data: dict[str, Any]) -> tuple[bool, bool]:
    """(add_space_prefix, prefix applies to every fragment) for a SentencePiece-style tokenizer."""
    for step in _flatten(data.get("pre_tokenizer"), "pretokenizers"):
        if step.get("type") == "Metaspace":
            scheme = step.get("prepend_scheme")
            if scheme is None:
                scheme = "always" if step.get("add_prefix_space", True) else "never"
            return scheme != "never", scheme == "always"
    for step in _flatten(data.get("normalizer"), "normalizers"):
        if step.get("type") == "Prepend" and step.get("prepend") == SPM_SPACE:
            return True, True  # the normaliser runs on every fragment between special tokens
    return False, True


def _is_spm_style(data: dict[str, Any]) -> bool:
    for step in _flatten(data.get("pre_tokenizer"), "pretokenizers"):
        if step.get("type") == "Metaspace" and step.get("replacement", SPM_SPACE) == SPM_SPACE:
            return True
    for step in _flatten(data.get("normalizer"), "normalizers"):
        pattern = (step.get("pattern") or {}).get("String")
        if step.get("type") == "Replace" and pattern == " " and step.get("content") == SPM_SPACE:
            return True
    return False


def _merge_pairs(model: dict[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for merge in model.get("merges", []):
        if isinstance(merge, str):
            left, _, right = merge.partition(" ")
            pairs.append((left, right))
        else:
            pairs.append((merge[0], merge[1]))
    return pairs


def _ordered_vocab(data: dict[str, Any], vocab_size: int) -> tuple[list[str], dict[int, dict]]:
    """Tokens by id (added tokens included, holes and padding filled) and added tokens by id."""
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    added = {int(item["id"]): item for item in data.get("added_tokens", [])}
    for token_id, item in added.items():
        vocab[item["content"]] = token_id
    size = max(vocab_size, max(vocab.values()) + 1)
    tokens: list[str | None] = [None] * size
    for text, token_id in vocab.items():
        tokens[token_id] = text
    return [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)], added


def _special_ids(tokenizer: Any) -> dict[str, int | None]:
    return {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "unk": tokenizer.unk_token_id,
    }


def _adds_special(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding plain text adds BOS / EOS, measured rather than read from flags."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(with_special) > len(without) and with_special[0] == bos
    add_eos = eos is not None and len(with_special) > len(without) and with_special[-1] == eos
    return add_bos, add_eos


def _eot_id(folder: Path, tokenizer: Any, eos_id: int | None) -> int | None:
    """A second end-of-turn id from generation_config.json (e.g. ``<|im_end|>``), if any."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, json.JSONDecodeError):
        return None
    ids = value if isinstance(value, list) else [value]
    others = [i for i in ids if isinstance(i, int) and i != eos_id]
    return others[0] if others else None


def chat_template_of(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template or None


def read_tokenizer_meta(folder: str | Path, vocab_size: int) -> TokenizerMeta:
    """Build the GGUF tokenizer metadata of ``folder`` (whose model has ``vocab_size`` rows)."""
    from transformers import AutoTokenizer

    root = Path(folder)
    data = _read_tokenizer_json(root)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(root))
    except (OSError, ValueError) as error:
        raise MongarsError(f"export: tokenizer in {root} cannot be loaded ({error})") from None
    # Describe what HF really runs: transformers may rebuild the pipeline from the model type
    # (e.g. Qwen2Tokenizer installs Qwen2's split regex over whatever tokenizer.json says).
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        data = json.loads(backend.to_str())
    model = data.get("model") or {}
    model_type = model.get("type")
    tokens, added = _ordered_vocab(data, vocab_size)
    if len(tokens) > vocab_size:
        raise MongarsError(
            f"export: tokenizer in {root} has {len(tokens)} tokens but the model has only "
            f"{vocab_size} embedding rows; resize the embeddings before exporting"
        )
    special = _special_ids(tokenizer)
    add_bos, add_eos = _adds_special(tokenizer)
    vocab_ids = set(model.get("vocab", {}).values())

    types: list[int] = []
    for token_id, text in enumerate(tokens):
        if token_id in added:
            types.append(CONTROL if added[token_id].get("special") else USER_DEFINED)
        elif token_id not in vocab_ids:
            types.append(UNUSED)
        elif (
            model_type == "BPE" and len(text) == 6 and text.startswith("<0x") and text.endswith(">")
        ):
            types.append(BYTE if _is_spm_style(data) else NORMAL)
        else:
            types.append(NORMAL)
    if special["unk"] is not None and special["unk"] < len(types):
        types[special["unk"]] = UNKNOWN

    common = {
        "tokens": tokens,
        "token_types": types,
        "bos_id": special["bos"],
        "eos_id": special["eos"],
        "pad_id": special["pad"],
        "unk_id": special["unk"],
        "eot_id": _eot_id(root, tokenizer, special["eos"]),
        "add_bos": add_bos,
        "add_eos": add_eos,
        "chat_template": chat_template_of(tokenizer),
    }
    if model_type == "BPE" and _is_spm_style(data):
        return _spm_meta(data, model, common)
    if model_type == "BPE":
        pre = detect_bpe_pre(data)
        merges = [f"{left} {right}" for left, right in _merge_pairs(model)]
        return TokenizerMeta(
            model="gpt2", pre=pre, merges=merges, scores=None, add_space_prefix=None, **common
        )
    raise MongarsError(
        f"export: tokenizer model {model_type!r} in {root / 'tokenizer.json'} is not supported "
        "(supported: byte-level BPE, SentencePiece-style BPE); set export_cmd (--export-cmd)"
    )


def _spm_meta(data: dict[str, Any], model: dict[str, Any], common: dict[str, Any]) -> TokenizerMeta:
    """Scores that make llama.cpp's highest-score-pair merge follow the BPE merge ranks."""
    tokens: list[str] = common["tokens"]
    index = {text: i for i, text in enumerate(tokens)}
    scores = [0.0] * len(tokens)
    ranked: set[int] = set()
    for rank, (left, right) in enumerate(_merge_pairs(model)):
        token_id = index.get(left + right)
        if token_id is not None and token_id not in ranked:
            scores[token_id] = -float(rank)
            ranked.add(token_id)
    floor = -float(len(scores) + 1)
    for token_id, text in enumerate(tokens):
        if token_id not in ranked and len(text) > 1 and common["token_types"][token_id] == NORMAL:
            scores[token_id] = floor  # reachable only by merges BPE never makes: rank it last
    add_space_prefix, every_fragment = _spm_prefix(data)
    return TokenizerMeta(
        model="llama",
        pre=None,
        merges=None,
        scores=scores,
        add_space_prefix=add_space_prefix,
        special_text_parity=every_fragment,
        **common,
    )
