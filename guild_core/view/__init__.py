"""``guild view``: a local web application over the runs.

`server` is the HTTP side (routing, the token, Host and Origin checks),
`data` builds the JSON its API returns from the same selection, index,
compare and run-values code the CLI uses, and `series` reads a scalar's
points for the charts (docs/view.md).
"""
