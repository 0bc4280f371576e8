"""How the app shows a scenario's difficulty: as stars."""

from __future__ import annotations


def stars(difficulty: int, of: int = 3) -> str:
    """Difficulty as stars: 2 -> '★★☆'."""
    difficulty = max(0, min(of, difficulty))
    return "★" * difficulty + "☆" * (of - difficulty)
