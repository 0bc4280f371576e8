"""The app's screens: start, checklist, and the modals they open."""
