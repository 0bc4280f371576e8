"""handrail's screen: the Textual app and the `handrail` command line."""
