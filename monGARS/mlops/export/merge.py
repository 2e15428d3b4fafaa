"""Merge a module's LoRA adapter into the base weights and save a plain HF folder for the writer.

The base artifact holds full-precision weights (QLoRA quantises at load time only), so the merge
happens on the original weights, never on 4-bit ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from monGARS.mlops.base_model import check_model_folder
from monGARS.mlops.errors import MongarsError
from monGARS.mlops.modeling import adapter_path, check_not_prequantised, merge_adapter_to_folder

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
)
ENCODER_SUBDIR = "encoder"
ENCODER_JSON = "encoder.json"


def _copy_tokenizer(source: Path, target: Path) -> None:
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def merge_chat_model(
    base_model_dir: str | Path, chat_adapter_dir: str | Path | None, scratch: Path
) -> Path:
    """The folder the chat GGUF is written from: the base itself, or base + adapter merged.

    The merge is the merge task's own (``modeling.merge_adapter_to_folder``), so a model exported
    here and one merged in the pipeline are the same files.
    """
    base = Path(base_model_dir)
    check_not_prequantised(base, check_model_folder(base, "base_model"))
    if chat_adapter_dir is None:
        return base
    adapter = adapter_path(chat_adapter_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise MongarsError(
            f"chat_adapter: {adapter} has no adapter_config.json; give the sft (or raft) output "
            "folder that contains adapter/"
        )
    target = scratch / "chat-merged"
    merge_adapter_to_folder(base, chat_adapter_dir, target)
    return target


def encoder_folder(
    encoder_dir: str | Path, base_model_dir: str | Path, scratch: Path
) -> tuple[Path, Path | None]:
    """(encoder folder with a tokenizer, encoder.json or None) from an llm2vec output folder.

    An encoder saved without tokenizer files gets a scratch view: its files linked, the base
    model's tokenizer copied next to them (llm2vec never changes the tokenizer).
    """
    root = Path(encoder_dir)
    folder = root / ENCODER_SUBDIR
    if not (folder / "config.json").is_file():
        raise MongarsError(
            f"encoder: {folder} has no config.json; give the llm2vec output folder that "
            "contains encoder/"
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    check_not_prequantised(folder, config, "encoder")
    meta = root / ENCODER_JSON
    meta_path = meta if meta.is_file() else None
    if (folder / "tokenizer.json").is_file():
        return folder, meta_path
    view = scratch / "encoder-view"
    view.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.is_file():
            (view / path.name).symlink_to(path.resolve())
    _copy_tokenizer(Path(base_model_dir), view)
    return view, meta_path
