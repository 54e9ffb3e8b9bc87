"""Drift of a served model against its training profile, its age and numeric health."""
