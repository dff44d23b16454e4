"""Entry point of a background run: ``python -m guild_core.background RUN_DIR``.

Started detached by ``guild run --background``; records the run exactly
as a foreground run does, without a terminal.
"""

import sys

from . import plugins, runner
from .run import Run


def main(argv: list[str]) -> int:
    run = Run.for_dir(argv[0])
    pm = plugins.get_plugin_manager()
    return runner.start(
        run,
        echo=False,
        on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
        on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) and 1)
