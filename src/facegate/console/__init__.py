"""The oversight console at /console (see app.py)."""
