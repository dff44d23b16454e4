"""Built-in plugin ``globals``: flags from a script's module-level variables.

The hooks are in `guild_flags_globals.plugin` (the entry point); this
package module stays empty because `guild_flags_globals.launch` runs at
every globals run's start-up and must not import pluggy.
"""
