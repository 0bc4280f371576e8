"""The inventory's real names in a runbook's displayed commands.

A runbook's `command:` may use these placeholders besides its inputs and facts; the
wiring fills them from the session user's vault and consumers, so the operator reads
`heroku config:set ... -a raxx-api-prod`, not `-a <app>`. Without an inventory entry,
the command placeholders say so (the step is then manual, with its instructions).

This module imports no SDK: the loader uses PLACEHOLDERS to check runbooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from steps.consumers.base import Consumer, Vault

PLACEHOLDERS: dict[str, str] = {
    "vault": "the vault's name (infisical:<project>/<env><path>)",
    "vault_command": "the CLI command that writes the new pair to the vault",
    "vault_restore_command": "the CLI command that writes the old pair back to the vault",
    "consumers": "the consumers' names, comma-separated",
    "consumer_commands": "one line per consumer: the CLI command that writes the new pair there",
    "consumer_restore_commands": "one line per consumer: the CLI command that writes the old pair back",
    "verify_commands": "one line per consumer: the CLI equivalent of its verification",
}

NO_VAULT = "# no inventory entry gives this user's vault: see the instructions"
NO_CONSUMERS = "# no inventory entry lists this user's consumers: see the instructions"


def display_values(vault: Vault | None, consumers: Sequence[Consumer], values: Mapping[str, str]) -> dict[str, str]:
    """The placeholders' values for this vault and these consumers. Key ids not known
    yet (a dry run, a plan) show as <new_key_id> / <old_key_id>, as render shows them."""
    new_id = values.get("new_key_id") or "<new_key_id>"
    old_id = values.get("old_key_id") or "<old_key_id>"
    out: dict[str, str] = {}
    if vault is not None:
        out["vault"] = vault.name
        out["vault_command"] = vault.command(new_id)
        out["vault_restore_command"] = vault.command(old_id)
    else:
        out["vault_command"] = out["vault_restore_command"] = NO_VAULT
    if consumers:
        out["consumers"] = ", ".join(c.name for c in consumers)
        out["consumer_commands"] = "\n".join(c.command(new_id) for c in consumers)
        out["consumer_restore_commands"] = "\n".join(c.command(old_id) for c in consumers)
        out["verify_commands"] = "\n".join(c.verification() for c in consumers)
    else:
        out["consumer_commands"] = out["consumer_restore_commands"] = out["verify_commands"] = NO_CONSUMERS
    return out
