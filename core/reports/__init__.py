"""Scripts that measure the shipped models and write their reports (tables, figures) into docs/."""
