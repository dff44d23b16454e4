"""The built-in batch-file plugins: ``csv``, ``json`` and ``yaml``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import guild_batch_csv
import guild_batch_json
import guild_batch_yaml
from guild_core.errors import GuildError
from guild_core.hookspecs import BatchFileError
from guild_core.plugins import get_plugin_manager
from guild_core.registry import Registry

PLUGINS = {"csv": guild_batch_csv, "json": guild_batch_json, "yaml": guild_batch_yaml}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error(read, path: Path) -> BatchFileError:
    with pytest.raises(BatchFileError) as info:
        read(path)
    return info.value


def builtins_registry() -> Registry:
    pm = get_plugin_manager(load_entry_points=False)
    for name, module in PLUGINS.items():
        pm.register(module, name=name)
    return Registry(pm)


# ---------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------


def test_csv_reads_typed_values(tmp_path):
    path = write(tmp_path, "t.csv", """\
        lr, epochs ,name,layers,flag
        0.1,2,a,"[1, 2]",yes
        1e-3,10,b c,[],no

        ,3,,,
    """)
    assert guild_batch_csv.read(path) == [
        {"lr": 0.1, "epochs": 2, "name": "a", "layers": [1, 2], "flag": True},
        {"lr": 0.001, "epochs": 10, "name": "b c", "layers": [], "flag": False},
        {"epochs": 3},
    ]


def test_csv_flag_functions_stay_strings(tmp_path):
    path = write(tmp_path, "t.csv", 'x,y\n"uniform[0:1]","[1:10]"\n')
    assert guild_batch_csv.read(path) == [{"x": "uniform[0:1]", "y": "[1:10]"}]


def test_csv_header_only_is_no_trials(tmp_path):
    assert guild_batch_csv.read(write(tmp_path, "t.csv", "x,y\n")) == []


def test_csv_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfx\n1\n")
    assert guild_batch_csv.read(path) == [{"x": 1}]


def test_csv_ragged_row(tmp_path):
    path = write(tmp_path, "t.csv", "x,y\n1,2\n1,2,3\n")
    e = error(guild_batch_csv.read, path)
    assert str(e) == f"{path}, row 3: expected 2 values, got 3"
    assert (e.path, e.row, e.msg) == (str(path), 3, "expected 2 values, got 3")


def test_csv_rows_count_blank_lines(tmp_path):
    path = write(tmp_path, "t.csv", "x,y\n\n1,2\n\n1\n")
    assert str(error(guild_batch_csv.read, path)) == f"{path}, row 5: expected 2 values, got 1"


def test_csv_unterminated_quote(tmp_path):
    path = write(tmp_path, "t.csv", 'x,y\n1,2\n3,"4\n5,6\n')
    assert str(error(guild_batch_csv.read, path)) == f"{path}, row 3: unterminated quote"


def test_csv_text_after_closing_quote(tmp_path):
    path = write(tmp_path, "t.csv", 'x,y\n1,"2"3\n')
    assert str(error(guild_batch_csv.read, path)) == (
        f"{path}, row 2: invalid CSV: ',' expected after '\"'"
    )


@pytest.mark.parametrize("text", ["", "\n\n", "  \n"])
def test_csv_no_header(tmp_path, text):
    path = write(tmp_path, "t.csv", text)
    e = error(guild_batch_csv.read, path)
    assert str(e) == f"{path}: no header row"
    assert e.row is None


def test_csv_duplicate_header_name(tmp_path):
    path = write(tmp_path, "t.csv", "x,y, x\n1,2,3\n")
    assert str(error(guild_batch_csv.read, path)) == f"{path}, row 1: duplicate flag name 'x' in header"


def test_csv_empty_header_name(tmp_path):
    path = write(tmp_path, "t.csv", "\nx, ,y\n1,2,3\n")
    assert str(error(guild_batch_csv.read, path)) == f"{path}, row 2: empty flag name in header (column 2)"


def test_csv_writer(tmp_path):
    path = tmp_path / "t.csv"
    guild_batch_csv.write(path, [{"x": 0.1, "b": True}, {"y": [1, "a,b"], "x": None}, {}])
    assert path.read_text() == 'x,b,y\n0.1,yes,\nnull,,"[1, \'a,b\']"\n,,\n'


# ---------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------


def test_json_reads_json_types(tmp_path):
    path = write(tmp_path, "t.json", """\
        [
          {"lr": 0.1, "epochs": 2, "name": "2", "on": true, "layers": [1, 2], "x": null},
          {}
        ]
    """)
    assert guild_batch_json.read(path) == [
        {"lr": 0.1, "epochs": 2, "name": "2", "on": True, "layers": [1, 2], "x": None},
        {},
    ]


@pytest.mark.parametrize(
    "text, got", [('{"x": 1}', "dict"), ('"x"', "str"), ("3", "int"), ("null", "null")]
)
def test_json_not_a_list(tmp_path, text, got):
    path = write(tmp_path, "t.json", text)
    e = error(guild_batch_json.read, path)
    assert str(e) == f"{path}: expected a list of objects, got {got}"
    assert e.row is None


def test_json_element_not_an_object(tmp_path):
    path = write(tmp_path, "t.json", '[{"x": 1}, {"x": 2}, [1, 2]]')
    e = error(guild_batch_json.read, path)
    assert str(e) == f"{path}, row 3: expected an object, got list"
    assert e.row == 3


def test_json_invalid(tmp_path):
    path = write(tmp_path, "t.json", '[\n  {"x": 1},\n  {"x": 2}\n  {"x": 3}\n]\n')
    assert str(error(guild_batch_json.read, path)) == (
        f"{path}: invalid JSON at line 4: Expecting ',' delimiter"
    )


def test_json_empty_file(tmp_path):
    path = write(tmp_path, "t.json", "")
    assert str(error(guild_batch_json.read, path)) == f"{path}: invalid JSON at line 1: Expecting value"


def test_json_writer(tmp_path):
    path = tmp_path / "t.json"
    guild_batch_json.write(path, [{"x": 1}])
    assert path.read_text() == '[\n  {\n    "x": 1\n  }\n]\n'


# ---------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------


def test_yaml_reads_yaml_types(tmp_path):
    path = write(tmp_path, "t.yml", """\
        - lr: 0.1
          epochs: 2
          name: a
          flag: yes
          layers: [1, 2]
        - name: '2'
          x: null
        - {}
    """)
    assert guild_batch_yaml.read(path) == [
        {"lr": 0.1, "epochs": 2, "name": "a", "flag": True, "layers": [1, 2]},
        {"name": "2", "x": None},
        {},
    ]


@pytest.mark.parametrize("text, got", [("x: 1\n", "dict"), ("hello\n", "str"), ("null\n", "null")])
def test_yaml_not_a_list(tmp_path, text, got):
    path = write(tmp_path, "t.yaml", text)
    assert str(error(guild_batch_yaml.read, path)) == f"{path}: expected a list of mappings, got {got}"


def test_yaml_empty_file(tmp_path):
    path = write(tmp_path, "t.yaml", "\n# nothing\n")
    assert str(error(guild_batch_yaml.read, path)) == (
        f"{path}: expected a list of mappings, got an empty file"
    )


def test_yaml_element_not_a_mapping(tmp_path):
    path = write(tmp_path, "t.yml", "- x: 1\n- [1, 2]\n")
    e = error(guild_batch_yaml.read, path)
    assert str(e) == f"{path}, row 2: expected a mapping, got list"
    assert e.row == 2


def test_yaml_non_string_key(tmp_path):
    path = write(tmp_path, "t.yml", "- x: 1\n- 3: a\n")
    assert str(error(guild_batch_yaml.read, path)) == (
        f"{path}, row 2: flag names must be strings, got int 3"
    )


def test_yaml_boolean_key(tmp_path):
    # YAML 1.1 reads an unquoted ``on`` or ``yes`` key as a boolean.
    path = write(tmp_path, "t.yml", "- on: 1\n")
    assert str(error(guild_batch_yaml.read, path)) == (
        f"{path}, row 1: flag names must be strings, got bool True"
    )


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "t.yml", "- x: 1\n- y: 2\n- z: [1, 2\n")
    msg = str(error(guild_batch_yaml.read, path))
    assert msg.startswith(f"{path}: invalid YAML at line 4: "), msg


def test_yaml_syntax_error_line(tmp_path):
    path = write(tmp_path, "t.yml", "- x: 1\n- y: 2\n  z: 3\n w: 4\n")
    assert str(error(guild_batch_yaml.read, path)) == (
        f"{path}: invalid YAML at line 4: expected <block end>, but found '<block mapping start>'"
    )


def test_yaml_writer(tmp_path):
    path = tmp_path / "t.yaml"
    guild_batch_yaml.write(path, [{"z": 1, "a": [1, 2]}])
    assert path.read_text() == "- z: 1\n  a:\n  - 1\n  - 2\n"


# ---------------------------------------------------------------------
# Round trips and registration
# ---------------------------------------------------------------------

TRIALS = [
    {"lr": 0.1, "epochs": 2, "name": "a b", "on": True, "layers": [1, 2, 3]},
    {"lr": 1e-05, "epochs": 10, "off": False},
    {"name": "x,y", "nothing": None, "words": ["a", "b c"]},
    {"neg": -3, "f": 2.0},
]


@pytest.mark.parametrize("ext", [".csv", ".json", ".yml", ".yaml"])
def test_round_trip(tmp_path, ext):
    fmt = builtins_registry().batch_format(f"trials{ext}")
    path = tmp_path / f"trials{ext}"
    fmt.write(path, TRIALS)
    assert fmt.read(path) == TRIALS
    assert all(type(v) is type(TRIALS[i][k]) for i, t in enumerate(fmt.read(path)) for k, v in t.items())


@pytest.mark.parametrize(
    "path, name, plugin",
    [
        ("x.CSV", "csv", "csv"),
        ("dir/x.csv", "csv", "csv"),
        ("x.Json", "json", "json"),
        ("x.yml", "yaml", "yaml"),
        ("x.YAML", "yaml", "yaml"),
    ],
)
def test_registry_resolves_by_extension(path, name, plugin):
    fmt = builtins_registry().batch_format(path)
    assert (fmt.name, fmt.plugin) == (name, plugin)
    assert fmt.write is not None


def test_registry_modules_read_and_write():
    formats = builtins_registry().batch_formats()
    assert formats[".csv"].read is guild_batch_csv.read
    assert formats[".json"].write is guild_batch_json.write
    assert formats[".yml"] is formats[".yaml"]
    assert formats[".yaml"].extensions == (".yml", ".yaml")


def test_registry_unknown_extension():
    with pytest.raises(GuildError) as info:
        builtins_registry().batch_format("trials.tsv")
    assert str(info.value) == (
        "trials.tsv: unsupported batch file extension '.tsv' "
        "(supported: .csv, .json, .yaml, .yml)"
    )


def test_entry_points_have_all_three(guild_home):
    pm = get_plugin_manager()
    for name, module in PLUGINS.items():
        assert pm.get_plugin(name) is module
    assert set(Registry(pm).batch_formats()) == {".csv", ".json", ".yml", ".yaml"}


def test_plugins_import_nothing_heavy():
    code = (
        "import sys, guild_batch_csv, guild_batch_json, guild_batch_yaml; "
        "print(sorted(m for m in ('csv', 'json', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
