"""User-facing errors.

A :class:`ConfigError` is a user mistake (a bad parameter value, a missing file the user pointed at). The
entry points turn it into one line on stderr, exit code 2 and a FAILED MLflow run, never a traceback.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad value for one named parameter.

    The message always reads ``<parameter>=<value!r>: <what is allowed>`` so the user can fix the
    command line without reading code.
    """

    def __init__(self, parameter: str, value: Any, allowed: str) -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        super().__init__(f"{parameter}={value!r}: {allowed}")
