"""Ollama Modelfile TEMPLATE derivation from HF chat templates (fast: no model)."""

from __future__ import annotations

import pytest

from monGARS.mlops.export.modelfile import derive_turn_pieces, go_template, render_modelfile

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}"
    "{{ m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Llama-2 style: the system prompt is folded into the first user turn, which per-role pieces
# cannot express; the derivation must notice and give up rather than emit a wrong template.
LLAMA2 = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set sys = m['content'] %}"
    "{% elif m['role'] == 'user' %}{{ '[INST] ' + ('<<SYS>>' + sys + '<</SYS>> ' if sys is defined "
    "and loop.index0 == 1 else '') + m['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from monGARS.mlops.tiny_model import build_tokenizer

    return build_tokenizer()


def test_chatml_template_becomes_a_go_template(tokenizer) -> None:
    pieces = derive_turn_pieces(tokenizer)
    assert pieces is not None
    assert pieces.user == ("<|im_start|>user\n", "<|im_end|>\n")
    template = go_template(pieces)
    assert template is not None and "{{-" not in template
    assert template.endswith("<|im_start|>assistant\n")


def test_llama3_template_pieces(tokenizer) -> None:
    tokenizer.chat_template = LLAMA3
    pieces = derive_turn_pieces(tokenizer)
    assert pieces is not None
    assert pieces.user == ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>")
    assert pieces.system == ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>")
    text, templated = render_modelfile("x.gguf", tokenizer, eot_id=None, n_ctx=4096)
    assert templated and 'PARAMETER stop "<|eot_id|>"' in text


def test_irregular_template_falls_back_to_the_gguf_template(tokenizer) -> None:
    tokenizer.chat_template = LLAMA2
    assert derive_turn_pieces(tokenizer) is None
    text, templated = render_modelfile("x.gguf", tokenizer, eot_id=None, n_ctx=4096)
    assert not templated and "TEMPLATE" not in text and text.startswith("FROM ./x.gguf\n")
