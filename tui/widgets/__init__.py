"""The app's widgets, each one thing."""
