"""User-facing errors: one line that names the field at fault and how to fix it."""

from __future__ import annotations


class MongarsError(Exception):
    """An error caused by the user's input or environment, shown as one line without traceback."""


class ConfigError(MongarsError):
    """Every problem found in one config, reported together so the user fixes them in one go."""

    def __init__(self, config_name: str, problems: list[str]) -> None:
        self.config_name = config_name
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid {config_name} config ({count} {noun}): " + "; ".join(problems))
