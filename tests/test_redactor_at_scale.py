"""The redactor with a campaign's hundreds of secrets and a world snapshot's long texts."""

from __future__ import annotations

import random
import string

from steps.secrets import MASK


def test_with_hundreds_of_secrets_each_is_scrubbed_at_any_offset_of_a_long_text():
    """Past a handful of secrets the redactor samples a text's windows (a campaign's world
    snapshot is hundreds of kB): a secret must be found wherever it starts, the shortest
    registered one included, and a forgotten one no longer."""
    from steps.secrets import Redactor

    r = Redactor()
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "/+"
    values = ["".join(rng.choice(alphabet) for _ in range(40)) for _ in range(300)]
    for v in values:
        r.register(v)
    short = "pw-short1"  # 9 characters: registered last, it makes the sampling denser
    r.register(short)
    filler = "".join(rng.choice(alphabet) for _ in range(5000))
    for offset in range(0, 80):
        for v in (values[offset % 300], short):
            text = filler[: 1000 + offset] + v + filler[1000 + offset :]
            assert v not in r.redact(text), (offset, v)
            assert r.redact(text) == filler[: 1000 + offset] + MASK + filler[1000 + offset :]
    assert r.redact(f"x{values[1]}{values[2]}y") == f"x{MASK}{MASK}y"  # two, back to back
    r.forget(values[3])
    assert r.redact(f"a {values[3]} b") == f"a {values[3]} b"
    assert r.redact(f"a {values[4]} b") == f"a {MASK} b"
