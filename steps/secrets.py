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
# Up to this many known values, looking for each is cheaper than cutting the text into windows.
_FEW = 64


class Redactor:
    """Remembers every secret value this process has seen and scrubs it from text.

    A campaign makes this process know hundreds of secrets, and every journal line,
    audit line and output line passes through here: the cost of a scrub must grow with
    the text, not with the number of secrets. Each value is indexed by every window of
    `_MIN_REDACT_LEN` characters it starts with, up to `_step` of them (`_step` = the
    shortest value's length - `_MIN_REDACT_LEN` + 1): a value of at least that length
    found in a text covers one of the text's windows taken every `_step` characters. So
    a text is cut into every `_step`-th window (a set, built in C; a world snapshot is
    hundreds of kB) and only the values indexed under them are looked for.
    """

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._by_window: dict[str, set[str]] = {}
        self._windows: set[str] = set()  # the keys of _by_window: set & set walks the smaller one
        self._step = 1 << 30  # no value yet: the first one sets it
        self._lock = threading.Lock()

    def _index(self) -> None:
        """Index every value under the windows it starts with (call with the lock held)."""
        n = _MIN_REDACT_LEN
        self._step = min((len(v) for v in self._values), default=n) - n + 1
        self._by_window = {}
        for value in self._values:
            for i in range(self._step):
                self._by_window.setdefault(value[i : i + n], set()).add(value)
        self._windows = set(self._by_window)

    def register(self, value: str, label: str = "secret") -> None:
        if len(value) >= _MIN_REDACT_LEN:
            with self._lock:
                known = value in self._values
                self._values[value] = label
                if known:
                    return
                n = _MIN_REDACT_LEN
                if len(value) - n + 1 < self._step:
                    self._index()  # a shorter value: every value needs fewer windows, the texts more
                    return
                for i in range(self._step):
                    self._by_window.setdefault(value[i : i + n], set()).add(value)
                    self._windows.add(value[i : i + n])

    def forget(self, value: str) -> None:
        with self._lock:
            if self._values.pop(value, None) is not None:
                n = _MIN_REDACT_LEN
                for i in range(self._step):
                    same = self._by_window.get(value[i : i + n])
                    if same is not None:
                        same.discard(value)
                        if not same:
                            del self._by_window[value[i : i + n]]
                            self._windows.discard(value[i : i + n])

    def _found(self, text: str) -> list[str]:
        """The known values that occur in `text`, longest first."""
        if len(text) < _MIN_REDACT_LEN or not self._values:
            return []
        with self._lock:
            if len(self._values) <= _FEW:  # a single session's handful: look for each
                candidates = set(self._values)
            else:
                n, step = _MIN_REDACT_LEN, self._step
                windows = {text[i : i + n] for i in range(0, len(text) - n + 1, step)}
                candidates = {v for window in windows & self._windows for v in self._by_window[window]}
        return sorted((v for v in candidates if v in text), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._found(text):
            text = text.replace(value, MASK)
        return text

    def contains_secret(self, text: str) -> bool:
        return bool(self._found(text))


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR.redact(text)


def contains_secret(text: str) -> bool:
    return REDACTOR.contains_secret(text)


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
