"""Every hook a guild plugin can implement: the plugin author's API.

A plugin is a module (or package) named by an entry point in the
``guild`` group::

    [project.entry-points.guild]
    myplugin = "my_guild_plugin"

and implements any of the hooks below with the `hookimpl` marker::

    from guild_core.hookspecs import hookimpl

    @hookimpl
    def guild_register_optimizers(register):
        register("anneal", AnnealOptimizer, aliases=["sa"])

Hooks that *produce one thing* (``firstresult``) stop at the first
implementation that returns something other than ``None``; built-in
implementations are marked ``trylast`` so an installed plugin is asked
first and can override them. Hooks that *register named things* receive
a ``register`` callback; the core owns the names, aliases and clashes
(a second plugin claiming a name is an error naming both).

Plugin modules must stay cheap to import: import heavy libraries
(numpy, scikit-optimize, boto3) inside the functions that use them.
The guide in ``docs/plugins.md`` describes each hook with an example.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence

import pluggy

if TYPE_CHECKING:
    from .flagdefs import FlagDef, FlagsInfo
    from .remotes import Transfer
    from .run import Run

PROJECT_NAME = "guild"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------
# Flag detection
# ---------------------------------------------------------------------


@hookspec(firstresult=True)
def guild_detect_flags(script: Path, source: str) -> FlagsInfo | None:
    """Detect the flags of a Python script.

    Called when a script is run directly (``guild run train.py``) or as
    the ``main`` of a guild.yml operation that imports flags.

    :param script: absolute path of the script.
    :param source: the script's text, already read, so a plugin can
        decline cheaply (``if "argparse" not in source: return None``).
    :return: a `FlagsInfo` with the flag definitions and their
        destination (``"args"`` or ``"globals"``), or ``None`` when the
        plugin does not recognise the script. The first non-None result
        wins. The built-in ``argparse`` and ``globals`` plugins are
        ``trylast`` and decline each other's scripts, so their order does
        not matter.
    """


@hookspec(firstresult=True)
def guild_flags_launcher(dest: str) -> str | None:
    """Name the module that runs a Python script whose flags go to `dest`.

    The core runs ``python -um MODULE SCRIPT --name value ...`` in the
    run directory. For ``dest == "args"`` no launcher is needed and the
    core runs the script itself; plugins answer for destinations they
    define (the built-in ``globals`` plugin answers ``"globals"``).

    :param dest: a `FlagsInfo.dest` value, or guild.yml's ``flags-dest``
        (which guild.yml limits to Guild AI's forms: ``args``,
        ``globals``, ``global:NAME``, ``dict:NAME``, ``namespace:NAME``,
        ``args:NAME``, ``config:PATH``, ``none``; a destination only a
        plugin defines reaches this hook through flag detection).
    :return: an importable module name, or ``None``. First non-None wins.
    """


# ---------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------


class BatchContext(Protocol):
    """What an optimizer is told about the batch it serves.

    :ivar space: flag name -> value. A fixed value, a list of choices, or
        a search-space function as ``(name, args)``, for example
        ``("uniform", (0.0, 1.0))`` or ``("loguniform", (1e-5, 1e-1))``.
    :ivar flagdefs: the trial operation's flag definitions by name; an
        optimizer uses ``FlagDef.type`` to choose integer or real sampling.
    :ivar opt_flags: the optimizer's own flags (``-Fo NAME=VALUE``),
        defaults applied and values typed.
    :ivar seed: the batch's random seed; the same seed must give the same
        proposals so a restart regenerates the same trials.
    :ivar objective: the scalar to optimize, for example ``"loss"``.
    :ivar minimize: ``True`` to minimize `objective`, ``False`` to maximize.
    :ivar max_trials: the number of trials the batch will run.
    """

    space: dict[str, Any]
    flagdefs: dict[str, "FlagDef"]
    opt_flags: dict[str, Any]
    seed: int
    objective: str
    minimize: bool
    max_trials: int


class Optimizer(Protocol):
    """A search strategy the core batch driver calls.

    The driver calls `propose` for the next trials, runs them, and
    reports each result with `observe` before asking again. An optimizer
    that knows every trial up front (random search) returns them all from
    the first `propose`; a sequential one (Bayesian) returns one at a
    time and uses what it observed.
    """

    def propose(self, n: int) -> list[dict[str, Any]]:
        """Return up to `n` flag sets to run next; an empty list ends the
        batch early."""

    def observe(self, flags: dict[str, Any], objective: float | None) -> None:
        """Report a finished trial: its flags and its objective value
        (``None`` when the trial failed or logged no such scalar)."""

    # Optional, for parallel trials (``--workers N``, ``--dask``):
    #
    # def propose_concurrent(self, n: int, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
    #     """Up to `n` flag sets to run *alongside* `running`: trials
    #     proposed earlier whose results are not observed yet. Each
    #     result is reported with `observe` as it arrives, in the order
    #     trials end, not the order they were proposed."""
    #
    # With workers to fill, the scheduler calls `propose_concurrent`
    # when the optimizer has it, else `propose(n)` as often as a slot is
    # free. An optimizer that has neither notion keeps working: a
    # sequential one proposes from what it has observed so far, which in
    # parallel is less informed, never wrong.


class RegisterOptimizer(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[[BatchContext], Optimizer],
        *,
        aliases: Sequence[str] = (),
        flags: dict[str, "FlagDef"] | None = None,
        default_max_trials: int = 20,
        description: str = "",
    ) -> None: ...


@hookspec
def guild_register_optimizers(register: RegisterOptimizer) -> None:
    """Register optimizers by name.

    Call ``register(name, factory, aliases=(), flags={...},
    default_max_trials=20, description="")`` once per optimizer.
    `factory` receives a `BatchContext` and returns an `Optimizer`.
    `flags` are the optimizer's own flags (``FlagDef`` by name), set by
    the user with ``-Fo NAME=VALUE`` and shown by ``guild run NAME
    --help-op``. A name or alias already registered by another plugin is
    an error naming both plugins.
    """


# ---------------------------------------------------------------------
# Pruners
# ---------------------------------------------------------------------


class PrunerContext(Protocol):
    """What a pruner is told when a batch starts.

    :ivar flags: the pruner's own flags (``-Fp NAME=VALUE``, or
        guild.yml's ``pruner:``), defaults applied and values typed.
    :ivar objective: the scalar the batch optimizes (``loss``).
    :ivar minimize: ``True`` when lower values of `objective` are better.
    :ivar seed: the batch's random seed.
    """

    flags: dict[str, Any]
    objective: str
    minimize: bool
    seed: int


class TrialHistory(Protocol):
    """One trial's objective so far (`guild_core.pruning.History`).

    :ivar id: the trial's run id.
    :ivar status: ``running``, ``pending``, ``completed``, ``terminated``
        or ``error``.
    :ivar steps: the steps at which the trial logged the objective, in
        the order logged; ``steps[-1]`` is the newest.
    :ivar values: the objective at each of those steps.
    :ivar pruned: whether this batch's pruner stopped it.
    :ivar completed: completed and not pruned.
    :ivar finished: no longer running (completed, pruned, failed).
    """

    id: str
    status: str
    steps: list[int]
    values: list[float]
    pruned: bool
    completed: bool
    finished: bool

    def value_at(self, step: int) -> float | None:
        """The value logged at the last step at or before `step`, or
        ``None`` when the trial has not reached `step`."""


class Pruner(Protocol):
    """Decides which running trials stop early.

    The core calls `should_prune` each time a running trial logs a new
    value of the objective, with that trial's history (its newest step
    last) and every trial's of the batch by id (running, finished and
    pruned alike, the asking trial among them). Calls come from one
    thread, one at a time, in the order the values were logged; with
    parallel trials, other trials' histories grow between calls. A
    pruner must not block: it is asked again at each step.
    """

    def should_prune(self, trial: TrialHistory, trials: dict[str, TrialHistory]) -> Any:
        """``None`` (or anything false) to let `trial` go on; to stop
        it, a `guild_core.pruning.Prune(rule, threshold, reason)`: the
        rule's name, the value `trial` failed to reach and a line for
        the batch's output, recorded on the trial."""

    # Optional:
    #
    # def pruned_value(self, trial: TrialHistory, trials: dict[str, TrialHistory]) -> float | None:
    #     """What the batch's optimizer is told for pruned `trial` (its
    #     objective value). ``None``, or no such method: the optimizer
    #     is told nothing of it (as of a failed trial). A value must not
    #     make a pruned trial look better than it would have ended."""


class RegisterPruner(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[[PrunerContext], Pruner],
        *,
        aliases: Sequence[str] = (),
        flags: dict[str, "FlagDef"] | None = None,
        description: str = "",
    ) -> None: ...


@hookspec
def guild_register_pruners(register: RegisterPruner) -> None:
    """Register pruners by name.

    Call ``register(name, factory, aliases=(), flags={...},
    description="")`` once per pruner. `factory` receives a
    `PrunerContext` and returns a `Pruner`; it raises `ValueError` for
    flag values it refuses (shown as one line, before any trial
    starts). `flags` are the pruner's own flags (``FlagDef`` by name),
    set with ``-Fp NAME=VALUE`` or in guild.yml's ``pruner:``; the
    names ``notice`` and ``grace`` are the core's (every pruner has
    them). A name or alias already registered by another plugin is an
    error naming both plugins.
    """


# ---------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------


class ExecutorContext(Protocol):
    """What an executor is told when a batch starts.

    :ivar workers: how many trials may run at once (``--workers``;
        ``None`` when not given: the executor's own default).
    :ivar address: where to run, as the user gave it (``--dask
        tcp://HOST:PORT``), or ``None`` for the executor's default.
    :ivar resources: resources each trial needs (``--dask-resources
        gpu=1``, or the operation's ``dask-resources``), name -> amount.
    :ivar say: ``say(line)`` prints a line of the batch's log.
    """

    workers: int | None
    address: str | None
    resources: dict[str, float]
    say: Callable[[str], None]


class Executor(Protocol):
    """Runs a batch's trials somewhere and reports their ends.

    The scheduler keeps at most `slots` trials submitted and not yet
    reported. Each trial is an ordinary run directory, created and
    linked by the scheduler; the executor runs it with
    ``guild_core.executors.execute(run_dir)`` wherever it runs (that
    call claims the trial, so a retried task never runs it twice).

    :ivar slots: how many trials run at once.
    :ivar shows_output: ``True`` when the executor shows trials' output
        itself; else the scheduler follows each trial's
        ``.guild/output`` and prints it, prefixed with the trial's id.
    """

    slots: int
    shows_output: bool

    def describe(self) -> str:
        """One line for the batch's log: where trials run."""

    def submit(self, run: "Run") -> None:
        """Start `run` (its directory exists; it is not started yet)."""

    def wait(self, timeout: float) -> list[tuple["Run", int]]:
        """Trials that ended since the last call, as ``(run, exit
        status)``; waits up to `timeout` seconds for the first. A trial
        lost with its worker is reported too, with the status
        `guild_core.executors.settle` gives it."""

    def stop(self, signum: int) -> None:
        """Stop every submitted trial (Ctrl-C, ``guild stop``); their
        ends are still reported by `wait`."""

    def close(self) -> None:
        """Release what the executor holds (a cluster it started)."""


class RegisterExecutor(Protocol):
    def __call__(
        self, name: str, factory: Callable[[ExecutorContext], Executor], *, description: str = "",
        address_flag: str = "address",
    ) -> None: ...


@hookspec
def guild_register_executors(register: RegisterExecutor) -> None:
    """Register executors by name: where ``guild run`` may run a batch's
    trials besides this machine's threads.

    Call ``register(name, factory, description="",
    address_flag="address")``; `factory` receives an `ExecutorContext`
    and returns an `Executor`, raising `GuildError` with one line when
    it cannot (a scheduler it cannot reach, a missing library). The
    executor named ``dask`` is the one ``--dask`` uses.

    Every executor also gets a queue, ``guild run NAME:queue``, whose
    staged runs are submitted to it; `address_flag` names that
    operation's flag for `ExecutorContext.address` (Dask's is
    ``scheduler``). Its `submit` may raise `GuildError` for a run it
    cannot take (resources no worker has): the queue leaves that run
    staged and says why.
    """


# ---------------------------------------------------------------------
# Batch files
# ---------------------------------------------------------------------


class BatchFileError(Exception):
    """Raised by a batch-file reader: names the file and, when known, the
    1-based row at fault."""

    def __init__(self, path: Path | str, msg: str, row: int | None = None):
        self.path = str(path)
        self.row = row
        self.msg = msg
        where = f"{self.path}, row {row}" if row is not None else self.path
        super().__init__(f"{where}: {msg}")


class BatchRows(list):
    """What a batch-file reader may return instead of a plain list when a
    trial's position is not its row number (a CSV file counts its header
    and blank lines): `rows` holds the row number of each trial, so errors
    the core finds later (an unknown flag, a value of the wrong type) name
    the row the user sees."""

    def __init__(self, trials=(), rows=()):
        super().__init__(trials)
        self.rows = list(rows)


class RegisterBatchFormat(Protocol):
    def __call__(
        self,
        extensions: Sequence[str],
        read: Callable[[Path], list[dict[str, Any]]],
        write: Callable[[Path, list[dict[str, Any]]], None] | None = None,
        *,
        name: str | None = None,
    ) -> None: ...


@hookspec
def guild_register_batch_formats(register: RegisterBatchFormat) -> None:
    """Register batch-file formats by file extension.

    Call ``register([".csv"], read, write)``. `read(path)` returns one
    dict of flag values per trial, typed as command-line values would
    be, and raises `BatchFileError` for malformed input. `write(path,
    trials)` writes trials for ``--save-trials``; omit it for read-only
    formats. An extension registered twice is an error naming both
    plugins.
    """


# ---------------------------------------------------------------------
# Remotes
# ---------------------------------------------------------------------


class Remote(Protocol):
    """A place runs are kept away from this machine: a directory, an S3
    bucket, a host over SSH. Made by a remote type's factory from the
    remote's name and config (`guild_register_remote_types`).

    Runs are named by id and moved whole; a run appears on the remote
    only once complete (copied under another name and renamed, or its
    metadata written last), so a reader never lists a half-copied run
    and an interrupted push leaves nothing that the next one trips on.

    Errors the user can act on (no credentials, no such bucket, host
    refused, no ``guild`` on the host) are raised as `GuildError` with
    one line saying so.

    :ivar name: the remote's name, as configured or given ad hoc.
    """

    name: str

    def describe(self) -> str:
        """One line for ``guild remotes``: where the remote is."""

    def status(self) -> str:
        """Check the remote is reachable; a line saying what was found.
        Raises `GuildError` saying why not."""

    def list_runs(self, deleted: bool = False) -> dict[str, dict[str, bytes]]:
        """Run id -> metadata files of every run (or, with `deleted`,
        every deleted run) on the remote: relative path -> bytes, for
        the paths `remotes.is_meta` names (``.guild/opref``, attributes,
        markers, event files). The core mirrors them locally
        (`remotes.view`) and every read command works over the mirror,
        so this is what must be cheap: a few requests, not one per run.
        """

    def push(self, run_dirs: list[Path], delete: bool, progress) -> "Transfer":
        """Copy runs (complete local run directories) to the remote.
        Only files that differ (size or time, or the type's own test)
        travel; `delete` removes the remote run's files that are not in
        the local run. A run already there and unchanged counts as
        unchanged. `progress.update(runs=, nbytes=)` as runs complete.
        Returns what moved (`remotes.Transfer`)."""

    def pull(self, run_ids: list[str], dest: Path, delete: bool, progress) -> "Transfer":
        """Copy runs from the remote into ``dest/<id>`` (the local runs
        directory), as `push` does the other way."""

    def fetch_run(self, run_id: str, dest: Path, deleted: bool = False) -> None:
        """All of a run's files into `dest` (its mirror directory), for
        commands that read more than metadata (cat, ls, diff)."""

    def write_meta(self, run_id: str, changes: dict[str, bytes | None]) -> None:
        """Write (bytes) or remove (None) metadata files of a remote run:
        what ``guild label/tag/mark/comment -r`` changed."""

    def delete(self, run_ids: list[str], permanent: bool = False) -> None:
        """Delete runs: moved to the remote's trash (restorable), or
        with `permanent` removed."""

    def restore(self, run_ids: list[str]) -> None:
        """Move deleted runs back."""

    def purge(self, run_ids: list[str]) -> None:
        """Remove deleted runs for good."""

    # Optional: only types that run runs where they are (ssh) have
    # these; ``guild run -r`` and ``guild stop -r`` say so for others.

    def start(self, run_dir: Path) -> None:
        """Push the staged run `run_dir` and start it on the remote in
        the background; return once it has started there."""

    def stop(self, run_ids: list[str], wait: bool = True) -> None:
        """Stop runs running on the remote (with `wait`, until they
        end)."""


class RegisterRemoteType(Protocol):
    def __call__(
        self, type_name: str, factory: Callable[[str, dict[str, Any]], Remote]
    ) -> None: ...


@hookspec
def guild_register_remote_types(register: RegisterRemoteType) -> None:
    """Register remote types by name.

    Call ``register("s3", factory)``. `factory(name, config)` receives the
    remote's name and its mapping from ``config.yml`` (``remotes:``) and
    returns a `Remote`. A type registered twice is an error naming both
    plugins.
    """


# ---------------------------------------------------------------------
# Summary-op (run dependency) resolvers
# ---------------------------------------------------------------------


class ResolveContext(Protocol):
    """What a resolver may use to find runs.

    :ivar runs: every run in the store, newest first.
    :ivar select: ``select(expr, runs) -> list[Run]`` applies a filter
        expression of the filter language.
    :ivar resolve: ``resolve(spec, value) -> list[Run]`` resolves another
        dependency mapping through the registered resolvers, so a kind
        may narrow what a base kind selects (``best`` ranks what
        ``operation: train`` with ``multi-run: yes`` would select).
    :ivar project_dir: the directory of the operation being run; a
        resource's relative paths are relative to it.
    :ivar cache_dir: ``$GUILD_HOME/cache``, where downloads and unpacked
        archives are kept between runs (the built-in kinds use
        ``cache_dir/resources/DIGEST/``).
    :ivar warn: ``warn(msg)`` shows ``WARNING: msg`` to the user.
    """

    runs: list["Run"]
    project_dir: Path
    cache_dir: Path

    def warn(self, msg: str) -> None: ...

    def select(self, expr: str, runs: list["Run"]) -> list["Run"]: ...

    def resolve(self, spec: dict[str, Any], value: str | None) -> list["Run"]: ...


class RegisterResolver(Protocol):
    def __call__(
        self,
        kind: str,
        resolve: Callable[[dict[str, Any], str | None, ResolveContext], list["Run"]],
    ) -> None: ...


@hookspec
def guild_register_resolvers(register: RegisterResolver) -> None:
    """Register resolvers that turn a run-dependency spec into runs.

    Call ``register(kind, resolve)``. A dependency in guild.yml's
    ``requires:`` is handled by the resolver whose `kind` is one of its
    keys: a plugin kind (``best``) before the base kinds ``multi-run``,
    ``run`` and ``operation``. A plugin kind selects many runs (linked by
    id, listed in ``guild-runs.json``) unless the dependency says
    ``multi-run: no``.
    ``resolve(dep, value, ctx)`` receives the dependency mapping, the
    value given on the command line for it (``None`` when not given),
    and a `ResolveContext`; it returns the selected runs (one for a
    single-run dependency) or raises ``guild_core.errors.GuildError``
    with a message for the user. A kind registered twice is an error
    naming both plugins.

    A resolver of files (a resource: the built-in ``file``, ``url``,
    ``config``, ``module``) returns a ``guild_core.deps.Resolution``
    instead: its ``files`` are ``SourceFile(path, name, generate=None)``
    entries, an existing file or directory to link or copy, placed by
    the core at the basename of `name` under ``target-path`` after
    ``rename`` (``preserve-path`` keeps `name`), or, with
    ``generate(flags, op) -> bytes``, a file written from the new run's
    flags and op attribute. ``guild_core.deps.select_specs``,
    ``select_paths``, ``tree_paths`` and ``root_paths`` apply
    ``select``/``select-min``/``select-max`` as the built-ins do. The
    core applies ``optional``, ``warn-if-empty`` and ``fail-if-empty``.
    Everything is resolved before the run exists.
    """


# ---------------------------------------------------------------------
# Filter language extensions
# ---------------------------------------------------------------------


class FilterRegistry(Protocol):
    def value(self, name: str, fn: Callable[..., Any]) -> None:
        """Add a value name. ``fn(run)`` gives its value for a run, or
        ``None`` when undefined. A name may hold ``*`` wildcards
        (``scalar:*.min``): then ``fn(run, *parts)`` also receives the
        text each ``*`` matched (``"loss"`` for ``scalar:loss.min``).
        Plugin names are looked up before the run's own attributes,
        flags and scalars, so a plugin may give ``started`` a richer
        value; ``attr:``/``flag:``/``scalar:`` names it does not
        register still reach the run's own."""

    def operator(
        self,
        symbol: str,
        fn: Callable[[Any, Any], bool],
        check: Callable[[Any], None] | None = None,
    ) -> None:
        """Add a binary operator, written ``NAME SYMBOL VALUE``: a
        symbol (``~``) or a word (``matches``, case-insensitive).
        ``fn(value, target)`` gets the run's value (``None`` when
        undefined) and the literal target (str, int, float, bool or a
        list); a TypeError or ValueError counts as no match.
        ``check(target)``, if given, is called once when the expression
        is parsed, before any run is read: raise
        ``guild_core.errors.GuildError`` there for a target that can
        never work (an invalid pattern), so the user hears of it even
        when no run reaches the test."""


@hookspec
def guild_register_filter_extensions(register: FilterRegistry) -> None:
    """Add value names and operators to the filter language used by
    ``-F/--filter`` and ``select:`` (``guild_core.filterexpr``). A name
    or operator registered twice is an error naming both plugins."""


# ---------------------------------------------------------------------
# Run lifecycle
# ---------------------------------------------------------------------


@hookspec
def guild_run_starting(run: "Run") -> None:
    """Called after a run's directory and attributes are written and just
    before its process starts. Must not block; exceptions are reported
    and do not stop the run."""


@hookspec
def guild_run_stopped(run: "Run") -> None:
    """Called after a run's process has exited and its exit status, stop
    time and scalars are recorded. Exceptions are reported and ignored."""
