"""Debug log lines for ``guild --debug``, written to stderr.

Off unless `enable()` is called, and then `debug()` costs one global
check: the `logging` module is imported only when debugging is on, so
normal start-up never pays for it. Lines read ``DEBUG: [guild] ...``,
as Guild AI writes them.
"""

from __future__ import annotations

_on = False
_handler = None


def enable() -> None:
    """Send debug lines to stderr (the current one, at each line)."""
    global _on, _handler
    import logging
    import sys

    class _Stderr(logging.StreamHandler):
        # sys.stderr as it is when a line is written: click's test
        # runner and redirections replace it after start-up.
        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, _val):
            pass

    logger = logging.getLogger("guild")
    if _handler is None:
        _handler = _Stderr()
        _handler.setFormatter(logging.Formatter("%(levelname)s: [%(name)s] %(message)s"))
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    _on = True


def disable() -> None:
    global _on
    if not _on:
        return
    import logging

    logger = logging.getLogger("guild")
    logger.removeHandler(_handler)
    logger.setLevel(logging.NOTSET)
    _on = False


def enabled() -> bool:
    return _on


def debug(msg: str, *args) -> None:
    """Log `msg % args` when debugging is on; nothing otherwise."""
    if _on:
        import logging

        logging.getLogger("guild").debug(msg, *args)
