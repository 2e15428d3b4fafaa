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


# Write failures a user can fix (space, permissions, a read-only or wrong target), as opposed to
# bugs: these get one line naming the path instead of a traceback.
_WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS", "ENOTDIR", "EEXIST"}


def describe_write_error(error: BaseException) -> str | None:
    """One line for a storage failure the user can fix; ``None`` for anything else.

    Besides ``OSError``, native writers (safetensors, tokenizers) raise their own exception types
    that carry the OS error as ``(os error N)`` in the message; those count too.
    """
    import errno
    import os
    import re

    if isinstance(error, OSError):
        number, strerror, filename = error.errno or 0, error.strerror, error.filename
    else:
        found = re.search(r"\(os error (\d+)\)", str(error))
        if found is None:
            return None
        number = int(found.group(1))
        strerror, filename = os.strerror(number), None
    name = errno.errorcode.get(number, "")
    if name not in _WRITE_ERRNOS:
        return None
    where = filename or "the output folder"
    hint = {
        "ENOSPC": "free some disk space",
        "EDQUOT": "free some quota",
        "EFBIG": "free space or raise the file size limit",
        "ENOTDIR": "a file stands where a folder is needed; choose another location",
        "EEXIST": "a file stands where a folder is needed; choose another location",
    }.get(name, "choose a writable location")
    return f"cannot write {where}: {strerror}; {hint}"
