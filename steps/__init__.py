"""handrail's domain: runbook model, engine, journal, audit, actions, sandbox.

Never imports textual. Submodules load on first use so `handrail --help` stays fast.
"""

__version__ = "0.1.0"
