"""Run inside mongars-train-cuda (no network, non-root): check one SFT adapter artifact.

    python /probe/probe_sft.py BASE_MODEL_ARTIFACT DATASETS_DIR ADAPTER_ARTIFACT_DIR MODULE

The base model artifact is a reference into the shared cache volume, mounted where the tasks
see it (monGARS.mlops.shared_cache).

Prints one JSON object:
- ``assistant_only``: with the image's own transformers and the project's tokenization, every
  training record of the module trains exactly on its assistant turns (each closed by the
  end-of-turn marker), nothing else;
- ``trained_fraction``: labelled tokens / all tokens (below 1: prompts are masked);
- ``adapter_loads``: peft loads the adapter onto the base; ``lora_b_nonzero``: its B matrices
  moved away from their zero initialisation; ``logits_changed``: the adapted model's logits differ
  from the base's on a prompt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(base_artifact: str, datasets_dir: str, artifact_dir: str, module: str) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from monGARS.mlops.modeling import load_tokenizer
    from monGARS.mlops.shared_cache import resolve_model_dir
    from monGARS.mlops.training.common.chat_data import (
        IGNORE_INDEX,
        ensure_chat_template,
        load_module_records,
        tokenize_chat,
    )

    base_dir = str(resolve_model_dir(base_artifact))

    artifact = Path(artifact_dir)
    training = json.loads((artifact / "training_config.json").read_text(encoding="utf-8"))
    max_seq_length = int(training["config"]["max_seq_length"])
    tokenizer = load_tokenizer(base_dir)
    ensure_chat_template(tokenizer)
    end_of_turn = "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token

    records = load_module_records(Path(datasets_dir), module, "train")
    checked, mismatches, labelled, total = 0, [], 0, 0
    for record in records:
        example = tokenize_chat(tokenizer, record["messages"], max_seq_length)
        if example is None or len(example.input_ids) == max_seq_length:
            continue  # dropped or truncated: its last turn is cut, so no exact comparison
        pairs = zip(example.input_ids, example.labels, strict=True)
        trained = [token for token, label in pairs if label != IGNORE_INDEX]
        expected = "".join(
            m["content"] + end_of_turn for m in record["messages"] if m["role"] == "assistant"
        )
        if tokenizer.decode(trained) != expected:
            mismatches.append(tokenizer.decode(trained)[:120])
        labelled += len(trained)
        total += len(example.input_ids)
        checked += 1

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    prompt = tokenizer("Bonjour, comment entraîner un adaptateur ?", return_tensors="pt")
    with torch.no_grad():
        base_logits = base(**prompt).logits.clone()
    model = PeftModel.from_pretrained(base, str(artifact / "adapter"))
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    with torch.no_grad():
        adapted_logits = model(**prompt).logits
    return {
        "records_checked": checked,
        "assistant_only": checked > 0 and not mismatches,
        "mismatches": mismatches[:3],
        "trained_fraction": labelled / total if total else None,
        "adapter_loads": True,
        "lora_b_tensors": len(lora_b),
        "lora_b_nonzero": bool(lora_b) and all(float(p.abs().sum()) > 0 for p in lora_b),
        "logits_changed": not torch.allclose(base_logits, adapted_logits),
        "transformers": __import__("transformers").__version__,
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
