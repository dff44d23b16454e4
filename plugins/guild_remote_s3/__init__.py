"""Built-in plugin ``s3``: a remote that is an S3 bucket (or any store
speaking the S3 API: MinIO, Ceph, moto).

``{type: s3, bucket: B, root: R, region: ..., endpoint-url: ...,
description: ...}``, or the ad-hoc spec ``s3:B/R``. Credentials come
from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance role), never from the config. boto3 is an
optional extra (``pip install 'guild[s3]'``), imported only when a
remote of this type is used.

Objects under ``R/`` (``docs/remotes.md`` says more)::

    runs/<id>/<path>              the run's files, as in a Guild home
    trash/runs/<id>/<path>        deleted runs' files
    meta/runs/<id>.json           one record per run: its metadata files
                                  and the manifest of all its files
                                  (size, time, mode)
    meta/trash/<id>.json          the same for a deleted run
    meta/runs-index.json.gz       every run's metadata (what listing
    meta/trash-index.json.gz      reads: one GET), updated with each change

A run's record is written after all its files, and its index entry
after its record, so a run is listed only once complete; the records
are the truth and the index is rebuilt from them (one LIST per 1,000
runs and a GET each) when it is missing or unreadable. The index is
changed by read-modify-write with S3's conditional writes (``If-Match``),
retried when another writer got there first.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path
from typing import Any, Callable

from guild_core.hookspecs import hookimpl

# Parallel requests for a run's files, and the connection pool to match.
WORKERS = 16
# A bad endpoint fails in a few seconds, not minutes.
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 60
MAX_ATTEMPTS = 2
# Files at least this big go up in parts (and are copied in parts).
MULTIPART_SIZE = 64 * 1024 * 1024
COPY_PART_SIZE = 4 * 1024 ** 3
# A new run's files left by an interrupted push are checked (one HEAD
# each) rather than sent again when at least this big.
RESUME_SIZE = 256 * 1024
MTIME_KEY = "guild-mtime-ns"
RECORD_VERSION = 1

_AREAS = {"runs": "runs", "trash": "trash/runs"}

# What every client of this process can share (botocore's data loader).
_SHARED: dict[str, Any] = {}


@hookimpl
def guild_register_remote_types(register):
    register("s3", S3Remote)


class S3Remote:
    def __init__(self, name: str, config: dict[str, Any]):
        from guild_core import remotes

        (bucket,) = remotes.require(name, config, "bucket")
        self.name = name
        self.bucket = str(bucket)
        self.root = str(config.get("root") or "").strip("/")
        self.prefix = f"{self.root}/" if self.root else ""
        self.region = config.get("region") or None
        self.endpoint = config.get("endpoint-url") or None
        self.description = config.get("description")
        self._s3 = None
        # area -> (runs, etag) of the index as last read or written.
        self._index: dict[str, tuple[dict[str, Any], str | None]] = {}
        self._conditional = True

    # -- where -------------------------------------------------------

    def describe(self) -> str:
        if self.description:
            return str(self.description)
        where = f"S3 bucket {self.bucket}/{self.root}" if self.root else f"S3 bucket {self.bucket}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    def status(self) -> str:
        with self._errors():
            s3 = self._client()
            try:
                s3.head_bucket(Bucket=self.bucket)
            except Exception as e:
                code = _code(e)
                if code in ("404", "NoSuchBucket"):
                    raise self._error(f"no such bucket '{self.bucket}'") from None
                if code in ("403", "AccessDenied"):
                    raise self._error(f"access to bucket '{self.bucket}' denied "
                                      "(check the credentials and the bucket's policy)") from None
                raise
            # The records are the truth: the index is checked against them.
            records, notes = {}, []
            for area in _AREAS:
                records[area] = self._record_etags(area)
                runs, _ = self._read_index(area)
                if {run_id: entry.get("etag") for run_id, entry in runs.items()} != records[area]:
                    fixed = self._repair_index(area, runs, records[area])
                    what = "deleted runs" if area == "trash" else "runs"
                    notes.append(f"index of {what} repaired ({_count(fixed, 'run')})")
            incomplete = self._incomplete(records["runs"])
            if incomplete:
                notes.append(f"{_count(len(incomplete), 'incomplete push')} (push again to finish)")
        line = f"remote '{self.name}' ({self.describe()}) is available: {_count(len(records['runs']), 'run')}"
        if records["trash"]:
            line += f", {len(records['trash'])} deleted"
        return "; ".join([line] + notes)

    # -- reading -----------------------------------------------------

    def list_runs(self, deleted: bool = False) -> dict[str, dict[str, bytes]]:
        with self._errors():
            runs, _ = self._read_index(_area(deleted))
        return {run_id: _decode_meta(entry.get("meta")) for run_id, entry in runs.items()}

    def fetch_run(self, run_id: str, dest: Path, deleted: bool = False) -> None:
        with self._errors():
            record = self._require_record(_area(deleted), run_id)
            self._download_run(_area(deleted), run_id, record, Path(dest), delete=True)

    # -- copying -----------------------------------------------------

    def push(self, run_dirs: list[Path], delete: bool, progress):
        from guild_core import remotes

        total = remotes.Transfer()
        entries: dict[str, dict[str, Any]] = {}
        with self._errors():
            records = self._each(lambda d: self._get_record("runs", Path(d).name), run_dirs)
            try:
                for run_dir, (record, etag) in zip(run_dirs, records):
                    run_dir = Path(run_dir)
                    moved, entry = self._push_run(run_dir, record, etag, delete)
                    entries[run_dir.name] = entry
                    total.add(moved)
                    if progress is not None:
                        progress.update(runs=1, nbytes=moved.bytes)
            except BaseException:
                # The runs that did arrive are listed; the one cut short is not.
                with contextlib.suppress(Exception):
                    self._set_entries("runs", entries)
                raise
            self._set_entries("runs", entries)
        return total

    def pull(self, run_ids: list[str], dest: Path, delete: bool, progress):
        from guild_core import remotes

        total = remotes.Transfer()
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with self._errors():
            records = self._each(lambda run_id: self._require_record("runs", run_id), run_ids)
            for run_id, record in zip(run_ids, records):
                moved = self._download_run("runs", run_id, record, dest / run_id, delete)
                total.add(moved)
                if progress is not None:
                    progress.update(runs=1, nbytes=moved.bytes)
        return total

    def write_meta(self, run_id: str, changes: dict[str, bytes | None]) -> None:
        import time

        for rel in changes:
            _check_rel(self.name, rel)
        with self._errors():
            s3 = self._client()
            base = self._run_prefix("runs", run_id)
            for attempt in range(10):
                record, etag = self._get_record("runs", run_id)
                if record is None:
                    raise self._error(f"no run {run_id[:8]} on the remote")
                now = time.time_ns()
                for rel, data in changes.items():
                    if data is None:
                        record["files"].pop(rel, None)
                        record["meta"].pop(rel, None)
                    else:
                        old = record["files"].get(rel)
                        mode = old[2] if old and len(old) > 2 and old[2] is not None else 0o644
                        record["files"][rel] = [len(data), now, mode]
                        record["meta"][rel] = _encode(data)

                def write(item, now=now):
                    rel, data = item
                    if data is None:
                        s3.delete_object(Bucket=self.bucket, Key=base + rel)
                    else:
                        s3.put_object(Bucket=self.bucket, Key=base + rel, Body=data,
                                      Metadata={MTIME_KEY: str(now)})

                # The files first, then the record that lists them.
                self._each(write, list(changes.items()))
                try:
                    new_etag = self._put_record("runs", run_id, record, if_match=etag)
                except _Conflict:
                    _backoff(attempt)
                    continue
                self._set_entries("runs", {run_id: _entry(record, new_etag)})
                return
            raise self._error(f"run {run_id[:8]} kept changing on the remote; try again")

    # -- deleting ----------------------------------------------------

    def delete(self, run_ids: list[str], permanent: bool = False) -> None:
        with self._errors():
            if permanent:
                self._remove("runs", run_ids)
            else:
                self._move(run_ids, "runs", "trash")

    def restore(self, run_ids: list[str]) -> None:
        with self._errors():
            for run_id in run_ids:
                if self._get_record("runs", run_id)[0] is not None:
                    raise self._error(f"run {run_id[:8]} exists, not restored over")
            self._move(run_ids, "trash", "runs")

    def purge(self, run_ids: list[str]) -> None:
        with self._errors():
            self._remove("trash", run_ids)

    def _move(self, run_ids: list[str], src: str, dst: str) -> None:
        """Copy each run's objects to `dst`, its record after them, then
        list it there, and only then unlist and remove it from `src`: a
        move cut short leaves the run in both areas, never in neither."""
        s3 = self._client()
        # Every run there before any is touched.
        records = self._each(lambda run_id: self._require_record(src, run_id), run_ids)
        moved: dict[str, dict[str, Any]] = {}
        for run_id, record in zip(run_ids, records):
            src_prefix = self._run_prefix(src, run_id)
            dst_prefix = self._run_prefix(dst, run_id)
            objects = self._list_objects(src_prefix)
            stale = set(self._list_objects(dst_prefix)) - set(objects)

            def copy(item, src_prefix=src_prefix, dst_prefix=dst_prefix):
                rel, size = item
                source = {"Bucket": self.bucket, "Key": src_prefix + rel}
                if size >= COPY_PART_SIZE:
                    s3.copy(source, self.bucket, dst_prefix + rel)
                else:
                    s3.copy_object(Bucket=self.bucket, Key=dst_prefix + rel, CopySource=source)

            self._each(copy, list(objects.items()))
            self._delete_keys([dst_prefix + rel for rel in stale])
            moved[run_id] = _entry(record, self._put_record(dst, run_id, record))
        self._set_entries(dst, moved)
        self._remove(src, list(moved))

    def _remove(self, area: str, run_ids: list[str]) -> None:
        """Unlist runs (their records, then the index), then remove their
        objects. A run with an index entry and no record goes too."""
        self._delete_keys([self._record_key(area, run_id) for run_id in run_ids])
        self._set_entries(area, {run_id: None for run_id in run_ids})
        for run_id in run_ids:
            self._delete_keys([self._run_prefix(area, run_id) + rel
                               for rel in self._list_objects(self._run_prefix(area, run_id))])

    # -- one run -----------------------------------------------------

    def _push_run(self, run_dir: Path, record: dict | None, etag: str | None, delete: bool):
        """Send what changed of one run, then its record. Returns what
        moved and the run's index entry."""
        from guild_core import faults, remotes
        from guild_core.errors import GuildError

        run_id = run_dir.name
        moved = remotes.Transfer(run_ids=[run_id])
        local = remotes.manifest(run_dir)
        if not local:
            raise GuildError(f"run {run_id[:8]} is not at {run_dir.parent}")
        base = self._run_prefix("runs", run_id)
        theirs = dict(record["files"]) if record else {}
        meta_old = dict(record["meta"]) if record else {}
        extra: list[str] = []
        if record is None:
            # No record: a new run, or one an interrupted push left part of.
            theirs, extra = self._resumable(base, run_dir, local)
        changed = [rel for rel in _ordered(local) if _sig(theirs.get(rel)) != local[rel]]
        gone = [rel for rel in theirs if rel not in local] if delete else []
        if delete:
            gone += [rel for rel in extra if rel not in local]
        if record is not None and not changed and not gone:
            moved.unchanged = 1
            return moved, _entry(record, etag)

        files = dict(theirs)
        meta: dict[str, Any] = {rel: data for rel, data in meta_old.items() if rel in files}

        def send(rel):
            sent = self._put_file(run_dir / rel, base + rel, remotes.is_meta(rel))
            # A push killed here leaves objects of a run with no record.
            faults.point("remote.copy.file")
            if sent is not None:
                files[rel] = sent[0]
                if sent[1] is not None:
                    meta[rel] = _encode(sent[1])
            return sent

        # The run's own files, then its metadata, .guild/opref last of all.
        body = [rel for rel in changed if not remotes.is_meta(rel)]
        head = [rel for rel in changed if remotes.is_meta(rel) and rel != ".guild/opref"]
        tail = [rel for rel in changed if rel == ".guild/opref"]
        for group in (body, head, tail):
            for rel, sent in zip(group, self._each(send, group)):
                if sent is None:
                    files.pop(rel, None)
                    meta.pop(rel, None)
                    continue
                moved.files += 1
                moved.bytes += sent[0][0]
        for rel in local:
            if remotes.is_meta(rel) and rel not in changed and rel in files:
                data = _read(run_dir / rel)
                if data is not None:
                    meta[rel] = _encode(data)
        self._delete_keys([base + rel for rel in gone])
        for rel in gone:
            if files.pop(rel, None) is not None:
                moved.deleted_files += 1
            meta.pop(rel, None)
        new = {"version": RECORD_VERSION, "id": run_id, "files": files, "meta": meta}
        moved.runs = 1
        return moved, _entry(new, self._put_record("runs", run_id, new))

    def _resumable(self, base: str, base_dir: Path, local: dict[str, tuple[int, int]]):
        """What an interrupted push of a run left under `base` that is the
        same as the local file (big files only: checked by the time kept
        with the object), and every leftover name."""
        s3 = self._client()
        objects = self._list_objects(base)
        candidates = [rel for rel, size in objects.items()
                      if rel in local and local[rel][0] == size and size >= RESUME_SIZE]

        def same(rel):
            head = s3.head_object(Bucket=self.bucket, Key=base + rel)
            return head.get("Metadata", {}).get(MTIME_KEY) == str(local[rel][1])

        kept = {}
        for rel, ok in zip(candidates, self._each(same, candidates)):
            if ok:
                with contextlib.suppress(OSError):
                    mode = stat.S_IMODE(os.stat(base_dir / rel).st_mode)
                    kept[rel] = [local[rel][0], local[rel][1], mode]
        return kept, list(objects)

    def _put_file(self, path: Path, key: str, want_data: bool):
        """Upload one file. Returns ([size, mtime_ns, mode], bytes if
        `want_data`) as read, or None when the file went away."""
        s3 = self._client()
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        with f:
            st = os.fstat(f.fileno())
            extra = {"Metadata": {MTIME_KEY: str(st.st_mtime_ns)}}
            data = None
            if want_data:
                data = f.read()
                s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
                size = len(data)
            elif st.st_size >= MULTIPART_SIZE:
                from boto3.s3.transfer import TransferConfig

                s3.upload_fileobj(f, self.bucket, key, ExtraArgs=extra,
                                  Config=TransferConfig(multipart_threshold=MULTIPART_SIZE,
                                                        max_concurrency=WORKERS))
                size = st.st_size
            else:
                s3.put_object(Bucket=self.bucket, Key=key, Body=f, **extra)
                size = st.st_size
        return [size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)], data

    def _download_run(self, area: str, run_id: str, record: dict, dest: Path, delete: bool):
        """Make `dest` the run of `record`: a new run is downloaded whole
        beside it under a hidden name and renamed into place; an existing
        one gets each changed file under a hidden name renamed over the
        old one, metadata last."""
        import shutil

        from guild_core import home, remotes

        moved = remotes.Transfer(run_ids=[run_id])
        base = self._run_prefix(area, run_id)
        files = {rel: entry for rel, entry in record["files"].items() if rel not in remotes.LOCAL_ONLY}
        for rel in files:
            _check_rel(self.name, rel)
        # The metadata files are in the record already: no request each.
        inline = _decode_meta(record.get("meta"))
        if not dest.exists():
            tmp = dest.with_name(home.hidden_name(home.TMP_PREFIX, run_id))
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                for group in _meta_last(files):
                    self._each(lambda rel: self._get_file(base, rel, tmp / rel, files[rel], run_id,
                                                          inline.get(rel)), group)
                if not files:
                    tmp.mkdir(parents=True)
                os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            moved.runs = 1
            moved.files = len(files)
            moved.bytes = sum(entry[0] for entry in files.values())
            return moved
        ours = remotes.manifest(dest)
        changed = {rel: entry for rel, entry in files.items() if ours.get(rel) != _sig(entry)}

        def get(rel):
            path = dest / rel
            part = path.with_name(f"{remotes.PART_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
            try:
                self._get_file(base, rel, part, files[rel], run_id, inline.get(rel))
                os.replace(part, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    part.unlink()
                raise

        for group in _meta_last(changed):
            self._each(get, group)
            moved.files += len(group)
            moved.bytes += sum(files[rel][0] for rel in group)
        gone = [rel for rel in ours if rel not in files] if delete else []
        for rel in gone:
            with contextlib.suppress(OSError):
                (dest / rel).unlink()
                moved.deleted_files += 1
        if changed or gone:
            moved.runs = 1
        else:
            moved.unchanged = 1
        return moved

    def _get_file(self, base: str, rel: str, path: Path, entry: list, run_id: str,
                  data: bytes | None = None) -> None:
        """Write one file of a run at `path`: `data` when given (a
        metadata file, from the run's record), else the object."""
        from guild_core import faults

        size, mtime = entry[0], entry[1]
        mode = entry[2] if len(entry) > 2 else None
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None and len(data) == size:
            with open(path, "wb") as f:
                f.write(data)
            n = size
        else:
            n = self._get_object(base, rel, path, run_id)
        if n != size:
            raise self._error(f"run {run_id[:8]} changed on the remote while copying; try again")
        if mode is not None:
            os.chmod(path, mode & 0o777)
        os.utime(path, ns=(mtime, mtime))
        # A pull killed here leaves a hidden directory or file only.
        faults.point("remote.copy.file")

    def _get_object(self, base: str, rel: str, path: Path, run_id: str) -> int:
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=base + rel)["Body"]
        except Exception as e:
            if _code(e) in ("NoSuchKey", "404"):
                raise self._error(f"run {run_id[:8]} has no file {rel} on the remote "
                                  "(changed while copying? try again)") from None
            raise
        n = 0
        with open(path, "wb") as f:
            for chunk in body.iter_chunks(1024 * 1024):
                f.write(chunk)
                n += len(chunk)
        return n

    # -- records -----------------------------------------------------

    def _run_prefix(self, area: str, run_id: str) -> str:
        return f"{self.prefix}{_AREAS[area]}/{run_id}/"

    def _record_key(self, area: str, run_id: str) -> str:
        return f"{self.prefix}meta/{area}/{run_id}.json"

    def _get_record(self, area: str, run_id: str) -> tuple[dict | None, str | None]:
        import json

        try:
            resp = self._client().get_object(Bucket=self.bucket, Key=self._record_key(area, run_id))
        except Exception as e:
            if _code(e) in ("NoSuchKey", "404"):
                return None, None
            raise
        try:
            record = json.loads(resp["Body"].read())
            if not isinstance(record.get("files"), dict) or not isinstance(record.get("meta"), dict):
                raise ValueError
        except ValueError:
            raise self._error(f"the record of run {run_id[:8]} is unreadable "
                              f"({self._record_key(area, run_id)})") from None
        return record, resp.get("ETag")

    def _require_record(self, area: str, run_id: str) -> dict:
        record, _ = self._get_record(area, run_id)
        if record is None:
            what = "deleted run" if area == "trash" else "run"
            raise self._error(f"no {what} {run_id[:8]} on the remote")
        return record

    def _put_record(self, area: str, run_id: str, record: dict, if_match: str | None = None) -> str:
        import json

        body = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        return self._put(self._record_key(area, run_id), body, if_match=if_match)

    def _record_etags(self, area: str) -> dict[str, str]:
        """Run id -> ETag of every record of `area` (one LIST per 1,000)."""
        from guild_core.run import RUN_ID_P

        found = {}
        for key, obj in self._list(f"{self.prefix}meta/{area}/"):
            run_id = key[:-len(".json")]
            if key.endswith(".json") and RUN_ID_P.match(run_id):
                found[run_id] = obj["ETag"]
        return found

    def _incomplete(self, records: dict[str, str]) -> list[str]:
        """Ids with files under runs/ but no record: pushes cut short."""
        prefix = f"{self.prefix}runs/"
        ids = []
        pages = self._client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                run_id = common["Prefix"][len(prefix):].rstrip("/")
                if run_id not in records:
                    ids.append(run_id)
        return ids

    # -- the index ---------------------------------------------------

    def _index_key(self, area: str) -> str:
        return f"{self.prefix}meta/{area}-index.json.gz"

    def _read_index(self, area: str) -> tuple[dict[str, Any], str | None]:
        """The index of `area` (run id -> {etag, meta}) and its ETag;
        rebuilt from the records when missing or unreadable."""
        import gzip
        import json

        etag = None
        try:
            resp = self._client().get_object(Bucket=self.bucket, Key=self._index_key(area))
        except Exception as e:
            if _code(e) not in ("NoSuchKey", "404"):
                raise
        else:
            etag = resp.get("ETag")
            try:
                data = json.loads(gzip.decompress(resp["Body"].read()))
                runs = data["runs"]
                if not isinstance(runs, dict):
                    raise ValueError
            except (ValueError, KeyError, TypeError, OSError, EOFError):
                pass
            else:
                self._index[area] = (runs, etag)
                return runs, etag
        records = self._record_etags(area)
        runs = self._rebuild(area, records)
        if not records and etag is None:
            return runs, None
        try:
            etag = self._put_index(area, runs, etag)
        except _Conflict:
            # Another writer put an index meanwhile: ours is good to read.
            self._index.pop(area, None)
            return runs, None
        except Exception as e:
            # Read-only credentials list all the same.
            if _code(e) is None:
                raise
            self._index.pop(area, None)
            return runs, None
        self._index[area] = (runs, etag)
        return runs, etag

    def _rebuild(self, area: str, records: dict[str, str]) -> dict[str, Any]:
        def entry(run_id):
            record, etag = self._get_record(area, run_id)
            return None if record is None else _entry(record, etag)

        ids = sorted(records)
        return {run_id: e for run_id, e in zip(ids, self._each(entry, ids)) if e is not None}

    def _repair_index(self, area: str, runs: dict[str, Any], records: dict[str, str]) -> int:
        """Bring the index into line with the records; how many entries
        changed."""
        wrong = [run_id for run_id, etag in records.items() if runs.get(run_id, {}).get("etag") != etag]
        fixed: dict[str, Any] = dict(self._rebuild(area, dict.fromkeys(wrong)))
        fixed.update({run_id: None for run_id in runs if run_id not in records})
        self._set_entries(area, fixed)
        return len(fixed)

    def _set_entries(self, area: str, entries: dict[str, Any]) -> None:
        """Set (or, for None, remove) index entries: read, change and write
        the index, again if another writer changed it meanwhile. The index
        as last seen by this process is tried first (a write on condition
        that it is unchanged saves reading it again)."""
        if not entries:
            return
        cached = self._index.get(area) if self._conditional else None
        for attempt in range(10):
            runs, etag = cached if cached is not None else self._read_index(area)
            new = dict(runs)
            for run_id, entry in entries.items():
                if entry is None:
                    new.pop(run_id, None)
                else:
                    new[run_id] = entry
            if new == runs:
                if cached is None:
                    return
                # Nothing to change as last seen: make sure of it.
                cached = None
                continue
            cached = None
            try:
                etag = self._put_index(area, new, etag)
            except _Conflict:
                if attempt:
                    _backoff(attempt)
                continue
            self._index[area] = (new, etag)
            return
        raise self._error("the index kept changing on the remote; try again")

    def _put_index(self, area: str, runs: dict[str, Any], etag: str | None) -> str:
        import gzip
        import json

        body = gzip.compress(json.dumps({"version": RECORD_VERSION, "runs": runs},
                                        ensure_ascii=False, separators=(",", ":")).encode(),
                             compresslevel=6, mtime=0)
        if etag is None:
            return self._put(self._index_key(area), body, if_none_match=True)
        return self._put(self._index_key(area), body, if_match=etag)

    # -- requests ----------------------------------------------------

    def _client(self):
        if self._s3 is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                from guild_core.errors import GuildError

                raise GuildError(f"remote '{self.name}' needs boto3: pip install 'guild[s3]'") from None
            config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                            retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                            max_pool_connections=WORKERS)
            import botocore.session

            # A session of its own (credentials as the environment has them
            # now), with botocore's service data read once per process.
            session = botocore.session.Session()
            loader = _SHARED.get("loader")
            if loader is None:
                _SHARED["loader"] = session.get_component("data_loader")
            else:
                session.register_component("data_loader", loader)
            try:
                self._s3 = boto3.session.Session(botocore_session=session).client(
                    "s3", region_name=self.region, endpoint_url=self.endpoint, config=config)
            except ValueError as e:
                raise self._error(f"invalid endpoint-url '{self.endpoint}' ({_line(e)})") from None
        return self._s3

    def _put(self, key: str, body: bytes, if_match: str | None = None, if_none_match: bool = False) -> str:
        """PUT an object, on condition (when the store takes conditions);
        its new ETag. Raises `_Conflict` when the condition fails."""
        kwargs: dict[str, Any] = {}
        if self._conditional:
            if if_match:
                kwargs["IfMatch"] = if_match
            elif if_none_match:
                kwargs["IfNoneMatch"] = "*"
        try:
            return self._client().put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs)["ETag"]
        except Exception as e:
            code = _code(e)
            if not kwargs:
                raise
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise _Conflict from None
            if if_match and code in ("NoSuchKey", "404"):
                raise _Conflict from None
            if code in ("NotImplemented", "501"):
                # A store without conditional writes: last writer wins.
                self._conditional = False
                return self._client().put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"]
            raise

    def _list(self, prefix: str):
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(prefix):], obj

    def _list_objects(self, prefix: str) -> dict[str, int]:
        return {rel: obj["Size"] for rel, obj in self._list(prefix) if rel}

    def _delete_keys(self, keys: list[str]) -> None:
        s3 = self._client()
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            resp = s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in chunk], "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                err = errors[0]
                raise self._error(f"cannot delete {err.get('Key')}: {err.get('Code')} {err.get('Message', '')}".rstrip())

    def _each(self, fn: Callable, items) -> list:
        """`fn(item)` for each item, WORKERS at a time; the results in
        order. The first error stops the rest and is raised."""
        items = list(items)
        if len(items) <= 1:
            return [fn(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(items)))
        try:
            futures = [pool.submit(fn, item) for item in items]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- errors ------------------------------------------------------

    def _error(self, msg: str):
        from guild_core.errors import GuildError

        return GuildError(f"remote '{self.name}': {msg}")

    @contextlib.contextmanager
    def _errors(self):
        """botocore's errors as one line naming the remote."""
        from guild_core.errors import GuildError

        try:
            yield
        except GuildError:
            raise
        except Exception as e:
            msg = self._explain(e)
            if msg is None:
                raise
            raise self._error(msg) from None

    def _explain(self, e: Exception) -> str | None:
        try:
            from botocore import exceptions as bx
        except ImportError:
            return None
        if isinstance(e, bx.NoCredentialsError):
            return ("no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "or AWS_PROFILE)")
        if isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
            return f"cannot reach {self.endpoint or 'S3'} ({_line(e)})"
        if isinstance(e, bx.ReadTimeoutError):
            return f"{self.endpoint or 'S3'} did not answer in time"
        if isinstance(e, bx.ClientError):
            code = _code(e)
            if code == "NoSuchBucket":
                return f"no such bucket '{self.bucket}'"
            if code in ("AccessDenied", "403", "AllAccessDisabled"):
                return f"access denied to bucket '{self.bucket}' ({_line(e)})"
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                        "InvalidToken", "TokenRefreshRequired"):
                return f"credentials refused: {code}"
            return f"S3 error: {_line(e)}"
        if isinstance(e, bx.BotoCoreError):
            return " ".join(str(e).split()) or type(e).__name__
        return None


class _Conflict(Exception):
    """A conditional write found the object changed."""


# ---------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------


def _area(deleted: bool) -> str:
    return "trash" if deleted else "runs"


def _entry(record: dict, etag: str | None) -> dict[str, Any]:
    return {"etag": etag, "meta": record.get("meta", {})}


def _sig(entry) -> tuple[int, int] | None:
    """(size, mtime_ns) of a manifest entry, as `remotes.manifest` gives."""
    return None if entry is None else (entry[0], entry[1])


def _encode(data: bytes):
    """JSON-safe: text as it is, anything else as base64."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        return {"base64": base64.b64encode(data).decode("ascii")}


def _decode(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    import base64

    return base64.b64decode(value["base64"])


def _decode_meta(meta) -> dict[str, bytes]:
    found = {}
    for rel, value in (meta or {}).items():
        if _safe_rel(rel):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                found[rel] = _decode(value)
    return found


def _safe_rel(rel: str) -> bool:
    """Whether `rel` names a path inside a run (relative, no ``..``)."""
    if not rel or rel[0] == "/" or "\\" in rel or "\0" in rel:
        return False
    return ".." not in rel or ".." not in rel.split("/")


def _check_rel(name: str, rel: str) -> None:
    if not _safe_rel(rel):
        from guild_core.errors import GuildError

        raise GuildError(f"remote '{name}': refusing path '{rel}' outside a run")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _ordered(files) -> list[str]:
    from guild_core import remotes

    return sorted(files, key=lambda rel: (remotes.is_meta(rel), rel == ".guild/opref", rel))


def _meta_last(files) -> list[list[str]]:
    """The run's own files, then its metadata, then .guild/opref."""
    from guild_core import remotes

    rels = _ordered(files)
    return [
        [rel for rel in rels if not remotes.is_meta(rel)],
        [rel for rel in rels if remotes.is_meta(rel) and rel != ".guild/opref"],
        [rel for rel in rels if rel == ".guild/opref"],
    ]


def _code(e: Exception) -> str | None:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or "") or None
    return None


def _line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _backoff(attempt: int) -> None:
    import random
    import time

    time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.random())
