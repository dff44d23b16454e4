"""Write a run's config file with its flag values, then run the script.

Usage (guild runs this in the run directory, ``FLAGS_DEST`` set to
``config:FILE``)::

    python -um guild_flags_config.launch SCRIPT [ARG ...] [--name value ...]

The run's copy of FILE (the project's, when the source snapshot left it
out) gets each ``--name value`` at its dotted name, typed as a
command-line value is, in the file's own format; the script then runs
as ``python SCRIPT ARG ...`` would, without the flag arguments.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, str]]:
    script, rest = argv[0], argv[1:]
    extra: list[str] = []
    while rest and not rest[0].startswith("--"):
        extra.append(rest.pop(0))
    flags: dict[str, str] = {}
    while rest:
        name = rest.pop(0)[2:]
        if "=" in name:
            name, val = name.split("=", 1)
        else:
            val = rest.pop(0) if rest else ""
        flags[name] = val
    return script, extra, flags


def write(path: Path, data: dict[str, Any]) -> None:
    suffix = path.suffix.lower()
    if suffix == ".json":
        import json

        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    elif suffix in (".ini", ".cfg"):
        import configparser
        import io

        from guild_core.flags import encode_value

        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str
        for section, values in data.items():
            if isinstance(values, dict):
                parser[section] = {k: encode_value(v) for k, v in values.items()}
        buf = io.StringIO()
        parser.write(buf)
        text = buf.getvalue()
    else:
        import yaml

        text = yaml.safe_dump(data, default_flow_style=False, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str]) -> None:
    from guild_core.flags import decode_auto, set_dotted

    from . import load

    dest = os.environ.get("FLAGS_DEST", "")
    if not dest.startswith("config:"):
        sys.stderr.write(f"{__name__}: FLAGS_DEST is {dest!r}, expected config:FILE\n")
        sys.exit(2)
    rel = dest[len("config:"):]
    script, extra, flags = parse(argv)
    path = Path(rel)
    source = path if path.exists() else Path(os.environ.get("PROJECT_DIR", ".")) / rel
    data = load(path.suffix, source.read_text() if source.exists() else "", str(source))
    for name, raw in flags.items():
        set_dotted(data, name, decode_auto(raw))
    write(path, data)
    sys.argv = [script, *extra]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
