"""Developer tools that sit above the app: the README's pictures of the running suite (python -m tools.<name>)."""
