"""Built-in plugin ``s3``: a remote type (being written)."""
