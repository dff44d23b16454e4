"""`guild view`: the server started as a user starts it (`guild view -n
--port 0` in a subprocess) over runs made by running real scripts, and
its JSON API tested over HTTP."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import wait_for

from guild_core import tfevents

TRAIN = """\
import os
x = 1
print("loss: %f" % (1.0 / x))
print("acc: %f" % (x / 10.0))
with open("result.txt", "w") as f:
    f.write("x is %s\\n" % x)
with open("table.csv", "w") as f:
    f.write("a,b\\n1,2\\n")
with open("plot.png", "wb") as f:
    f.write(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"))
with open("page.html", "w") as f:
    f.write("<script>alert(1)</script>")
os.symlink(os.path.join(os.environ["PROJECT"], "secret.txt"), "leak.txt")
"""

SLOW = """\
import os, time
print("start", flush=True)
while not os.path.exists(os.path.join(os.environ["PROJECT"], "go")):
    time.sleep(0.05)
print("end", flush=True)
"""

BIG_N = 200_000
BIG_MIN_STEP, BIG_MAX_STEP = 123_457, 54_321


def _guild(home: Path, cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # As the `sh` fixture runs guild: a subprocess of this Python.
    env = dict(os.environ, GUILD_HOME=str(home), PROJECT=str(cwd))
    return subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _start_view(home: Path, cwd: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, GUILD_HOME=str(home), PROJECT=str(cwd))
    proc = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", "view", "-n", "--port", "0", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    m = re.match(r"Running Guild View at (http://\S+) \(Type Ctrl-C to quit\)$", line.strip())
    if not m:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A home with runs of a real script (one with x=2, a batch of x=1
    and x=4, one still running, one with 200,000 points of a scalar)
    and `guild view` serving it; everything stopped at the end."""
    root = tmp_path_factory.mktemp("view")
    home, project = root / "home", root / "project"
    home.mkdir()
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "slow.py").write_text(SLOW)
    (project / "secret.txt").write_text("secret\n")
    for args in (["train.py", "x=2"], ["train.py", "x=[1,4]"]):
        out = _guild(home, project, "run", *args, "-y")
        assert out.returncode == 0, out.stderr
    out = _guild(home, project, "run", "slow.py", "--background", "-y")
    assert out.returncode == 0, out.stderr
    listed = json.loads(_guild(home, project, "runs", "--json").stdout)
    by_label = {r["label"]: r["id"] for r in listed}
    ids = {
        "x2": by_label["x=2"], "x1": by_label["x=1"], "x4": by_label["x=4"],
        "batch": next(r["id"] for r in listed if r["operation"] == "train.py+"),
        "slow": next(r["id"] for r in listed if r["operation"] == "slow.py"),
    }
    # Many points, written as a run's logging writes them.
    writer = tfevents.EventWriter(home / "runs" / ids["x2"] / ".guild")
    for i in range(BIG_N):
        val = math.sin(i / 1000)
        if i == BIG_MIN_STEP:
            val = -5.0
        elif i == BIG_MAX_STEP:
            val = 9.0
        writer.add_scalar("big", val, i)
    writer.close()
    proc, url = _start_view(home, project)
    try:
        yield {"home": home, "project": project, "url": url, "ids": ids, "proc": proc}
    finally:
        _stop(proc)
        (project / "go").touch()
        for lock in home.glob("runs/*/.guild/LOCK"):
            try:
                os.kill(int(lock.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def request(url: str, method: str = "GET", body=None, headers=None):
    """(status, headers, bytes) of an HTTP request; errors too."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(env, path: str, expect: int = 200):
    status, _h, body = request(env["url"] + path)
    assert status == expect, body
    return json.loads(body)


def token(env) -> str:
    status, _h, body = request(env["url"] + "/")
    assert status == 200
    return re.search(rb'name="guild-token" content="([^"]+)"', body).group(1).decode()


def post(env, path: str, body, tok: str | None = None, headers=None):
    h = dict(headers or {})
    if tok is not None:
        h["X-Guild-Token"] = tok
    return request(env["url"] + path, "POST", body, h)


# -- the listing -------------------------------------------------------


def test_binds_loopback_by_default(env):
    host, port = re.match(r"http://([^:]+):(\d+)$", env["url"]).groups()
    assert host == "127.0.0.1"
    other = _other_address()
    if other:
        with pytest.raises(OSError):
            socket.create_connection((other, int(port)), timeout=2).close()


def _other_address() -> str | None:
    # This machine's address on its outward interface, if it has one.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_runs_listing_has_every_column(env):
    data = get_json(env, "/api/runs")
    assert data["total"] == 5
    ids = env["ids"]
    rows = {r["id"]: r for r in data["runs"]}
    assert set(rows) == set(ids.values())
    row = rows[ids["x2"]]
    assert row["short_id"] == ids["x2"][:8]
    assert row["operation"] == "train.py"
    assert row["status"] == "completed"
    assert row["label"] == "x=2"
    assert row["tags"] == [] and row["marked"] is False
    assert row["flags"] == {"x": 2}
    assert row["scalars"]["loss"] == 0.5
    assert isinstance(row["started"], int) and row["stopped"] >= row["started"]
    assert rows[ids["batch"]]["batch"] is True
    assert rows[ids["slow"]]["status"] == "running"
    # Newest first, as `guild runs` lists them.
    listed = json.loads(_guild(env["home"], env["project"], "runs", "--json").stdout)
    assert [r["id"] for r in data["runs"]] == [r["id"] for r in listed]


def test_paging(env):
    whole = [r["id"] for r in get_json(env, "/api/runs")["runs"]]
    first = get_json(env, "/api/runs?limit=2")
    second = get_json(env, "/api/runs?limit=2&offset=2")
    last = get_json(env, "/api/runs?limit=2&offset=4")
    assert first["total"] == second["total"] == last["total"] == 5
    assert [r["id"] for r in first["runs"] + second["runs"] + last["runs"]] == whole
    assert len(last["runs"]) == 1
    assert get_json(env, "/api/runs?offset=10")["runs"] == []
    assert "error" in get_json(env, "/api/runs?limit=x", 400)


def test_filters_narrow_and_a_bad_filter_is_400(env):
    ids = env["ids"]
    data = get_json(env, "/api/runs?filter=" + urllib.request.quote("loss < 0.6"))
    assert {r["id"] for r in data["runs"]} == {ids["x2"], ids["x4"]}
    assert data["total"] == 2
    data = get_json(env, "/api/runs?filter=x%3D1")
    assert [r["id"] for r in data["runs"]] == [ids["x1"]]
    data = get_json(env, "/api/runs?status=running")
    assert [r["id"] for r in data["runs"]] == [ids["slow"]]
    data = get_json(env, "/api/runs?operation=slow")
    assert [r["id"] for r in data["runs"]] == [ids["slow"]]
    data = get_json(env, "/api/runs?label=x%3D4")
    assert [r["id"] for r in data["runs"]] == [ids["x4"]]
    err = get_json(env, "/api/runs?filter=" + urllib.request.quote("loss <"), 400)
    assert list(err) == ["error"] and "\n" not in err["error"] and "filter" in err["error"]
    assert "error" in get_json(env, "/api/runs?status=bogus", 400)


def test_sorting(env):
    newest = [r["id"] for r in get_json(env, "/api/runs")["runs"]]
    oldest = [r["id"] for r in get_json(env, "/api/runs?sort=started&desc=0")["runs"]]
    assert oldest == newest[::-1]
    labels = [r["label"] for r in get_json(env, "/api/runs?sort=label&desc=0")["runs"]]
    assert labels == sorted(labels)
    labels = [r["label"] for r in get_json(env, "/api/runs?sort=label&desc=1")["runs"]]
    assert labels == sorted(labels, reverse=True)
    assert "error" in get_json(env, "/api/runs?sort=nope", 400)


# -- one run -----------------------------------------------------------


def test_run_detail(env):
    ids = env["ids"]
    data = get_json(env, f"/api/runs/{ids['x2']}")
    assert data["id"] == ids["x2"] and data["status"] == "completed"
    assert data["flags"] == {"x": 2}
    assert data["scalars"]["loss"] == 0.5
    assert data["exit_status"] == 0
    assert data["attributes"]["id"] == ids["x2"]
    assert isinstance(data["deps"], dict)
    paths = {f["path"] for f in data["files"]}
    assert {"result.txt", "table.csv", "plot.png", "train.py"} <= paths
    assert not any(p.startswith(".guild") for p in paths)
    # By a unique prefix too.
    assert get_json(env, f"/api/runs/{ids['x2'][:8]}")["id"] == ids["x2"]
    assert "error" in get_json(env, "/api/runs/" + "0" * 32, 404)


def test_batch_trials_and_best_so_far(env):
    ids = env["ids"]
    data = get_json(env, f"/api/runs/{ids['batch']}")
    trials = data["trials"]
    assert trials["objective"] == "loss" and trials["maximize"] is False
    assert [t["id"] for t in trials["trials"]] == [ids["x1"], ids["x4"]]
    assert [t["objective"] for t in trials["trials"]] == [1.0, 0.25]
    assert [t["best"] for t in trials["trials"]] == [1.0, 0.25]
    assert trials["best"] == 0.25
    assert "trials" not in get_json(env, f"/api/runs/{ids['x2']}")


def test_output_tail_with_offset(env):
    run_id = env["ids"]["slow"]
    first = wait_for(
        lambda: (d := get_json(env, f"/api/runs/{run_id}/output")) and "start" in d["text"] and d,
        what="slow.py's first line",
    )
    assert first["running"] is True
    assert first["text"] == "start\n" and first["next_offset"] == 6
    (env["project"] / "go").touch()
    wait_for(lambda: get_json(env, f"/api/runs/{run_id}")["status"] == "completed", what="slow.py's end")
    rest = get_json(env, f"/api/runs/{run_id}/output?offset={first['next_offset']}")
    assert rest["text"] == "end\n" and rest["running"] is False
    assert rest["offset"] == 6 and rest["next_offset"] == 10
    done = get_json(env, f"/api/runs/{run_id}/output?offset=10")
    assert done["text"] == "" and done["next_offset"] == 10
    assert "error" in get_json(env, f"/api/runs/{run_id}/output?offset=-1", 400)


# -- files -------------------------------------------------------------


def test_files_text_image_csv(env):
    base = f"{env['url']}/api/runs/{env['ids']['x2']}/files/"
    status, headers, body = request(base + "result.txt")
    assert status == 200 and body == b"x is 2\n"
    assert headers["Content-Type"].startswith("text/plain")
    status, headers, body = request(base + "plot.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    status, headers, body = request(base + "table.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv") and body == b"a,b\n1,2\n"
    # HTML in a run is never rendered as this site's page.
    status, headers, body = request(base + "page.html")
    assert status == 200 and not headers["Content-Type"].startswith("text/html")
    assert "sandbox" in headers["Content-Security-Policy"]
    assert request(base + "missing.txt")[0] == 404


@pytest.mark.parametrize(
    "path",
    ["../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd",
     "leak.txt", "..%2Fsecret.txt"],
)
def test_files_outside_the_run_are_refused(env, path):
    status, _h, body = request(f"{env['url']}/api/runs/{env['ids']['x2']}/files/{path}")
    assert status == 403, body
    assert b"secret\n" not in body and b"root:" not in body


def test_a_link_to_a_sibling_run_is_followed(env):
    ids = env["ids"]
    status, _h, body = request(f"{env['url']}/api/runs/{ids['batch']}/files/{ids['x4']}/result.txt")
    assert status == 200 and body == b"x is 4\n"


# -- scalars -----------------------------------------------------------


def test_scalars_downsampled_with_min_and_max_kept(env):
    run_id = env["ids"]["x2"]
    t0 = time.perf_counter()
    data = get_json(env, f"/api/scalars?runs={run_id}&tag=big&max_points=1000")
    elapsed = time.perf_counter() - t0
    assert "big" in data["tags"] and "loss" in data["tags"]
    (entry,) = data["runs"]
    assert entry["run"] == run_id and entry["count"] == BIG_N
    points = entry["points"]
    assert len(points) <= 1000
    steps = [p[0] for p in points]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == BIG_N - 1
    assert [BIG_MIN_STEP, -5.0] in points and [BIG_MAX_STEP, 9.0] in points
    assert elapsed < 10, elapsed
    smooth = get_json(env, f"/api/scalars?runs={run_id}&tag=big&max_points=100&smoothing=0.6")
    (entry,) = smooth["runs"]
    assert len(entry["points"]) <= 100 and len(entry["smoothed"]) == len(entry["points"])
    assert entry["smoothed"][0] == pytest.approx(entry["points"][0][1])


def test_scalars_of_several_runs(env):
    ids = env["ids"]
    data = get_json(env, f"/api/scalars?runs={ids['x1']},{ids['x4']}&tag=loss")
    assert [e["run"] for e in data["runs"]] == [ids["x1"], ids["x4"]]
    assert [e["points"] for e in data["runs"]] == [[[0, 1.0]], [[0, 0.25]]]
    assert "error" in get_json(env, "/api/scalars?tag=loss", 400)


# -- compare -----------------------------------------------------------


def test_compare_is_guild_compare(env):
    data = get_json(env, "/api/compare?filter=" + urllib.request.quote("loss < 0.6"))
    ours = json.loads(_guild(env["home"], env["project"], "compare", "--json", "-F", "loss < 0.6").stdout)
    assert data["columns"][:6] == ["run", "operation", "started", "time", "status", "label"]
    assert [dict(zip(data["columns"], row)) for row in data["rows"]] == ours
    ids = env["ids"]
    picked = get_json(env, f"/api/compare?runs={ids['x1']}")
    assert picked["runs"] == [ids["x1"]]


# -- changes -----------------------------------------------------------


def _attr(env, run_id: str, name: str, deleted: bool = False) -> str | None:
    root = env["home"] / ("trash/runs" if deleted else "runs")
    path = root / run_id / ".guild" / "attrs" / name
    return path.read_text() if path.exists() else None


def test_changes_need_the_token(env):
    run_id = env["ids"]["x1"]
    for tok in (None, "wrong"):
        for path, body in (("label", {"label": "evil"}), ("tags", {"add": ["evil"]}), ("mark", {"marked": True})):
            status, _h, resp = post(env, f"/api/runs/{run_id}/{path}", body, tok)
            assert status == 403, resp
        status, _h, _b = post(env, "/api/runs/delete", {"runs": [run_id]}, tok)
        assert status == 403
    assert _attr(env, run_id, "label") == "x=1\n"
    assert _attr(env, run_id, "tags") is None and _attr(env, run_id, "marked") is None
    assert (env["home"] / "runs" / run_id).is_dir()
    # The right token from another site's page: refused.
    status, _h, _b = post(env, f"/api/runs/{run_id}/label", {"label": "evil"}, token(env),
                          {"Origin": "http://evil.example"})
    assert status == 403
    assert _attr(env, run_id, "label") == "x=1\n"


def test_label_tags_mark_with_the_token(env):
    tok = token(env)
    run_id = env["ids"]["x4"]
    status, _h, body = post(env, f"/api/runs/{run_id}/label", {"label": "best ${x}"}, tok)
    assert status == 200, body
    assert json.loads(body)["label"] == "best 4"
    assert _attr(env, run_id, "label") == "best 4\n"
    status, _h, body = post(env, f"/api/runs/{run_id}/tags", {"add": ["good", "keep"]}, tok)
    assert status == 200 and json.loads(body)["tags"] == ["good", "keep"]
    status, _h, body = post(env, f"/api/runs/{run_id}/tags", {"remove": ["keep"]}, tok)
    assert json.loads(body)["tags"] == ["good"]
    runs = json.loads(_guild(env["home"], env["project"], "runs", "--json").stdout)
    (row,) = [r for r in runs if r["id"] == run_id]
    assert row["tags"] == ["good"] and row["label"] == "best 4"
    status, _h, body = post(env, f"/api/runs/{run_id}/mark", {"marked": True}, tok)
    assert status == 200 and json.loads(body)["marked"] is True
    assert _attr(env, run_id, "marked") == "true\n"
    assert get_json(env, "/api/runs?marked=1")["runs"][0]["id"] == run_id
    status, _h, body = post(env, f"/api/runs/{run_id}/mark", {"marked": False}, tok)
    assert json.loads(body)["marked"] is False and _attr(env, run_id, "marked") is None
    status, _h, body = post(env, f"/api/runs/{run_id}/label", {"label": ""}, tok)
    assert _attr(env, run_id, "label") is None
    status, _h, body = post(env, f"/api/runs/{run_id}/label", {"label": 3}, tok)
    assert status == 400


def test_delete_and_restore_with_the_token(env):
    tok = token(env)
    run_id = env["ids"]["x1"]
    status, _h, body = post(env, "/api/runs/delete", {"runs": [run_id]}, tok)
    assert status == 200 and json.loads(body)["done"] == [run_id]
    assert not (env["home"] / "runs" / run_id).exists()
    assert (env["home"] / "trash" / "runs" / run_id).is_dir()
    assert get_json(env, "/api/runs")["total"] == 4
    for tok_ in (None, "wrong"):
        assert post(env, "/api/runs/restore", {"runs": [run_id]}, tok_)[0] == 403
    assert (env["home"] / "trash" / "runs" / run_id).is_dir()
    status, _h, body = post(env, "/api/runs/restore", {"runs": [run_id]}, tok)
    assert status == 200 and json.loads(body)["done"] == [run_id]
    assert (env["home"] / "runs" / run_id).is_dir()
    assert get_json(env, "/api/runs")["total"] == 5
    assert post(env, "/api/runs/delete", {"runs": []}, tok)[0] == 400


# -- the server ----------------------------------------------------------


def test_a_foreign_host_is_refused(env):
    port = env["url"].rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{int(port) + 1}"):
        status, _h, body = request(env["url"] + "/api/runs", headers={"Host": host})
        assert status == 403, host
        assert b"runs" not in body
    assert request(env["url"] + "/", headers={"Host": f"localhost:{port}"})[0] == 200


def test_the_page_and_its_static_files(env):
    status, headers, body = request(env["url"] + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # Its own scripts only: none inline, none from elsewhere.
    assert "script-src 'self';" in headers["Content-Security-Policy"]
    scripts = re.findall(rb'<script src="([^"]+)"></script>', body)
    assert scripts == [b"/static/uplot.min.js", b"/static/charts.js", b"/static/app.js"]
    assert b"<script>" not in body
    for src in scripts:
        status, headers, js = request(env["url"] + src.decode())
        assert status == 200 and headers["Content-Type"].startswith("text/javascript"), src
        assert len(js) > 1000
    app = request(env["url"] + "/static/app.js")[2]
    assert b"/api/runs" in app and b"X-Guild-Token" in app
    assert request(env["url"] + "/static/app.css")[1]["Content-Type"].startswith("text/css")
    assert request(env["url"] + "/favicon.ico")[1]["Content-Type"] == "image/svg+xml"


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py", "/static/server.py",
                                  "/static/index.html", "/static/.hidden.js", "/static/nope.js",
                                  "/static/..%2fdata.py"])
def test_static_serves_only_the_pages_files(env, path):
    status, _h, body = request(env["url"] + path)
    assert status == 404, path
    assert b"import" not in body


def test_runs_by_id_deleted_and_sorted_by_flag_or_scalar(env):
    ids = env["ids"]
    got = get_json(env, f"/api/runs?runs={ids['x1'][:8]},{ids['x4']}&sort=started&desc=0")
    assert [r["id"] for r in got["runs"]] == [ids["x1"], ids["x4"]] and got["total"] == 2
    by_flag = get_json(env, "/api/runs?sort=flag:x&desc=1&filter=x")["runs"]
    assert [r["flags"]["x"] for r in by_flag] == [4, 2, 1]
    by_loss = [r["id"] for r in get_json(env, "/api/runs?sort=scalar:loss&desc=0")["runs"]]
    # Lowest loss first (x=4: 0.25), runs without a loss last.
    assert by_loss[:3] == [ids["x4"], ids["x2"], ids["x1"]]
    assert set(by_loss[3:]) == {ids["batch"], ids["slow"]}
    assert get_json(env, "/api/runs?deleted=1")["total"] == 0
    assert "error" in get_json(env, "/api/runs?runs=ffffffff", 404)


def test_unknown_paths_are_404(env):
    assert request(env["url"] + "/api/nothing")[0] == 404
    assert post(env, "/api/nothing", {}, token(env))[0] == 404


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_it_with_status_0(tmp_path, sig):
    home = tmp_path / "home"
    home.mkdir()
    proc, url = _start_view(home, tmp_path)
    try:
        assert request(url + "/api/runs")[0] == 200
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        _stop(proc)


def test_bad_options_are_one_line(sh):
    out = sh("view", "-n", "-F", "loss <")
    assert out.exit_code != 0 and out.stderr.startswith("guild: ") and out.stderr.count("\n") <= 2
    out = sh("view", "-n", "-Fs", "not a range")
    assert out.exit_code != 0 and "RANGE" in out.stderr
    assert sh("view", "--help").exit_code == 0


def test_host_option_and_request_log(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc, url = _start_view(home, tmp_path, "-h", "localhost", "--logging")
    try:
        assert url.startswith("http://localhost:")
        assert request(url + "/api/runs")[0] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "GET /api/runs" in proc.stderr.read()
    finally:
        _stop(proc)
