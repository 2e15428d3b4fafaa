"""An Ollama Modelfile for the chat GGUF, its TEMPLATE derived from the HF chat template.

Ollama templates are Go templates, so the Jinja chat template cannot be copied. Instead the HF
template is rendered with marker contents to find each role's prefix and suffix; the pieces are
kept only if re-assembling them reproduces HF's own rendering of a multi-turn conversation.
Otherwise TEMPLATE is left out and Ollama falls back to the template stored in the GGUF.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_SYS, _U1, _A1, _U2 = "\x02SYS\x03", "\x02U1\x03", "\x02A1\x03", "\x02U2\x03"


@dataclasses.dataclass(frozen=True)
class TurnPieces:
    """Text around each role's content in the rendered chat template."""

    system: tuple[str, str] | None
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation: str  # what add_generation_prompt appends

    def render(self, messages: list[dict[str, str]]) -> str:
        parts = []
        for message in messages:
            prefix, suffix = {
                "system": self.system,
                "user": self.user,
                "assistant": self.assistant,
            }[message["role"]] or ("", "")
            parts.append(prefix + message["content"] + suffix)
        return "".join(parts) + self.generation


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _between(text: str, start: str, end: str) -> str:
    left = text.index(start) + len(start)
    return text[left : text.index(end, left)]


def derive_turn_pieces(tokenizer: Any) -> TurnPieces | None:
    """Role prefixes/suffixes of the tokenizer's chat template, or None if it is irregular."""
    bos = tokenizer.bos_token or ""
    user, assistant, user2 = (
        {"role": "user", "content": _U1},
        {"role": "assistant", "content": _A1},
        {"role": "user", "content": _U2},
    )
    try:
        one = _render(tokenizer, [user], False)
        generation = _render(tokenizer, [user], True)[len(one) :]
        three = _render(tokenizer, [user, assistant, user2], False)
        user_to_assistant = _between(three, _U1, _A1)
        assistant_to_user = _between(three, _A1, _U2)
        if not user_to_assistant.endswith(generation) or not generation:
            return None
        user_suffix = user_to_assistant[: len(user_to_assistant) - len(generation)]
        two = _render(tokenizer, [user, assistant], False)
        assistant_suffix = two.split(_A1, 1)[1]
        if not assistant_to_user.startswith(assistant_suffix):
            return None
        user_prefix = assistant_to_user[len(assistant_suffix) :]
        head = one.split(_U1, 1)[0]
        if head != bos + user_prefix and head != user_prefix:
            return None
        system = None
        try:
            with_system = _render(tokenizer, [{"role": "system", "content": _SYS}, user], False)
            system_head, system_tail = with_system.split(_U1, 1)[0].split(_SYS, 1)
            if system_tail.endswith(user_prefix):
                system_prefix = (
                    system_head[len(bos) :] if system_head.startswith(bos) else system_head
                )
                system = (system_prefix, system_tail[: len(system_tail) - len(user_prefix)])
        except Exception:  # templates that refuse a system role
            system = None
    except Exception:
        return None
    pieces = TurnPieces(
        system, (user_prefix, user_suffix), (generation, assistant_suffix), generation
    )
    probe = [user, assistant, user2]
    if system is not None:
        probe = [{"role": "system", "content": _SYS}, *probe]
    expected = _render(tokenizer, probe, True)
    if expected.startswith(bos) and bos:
        expected = expected[len(bos) :]
    return pieces if pieces.render(probe) == expected else None


def go_template(pieces: TurnPieces) -> str | None:
    """The Ollama TEMPLATE for ``pieces``, or None if a piece would break the Go template."""
    texts = [pieces.user[0], pieces.user[1], pieces.assistant[1], pieces.generation]
    if pieces.system:
        texts.extend(pieces.system)
    if any("{{" in text or '"""' in text for text in texts):
        return None
    # One line, no "{{-": trimming markers would eat newlines that belong to the pieces.
    parts = ["{{ range .Messages }}"]
    branch = "if"
    if pieces.system is not None:
        parts.append(
            f'{{{{ if eq .Role "system" }}}}{pieces.system[0]}{{{{ .Content }}}}{pieces.system[1]}'
        )
        branch = "else if"
    parts.append(
        f'{{{{ {branch} eq .Role "user" }}}}{pieces.user[0]}{{{{ .Content }}}}{pieces.user[1]}'
    )
    parts.append(
        f'{{{{ else if eq .Role "assistant" }}}}{pieces.generation}'
        f"{{{{ .Content }}}}{pieces.assistant[1]}"
    )
    parts.append("{{ end }}{{ end }}" + pieces.generation)
    return "".join(parts)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def stop_strings(tokenizer: Any, pieces: TurnPieces | None, eot_id: int | None) -> list[str]:
    """Strings Ollama should stop on: EOS, the end-of-turn token, the assistant suffix."""
    stops: list[str] = []
    candidates = [tokenizer.eos_token]
    if eot_id is not None:
        candidates.append(tokenizer.convert_ids_to_tokens(eot_id))
    if pieces is not None and pieces.assistant[1].strip():
        candidates.append(pieces.assistant[1].strip())
    for candidate in candidates:
        if candidate and candidate not in stops:
            stops.append(candidate)
    return stops


def render_modelfile(
    gguf_name: str, tokenizer: Any, *, eot_id: int | None, n_ctx: int, temperature: float = 0.7
) -> tuple[str, bool]:
    """(Modelfile text, whether TEMPLATE was derived) for the chat GGUF file ``gguf_name``."""
    pieces = derive_turn_pieces(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    template = go_template(pieces) if pieces is not None else None
    lines = [f"FROM ./{gguf_name}", ""]
    if template is not None:
        lines += ['TEMPLATE """' + template + '"""', ""]
    for stop in stop_strings(tokenizer, pieces, eot_id):
        lines.append(f"PARAMETER stop {_quote(stop)}")
    lines.append(f"PARAMETER num_ctx {n_ctx}")
    lines.append(f"PARAMETER temperature {temperature}")
    return "\n".join(lines) + "\n", template is not None
