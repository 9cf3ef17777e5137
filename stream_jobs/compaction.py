"""Compaction of closed partitions: many small files become one, atomically for queries.

The archive writes a file per partition every few seconds, so a day holds
thousands of small files. Once a day is closed (older than COMPACT_AFTER_DAYS),
its files are rewritten as one sorted file (row groups of 128k rows) in a new
subfolder `_c<n>` of the day's folder, and the day's location in the Hive
Metastore is switched to it with one `alter_partition` call. A query lists the
files of whatever location it planned with: the old small files (kept for
COMPACT_GRACE_SECONDS before they are deleted) or the new file, never both and
never neither. Folders named `_...` are invisible to a scan of the parent, so
the compacted file is not read twice while the location is still the parent.

A journal entry (`_checkpoints/compaction/`) is written before the switch; at
start-up an entry whose switch did not happen is undone (the new file deleted)
and one whose switch happened has its old files deleted after the grace period.

Late readings for a closed day are written where its location points (the
archive asks the metastore, under the same lock the compaction holds), and the
next compaction pass folds them in.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
from pymetastore.hive_metastore import ThriftHiveMetastore
from pymetastore.hive_metastore.ttypes import NoSuchObjectException
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TException
from thrift.transport import TSocket, TTransport

from stream_jobs.archive import Placement, parquet_bytes
from stream_jobs.lake import Lake
from stream_jobs.tables import TableSpec

log = logging.getLogger(__name__)

FILE_ROWS = 4_000_000  # rows per compacted file
GENERATION = re.compile(r"/_c(\d+)$")


# -- the metastore ------------------------------------------------------------------


class Metastore:
    """The two Thrift calls compaction needs, on a short-lived connection each."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def _call(self, fn: Callable[[ThriftHiveMetastore.Client], object]) -> object:
        transport = TTransport.TBufferedTransport(TSocket.TSocket(self.host, self.port))
        transport.open()
        try:
            return fn(ThriftHiveMetastore.Client(TBinaryProtocol(transport)))
        finally:
            transport.close()

    def location(self, db: str, table: str, folder: str) -> str:
        part = self._call(lambda c: c.get_partition_by_name(db, table, folder))
        return str(part.sd.location)  # type: ignore[attr-defined]

    def set_location(self, db: str, table: str, folder: str, uri: str) -> None:
        def alter(c: ThriftHiveMetastore.Client) -> None:
            part = c.get_partition_by_name(db, table, folder)
            part.sd.location = uri
            c.alter_partition(db, table, part)  # one metastore transaction: atomic

        self._call(alter)

    def folders(self, db: str, table: str) -> list[str]:
        names = self._call(lambda c: c.get_partition_names(db, table, -1))
        return [str(n) for n in names]  # type: ignore[attr-defined]


METASTORE_DOWN = (TException, OSError)


# -- where a partition's files go ------------------------------------------------------------


def folder_date(folder: str) -> date | None:
    """The date of a Hive folder like 'event_date=2026-11-25' (None if it has none)."""
    try:
        return date.fromisoformat(folder.split("=", 1)[1])
    except (IndexError, ValueError):
        return None


class CompactedPlacement(Placement):
    """Open days: their folder. Closed days: wherever the metastore points (the
    folder, or its `_c<n>` after a compaction)."""

    def __init__(
        self,
        metastore: Metastore,
        schema: str,
        lake: Lake,
        closed_after_days: int,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        super().__init__()
        self.metastore, self.schema, self.lake = metastore, schema, lake
        self.closed_after_days = closed_after_days
        self.today = today
        self._known: dict[tuple[str, str], str] = {}

    def is_closed(self, folder: str) -> bool:
        day = folder_date(folder)
        return day is not None and day <= self.today() - timedelta(days=self.closed_after_days)

    def relative_dir(self, spec: TableSpec, folder: str) -> str:
        default = super().relative_dir(spec, folder)
        table = spec.name
        if not self.is_closed(folder):
            return default
        if (table, folder) not in self._known:
            try:
                uri = self.metastore.location(self.schema, table, folder)
                self._known[(table, folder)] = self.lake.relative(uri)
            except NoSuchObjectException:
                return default  # a day seen for the first time: not registered yet
            except METASTORE_DOWN as exc:
                # Safe (the data is kept) but invisible until the next compaction of the day.
                log.warning(
                    "metastore unavailable for %s %s (%s): writing to its folder",
                    table,
                    folder,
                    exc,
                )
                return default
        return self._known[(table, folder)]

    def moved(self, table: str, folder: str, relative_dir: str) -> None:
        self._known[(table, folder)] = relative_dir


# -- the compactor ----------------------------------------------------------------


def generation(relative_dir: str) -> int:
    m = GENERATION.search(relative_dir)
    return int(m.group(1)) if m else 0


def compacted_tables(files: Iterable[pa.Table]) -> list[pa.Table]:
    table = pa.concat_tables(files, promote_options="default")
    return [table.slice(i, FILE_ROWS) for i in range(0, max(table.num_rows, 1), FILE_ROWS)]


class Compactor:
    """Periodically compacts the closed partitions of the partitioned tables."""

    def __init__(
        self,
        lake: Lake,
        placement: CompactedPlacement,
        tables: list[TableSpec],
        interval_s: float,
        grace_s: float,
        min_files: int,
        zstd_level: int,
        wait_for: Callable[[], bool] = lambda: True,
    ) -> None:
        self.lake, self.placement, self.tables = lake, placement, tables
        self.interval_s, self.grace_s, self.min_files = interval_s, grace_s, min_files
        self.zstd_level = zstd_level
        self.wait_for = wait_for  # archives recovered, SQL tables registered
        self.compactions = 0

    # journal ----------------------------------------------------------------------

    def _journal_path(self, table: str, folder: str) -> str:
        return self.lake.path("_checkpoints", "compaction", f"{table}+{folder}.json")

    def _journals(self) -> list[str]:
        return self.lake.list_files(self.lake.path("_checkpoints", "compaction"))

    def recover(self) -> None:
        """Finish or undo what a crash interrupted."""
        for path in self._journals():
            entry = self.lake.read_json(path)
            if entry is None or "delete_after" in entry:
                continue
            try:
                current = self.lake.relative(
                    self.placement.metastore.location(
                        self.placement.schema, entry["table"], entry["folder"]
                    )
                )
            except METASTORE_DOWN:
                return  # try again at the next pass
            if current == entry["new_dir"]:
                entry["delete_after"] = time.time() + self.grace_s
                self.lake.write_json(path, entry)
            else:
                for rel in entry["new_files"]:
                    self.lake.delete(self.lake.path(rel))
                self.lake.delete(path)

    def delete_expired(self) -> None:
        for path in self._journals():
            entry = self.lake.read_json(path)
            if entry is None or entry.get("delete_after", float("inf")) > time.time():
                continue
            for rel in entry["old_files"]:
                self.lake.delete(self.lake.path(rel))
            self.lake.delete(path)
            log.info(
                "deleted %d files replaced by the compaction of %s %s",
                len(entry["old_files"]),
                entry["table"],
                entry["folder"],
            )

    # compaction -------------------------------------------------------------------

    def _files(self, spec: TableSpec, folder: str, current: str) -> list[str]:
        """Data files of a partition: in its current location, plus any in its
        folder itself (written there while the metastore was unreachable)."""
        root = Placement.relative_dir(self.placement, spec, folder)
        found = {self.lake.relative(p) for p in self._direct_files(current)}
        if current != root:
            found |= {self.lake.relative(p) for p in self._direct_files(root)}
        return sorted(found)

    def _direct_files(self, relative_dir: str) -> list[str]:
        prefix = self.lake.path(relative_dir) + "/"
        return [
            p
            for p in self.lake.list_files(self.lake.path(relative_dir))
            if "/" not in p[len(prefix) :] and p.endswith(".parquet")
        ]

    def compact(self, spec: TableSpec, folder: str) -> bool:
        """Compact one closed partition if it has enough files; True if it did."""
        schema = self.placement.schema
        with self.placement.lock:
            current = self.placement.relative_dir(spec, folder)
            files = self._files(spec, folder, current)
            if len(files) < self.min_files:
                return False
            tables = [pq.read_table(self.lake.fs.open(self.lake.path(f), "rb")) for f in files]
            new_dir = f"{spec.folder}/{folder}/_c{generation(current) + 1}"
            new_files = []
            for i, part in enumerate(compacted_tables(tables)):
                rel = f"{new_dir}/part-{i:05d}.parquet"
                self.lake.write_atomic(
                    self.lake.path(rel), parquet_bytes(part, spec.sort_by, self.zstd_level)
                )
                new_files.append(rel)
            journal = self._journal_path(spec.name, folder)
            entry = {
                "table": spec.name,
                "folder": folder,
                "old_dir": current,
                "new_dir": new_dir,
                "old_files": files,
                "new_files": new_files,
            }
            self.lake.write_json(journal, entry)
            self.placement.metastore.set_location(
                schema, spec.name, folder, self.lake.uri_of(self.lake.path(new_dir))
            )
            self.placement.moved(spec.name, folder, new_dir)
            self.lake.write_json(journal, {**entry, "delete_after": time.time() + self.grace_s})
        self.compactions += 1
        rows = sum(t.num_rows for t in tables)
        log.info(
            "compacted %s %s: %d files -> %d (%d rows)",
            spec.name,
            folder,
            len(files),
            len(new_files),
            rows,
        )
        return True

    def run_once(self) -> int:
        self.recover()
        self.delete_expired()
        done = 0
        for spec in self.tables:
            folders = self.placement.metastore.folders(self.placement.schema, spec.name)
            for folder in folders:
                if self.placement.is_closed(folder) and self.compact(spec, folder):
                    done += 1
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self.wait_for():
            stop.wait(1)
        while not stop.wait(self.interval_s):  # first pass one interval after start-up
            try:
                self.run_once()
            except METASTORE_DOWN as exc:
                log.warning("compaction skipped, metastore unavailable: %s", exc)
