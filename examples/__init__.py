"""Example workflows for `flowledger worker` (README "Workers")."""
