"""Errors a user can cause. The CLI prints their message as one line, without a traceback."""


class VzexpError(Exception):
    """Base class: the message must say what to change."""


class ConfigError(VzexpError):
    """A configuration value is wrong: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


class BudgetError(ConfigError):
    """A token budget the encoder's grid cannot satisfy."""


class MissingPathError(VzexpError):
    """A checkpoint or data path that does not exist or is not what the config says."""


def first_line(exc: BaseException) -> str:
    """A third-party error as a clause of one of ours: its first line, or its type if empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
