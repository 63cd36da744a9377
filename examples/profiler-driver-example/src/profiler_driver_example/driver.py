"""``jsonl:///relative/dir`` or ``jsonl:////absolute/dir``: traces as JSON-lines files.

Three slashes then a relative path, four for an absolute one (as ``sqlite://`` reads them);
``~`` is expanded. The connection string takes no host, user, password or options.

Layout: one file per trace, ``<dir>/<sha256(base_id)[:40]>.jsonl`` (hashed, because a trace id
from a remote service is not a safe file name), one point per line, appended. The directory is
created on the first write, readable by its owner only: traces hold call arguments.

Why the file format is safe enough without locks:

* A batch is appended with one ``write()`` on a file opened with ``O_APPEND``, so batches from
  several threads or processes do not interleave within a line.
* Each write starts with a newline. A line torn by a crash is then followed by a clean line
  instead of being glued to the next point; readers skip the torn line (and log it).
* Re-delivery appends the same points again; readers keep the first copy of each point ``id``,
  which makes ``notify`` idempotent as the protocol requires.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import POINT_KEYS, Point, TraceFilter, TraceSummary, summarize
from xprofiler.core.protocol import BaseDriver
from xprofiler.core.uri import URL

__all__ = ["JsonLinesDriver"]

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"


class JsonLinesDriver(BaseDriver):
    """The ``jsonl`` scheme. Construction only checks the URL: no file is touched until used."""

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        if url.hosts or url.username is not None or url.password is not None:
            raise DriverError(
                "jsonl connection strings name a directory, not a server: write "
                "jsonl:///relative/dir or jsonl:////absolute/dir"
            )
        if not url.database:
            raise DriverError(
                "the jsonl connection string needs a directory, e.g. jsonl:///traces "
                "or jsonl:////var/lib/traces"
            )
        if url.query:
            names = ", ".join(sorted({k for k, _ in url.query}))
            raise DriverError(f"jsonl takes no options; remove {names} from the connection string")
        self.directory = Path(os.path.expanduser(url.database))
        self._write_lock = threading.Lock()

    # -- writing ----------------------------------------------------------------------------------
    def notify(self, points: Sequence[Point]) -> None:
        by_trace: dict[str, list[str]] = {}
        for p in points:
            line = json.dumps(p, ensure_ascii=False, separators=(",", ":"))
            by_trace.setdefault(p["base_id"], []).append(line)
        if not by_trace:
            return
        with self._write_lock:
            self._make_directory()
            for base_id, lines in by_trace.items():
                self._append(self._file(base_id), ("\n" + "\n".join(lines) + "\n").encode())

    def _make_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the trace directory {self.directory}: {exc.strerror}"
            ) from exc

    def _append(self, path: Path, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {path} for writing: {exc.strerror}") from exc
        try:
            view = memoryview(data)
            while view:  # a regular file takes it all at once; loop in case it does not
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            raise StoreUnavailable(f"cannot write to {path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    # -- reading ----------------------------------------------------------------------------------
    def _file(self, base_id: str) -> Path:
        digest = hashlib.sha256(base_id.encode("utf-8", "surrogatepass")).hexdigest()
        return self.directory / f"{digest[:40]}{_SUFFIX}"

    def _files(self) -> Iterator[Path]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return  # nothing written yet
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot list the trace directory {self.directory}: {exc.strerror}"
            ) from exc
        for name in names:
            if name.endswith(_SUFFIX):
                yield self.directory / name

    def _read(self, path: Path) -> list[Point]:
        """The points of one file, first copy of each id, torn or foreign lines skipped."""
        seen: dict[str, Point] = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.endswith("\n"):
                        continue  # a write still in progress, or cut short by a crash
                    if not line.strip():
                        continue
                    try:
                        point = json.loads(line)
                    except ValueError:
                        log.warning("%s line %d is not JSON (a torn write?); skipped", path, number)
                        continue
                    if not isinstance(point, dict) or not all(k in point for k in POINT_KEYS):
                        log.warning("%s line %d is not a trace point; skipped", path, number)
                        continue
                    seen.setdefault(point["id"], point)  # type: ignore[arg-type]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from exc
        return list(seen.values())

    def get_report(self, base_id: str) -> list[Point]:
        return [p for p in self._read(self._file(base_id)) if p.get("base_id") == base_id]

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        f = filters or TraceFilter()
        rows: list[TraceSummary] = []
        for path in self._files():
            traces: dict[str, list[Point]] = {}
            for p in self._read(path):  # one trace per file, unless two ids share a digest
                traces.setdefault(p["base_id"], []).append(p)
            for points in traces.values():
                summary = summarize(points)
                if f.matches(summary, {p["name"] for p in points}):
                    rows.append(summary)
        rows.sort(key=lambda s: (s.start, s.base_id), reverse=True)
        return rows[f.offset : f.offset + f.limit]

    def close(self) -> None:
        return None  # every call opens and closes its own files
