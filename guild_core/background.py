"""Entry point of a background run: ``python -m guild_core.background RUN_DIR [READY_FD]``.

Started detached by ``guild run --background``; records the run exactly
as a foreground run does, without a terminal. It first takes the run's
PENDING marker over from the guild that started it, then closes
READY_FD to let that guild exit.
"""

import os
import sys

from . import plugins, procs, runner
from .errors import GuildError
from .run import Run


def main(argv: list[str]) -> int:
    run = Run.for_dir(argv[0])
    try:
        run.mark_pending(procs.current())
    finally:
        if len(argv) > 1:
            os.close(int(argv[1]))
    pm = plugins.get_plugin_manager()
    try:
        return runner.start(
            run,
            # Detached (READY_FD given), output goes nowhere; started by
            # a queue, it joins the queue's own output.
            echo=len(argv) < 2,
            on_started=lambda r: plugins.call_lifecycle(pm, "guild_run_starting", run=r),
            on_stopped=lambda r: plugins.call_lifecycle(pm, "guild_run_stopped", run=r),
        )
    except GuildError as e:
        sys.stderr.write(f"guild: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) and 1)
