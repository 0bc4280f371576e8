"""Where handrail keeps its state: HANDRAIL_HOME, or the platform's state/config dirs."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path | None:
    value = os.environ.get("HANDRAIL_HOME")
    return Path(value).expanduser() if value else None


def state_dir() -> Path:
    base = home()
    if base is not None:
        return base
    from platformdirs import user_state_dir

    return Path(user_state_dir("handrail"))


def config_dir() -> Path:
    base = home()
    if base is not None:
        return base / "config"
    from platformdirs import user_config_dir

    return Path(user_config_dir("handrail"))


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def private_file(path: Path) -> Path:
    """Make sure `path` exists with mode 0600 before anything writes to it."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


def journal_path() -> Path:
    return state_dir() / "journal.sqlite3"


def audit_path() -> Path:
    return state_dir() / "audit.jsonl"


def inventory_path() -> Path:
    return config_dir() / "inventory.yaml"
