"""Built-in plugin ``ssh``: a remote type (being written)."""
