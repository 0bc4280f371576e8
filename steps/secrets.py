"""Secret values: held in memory only, masked wherever they are printed.

A `Secret` never renders its value through str/repr/format, refuses to be pickled,
and registers itself with the process-wide redactor, which scrubs every known secret
from every string the engine writes (journal, audit, output, errors, exports).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from typing import NoReturn

MASK = "****"
# Shorter values are not registered: scrubbing them would mangle ordinary text.
_MIN_REDACT_LEN = 8


class Redactor:
    """Remembers every secret value this process has seen and scrubs it from text."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def register(self, value: str, label: str = "secret") -> None:
        if len(value) >= _MIN_REDACT_LEN:
            with self._lock:
                self._values[value] = label

    def forget(self, value: str) -> None:
        with self._lock:
            self._values.pop(value, None)

    def redact(self, text: str) -> str:
        if not text or not self._values:
            return text
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def contains_secret(self, text: str) -> bool:
        with self._lock:
            return any(v in text for v in self._values)


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


class Secret:
    """A secret string. `reveal()` is the only way to its value."""

    __slots__ = ("_value", "label")
    _value: str
    label: str

    def __init__(self, value: str | Secret, label: str = "secret") -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str) or not value:
            raise ValueError(f"{label}: a secret must be a non-empty string")
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "label", label)
        REDACTOR.register(value, label)

    def reveal(self) -> str:
        return self._value

    def fingerprint(self) -> str:
        """A short, non-reversible identifier: the same value gives the same print."""
        return "sha256:" + hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret({self.label}, {MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __len__(self) -> int:
        return len(self._value)


def fingerprint(value: str | Secret | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = Secret(value)
    return value.fingerprint()


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs known secrets from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logged as it is
            return True
        cleaned = REDACTOR.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
