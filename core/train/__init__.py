"""Training loops (one per model) and the shared run-directory format."""
