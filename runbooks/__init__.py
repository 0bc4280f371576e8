"""Runbook files (YAML), shipped as package data. See docs/runbook-authoring.md."""
