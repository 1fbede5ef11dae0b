"""Helpers every layer may use (nothing here imports the rest of textssr): one-line errors, JSON files,
timers."""
