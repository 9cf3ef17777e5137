"""Archive a Kafka topic into an Iceberg table, exactly once.

How exactly-once holds through a crash at any moment (stream_jobs.checkpoint):
* Records are buffered per Kafka partition; every ROTATE_SECONDS (or ROTATE_ROWS)
  the buffers become Parquet files, one per day, and one commit adds them to the
  table together with the next offset of each partition they cover.
* On (re)start or partition assignment, the job first claims its partitions in
  the tables (stream_jobs.checkpoint), then consumption resumes at the offsets the
  table holds. A record is in the table iff its offset is below them: never lost,
  never twice. Files of a commit that did not land are orphans, never read.
* Several processes may run the job in one consumer group: each archives the
  partitions the group assigns it, and commits them only while the table names it
  their owner. One whose commit is refused (Fenced: its partitions were taken while
  it stalled) drops what it buffered and rejoins the group; the new owner reads it
  again from the table's offsets. On revocation the partitions' buffers are committed
  before the group hands them on.
* Records of the readings topic that the contract rejects (another producer wrote
  them; the bridge never does) go to raw.rejected in the same flush. That table
  holds its own offsets for the readings topic and is committed first: after a
  crash between the two commits the replay skips the dead letters it already has.
Kafka's committed offsets follow the table, for lag monitoring only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from iot_common.contract import TimeBounds
from iot_common.kafka_io import consumer_lag, offsets_in_the_table, records_of
from iot_common.metrics import counter, gauge
from iot_common.stats import Counters
from stream_jobs.checkpoint import Checkpoint
from stream_jobs.errors import Fenced
from stream_jobs.iceberg import IcebergTable, committed_offsets
from stream_jobs.records import Builder, Record, Source

log = logging.getLogger(__name__)


def since(rows: pa.Table, floors: Mapping[int, int]) -> pa.Table:
    """The rows whose (kafka_partition, kafka_offset) is at or past the partition's
    floor (partitions without one: all): what a table does not hold yet."""
    if not floors or rows.num_rows == 0:
        return rows
    part, offset = rows.column("kafka_partition"), rows.column("kafka_offset")
    keep = pc.invert(pc.is_in(part, pa.array(list(floors), pa.int32())))
    for p, floor in floors.items():
        keep = pc.or_(keep, pc.and_(pc.equal(part, p), pc.greater_equal(offset, floor)))
    return rows.filter(pc.fill_null(keep, True))


def newest_event(rows: pa.Table, column: str | None) -> float:
    """The newest event time in `rows` (Unix seconds), 0 without one."""
    if not column or column not in rows.column_names or rows.num_rows == 0:
        return 0.0
    newest = pc.max(rows[column]).as_py()
    return newest.timestamp() if newest is not None else 0.0


@dataclass
class ArchiveStats(Counters):
    rows: int = counter("records archived (as rows or as rejected rows)")
    rejected: int = counter("records the contract rejected, written to raw.rejected")
    files: int = counter("Parquet files written")
    bytes: int = counter("Parquet bytes written to the table (not raw.rejected)")
    commits: int = counter("table commits")
    last_commit_unix: float = gauge("time of the last commit (Unix seconds)")
    newest_event_unix: float = gauge("newest event time archived (Unix seconds; 0: none yet)")
    lag: int = gauge("records in Kafka not archived yet (-1: unknown)")
    assigned: list[int] = field(default_factory=list)


class TopicArchiver:
    """Consumes one topic in batches and commits it to one Iceberg table (and the
    records the contract rejects to raw.rejected)."""

    def __init__(
        self,
        table: IcebergTable,
        topic: str,
        *,
        build: Builder,
        consumer_config: Mapping[str, object],
        rotate_rows: int,
        rotate_seconds: float,
        bounds: TimeBounds,
        max_payload_bytes: int,
        rejected: IcebergTable | None = None,
        make_consumer: Callable[[dict[str, object]], Consumer] = Consumer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table, self.spec, self.topic = table, table.spec, topic
        self.build = build  # records -> rows (stream_jobs.records)
        # How records are judged (the contract's bounds and size limit), and where
        # the ones it rejects go.
        self.source = Source(topic, bounds, max_payload_bytes)
        self.rejected = rejected
        # The tables are the checkpoints: raw.rejected keeps its own offsets of this topic.
        self.checkpoint = Checkpoint(table, topic)
        self.rejected_checkpoint = Checkpoint(rejected, topic) if rejected else None
        self.rotate_rows, self.rotate_seconds = rotate_rows, rotate_seconds
        self.clock = clock
        self.recovered = threading.Event()  # set once its partitions are assigned and recovered
        self.stats = ArchiveStats()
        self._consumer_config = offsets_in_the_table(consumer_config)
        self._make_consumer = make_consumer  # Kafka's Consumer; a fake in the unit tests
        self._buffers: dict[int, list[Record]] = {}
        self._opened_at: dict[int, float] = {}
        self._next: dict[int, int] = {}  # next offset to archive, per assigned partition
        self._rejected_from: dict[int, int] = {}  # raw.rejected holds this topic below these
        self._consumer: Consumer | None = None
        self._stop = threading.Event()

    # recovery ---------------------------------------------------------------------

    def recover(self, partitions: list[int]) -> dict[int, int]:
        """Claims `partitions` in the tables, then returns the offsets they hold (read
        once the claims landed: no former owner commits them after that)."""
        claimed = self.checkpoint.claim(partitions, stop=self._stop)
        committed = committed_offsets(claimed, self.topic)
        self._rejected_from = {}
        if self.rejected_checkpoint:
            rejected = self.rejected_checkpoint.claim(partitions, stop=self._stop)
            self._rejected_from = committed_offsets(rejected, self.topic)
        return committed

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = self.recover([tp.partition for tp in partitions])
        for tp in partitions:
            tp.offset = committed.get(tp.partition, OFFSET_BEGINNING)
            if tp.partition in committed:
                self._next[tp.partition] = committed[tp.partition]
        consumer.assign(partitions)
        self.recovered.set()
        self.stats.assigned = sorted({*self.stats.assigned, *(tp.partition for tp in partitions)})
        log.info(
            "%s: archiving %s partitions %s",
            self.table.ident,
            self.topic,
            [(tp.partition, tp.offset) for tp in partitions],
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.flush()  # before the group hands them on (a Fenced here: see run)
        for tp in partitions:
            self._next.pop(tp.partition, None)
            for checkpoint in (self.checkpoint, self.rejected_checkpoint):
                if checkpoint is not None:
                    checkpoint.forget(tp.partition)
        consumer.unassign()
        revoked = {tp.partition for tp in partitions}
        self.stats.assigned = [p for p in self.stats.assigned if p not in revoked]

    def _drop(self) -> None:
        """Forget every partition and what was buffered of it: after a Fenced commit,
        another member owns them and reads them again from the table."""
        self._buffers, self._opened_at, self._next = {}, {}, {}
        for checkpoint in (self.checkpoint, self.rejected_checkpoint):
            if checkpoint is not None:
                checkpoint.forget_all()
        self.stats.assigned = []

    # flush --------------------------------------------------------------------------

    def flush(self) -> None:
        """Everything buffered: files, then one commit per table with the offsets."""
        buffers, self._buffers, self._opened_at = self._buffers, {}, {}
        records = [r for part in sorted(buffers) for r in buffers[part]]
        if not records:
            return
        next_offsets = {p: recs[-1].offset + 1 for p, recs in buffers.items() if recs}
        built = self.build(records, self.source)
        dead = 0
        if self.rejected_checkpoint is not None and built.rejected is not None:
            dead = built.rejected.num_rows
            new = since(built.rejected, self._rejected_from)
            # Committed first, so that it never lags the readings' offsets.
            files = self.rejected_checkpoint.table.write(new) if new.num_rows else []
            if files:
                self.rejected_checkpoint.commit(files, next_offsets, stop=self._stop)
                self._rejected_from.update(next_offsets)
            self.stats.files += len(files)
        files = self.table.write(built.rows)
        self.checkpoint.commit(files, next_offsets, stop=self._stop)
        self._next.update(next_offsets)
        if dead:
            log.warning(
                "%s: %d records of %s break the reading contract: written to %s",
                self.table.ident,
                dead,
                self.topic,
                self.rejected.ident if self.rejected else "-",
            )
        self.stats.rows += len(records)  # archived: as rows or dead letters
        self.stats.bytes = self.table.bytes_written
        self.stats.newest_event_unix = max(
            self.stats.newest_event_unix, newest_event(built.rows, self.spec.partition_source)
        )
        self.stats.rejected += dead
        self.stats.files += len(files)
        self.stats.commits += 1
        self.stats.last_commit_unix = time.time()
        if self._consumer is not None:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in next_offsets.items()],
                asynchronous=True,
            )

    def add(self, records: list[Record]) -> None:
        now = self.clock()
        for rec in records:
            expected = self._next.get(rec.partition)
            if expected is not None and rec.offset < expected:
                continue  # already archived (a rebalance can replay a little)
            buf = self._buffers.setdefault(rec.partition, [])
            if not buf:
                self._opened_at[rec.partition] = now
            buf.append(rec)

    def flush_due(self, force: bool = False) -> None:
        """One flush of every partition once any of them is full or old enough."""
        now = self.clock()
        due = force or any(
            len(buf) >= self.rotate_rows or now - self._opened_at.get(p, now) >= self.rotate_seconds
            for p, buf in self._buffers.items()
        )
        if due:
            self.flush()

    # run ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        tables = [self.table] + ([self.rejected] if self.rejected else [])
        if not all(t.wait_ready(stop) for t in tables):
            return
        while not stop.is_set():
            consumer = self._make_consumer(self._consumer_config)
            self._consumer = consumer
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            try:
                self._consume(consumer, stop)
            except Fenced as exc:
                # Stalled past the group's session timeout, it lost its partitions:
                # what it buffered is the new owner's to archive. A new consumer
                # rejoins the group (and claims whatever it is assigned then).
                log.warning("%s: %s; rejoining the group", self.table.ident, exc)
                self._drop()
            finally:
                self._consumer = None
                consumer.close()

    def _consume(self, consumer: Consumer, stop: threading.Event) -> None:
        poll_timeout = min(0.5, self.rotate_seconds / 4)
        lag_at = 0.0
        while not stop.is_set():
            batch = consumer.consume(num_messages=10_000, timeout=poll_timeout)
            records = [
                Record(
                    msg.partition(),  # type: ignore[arg-type]  # records_of: never None
                    msg.offset(),  # type: ignore[arg-type]
                    msg.timestamp()[1],
                    msg.key(),
                    msg.value(),
                    # confluent-kafka returns headers as a list of (str, bytes) pairs
                    dict(msg.headers() or ()),  # type: ignore[arg-type]
                )
                for msg in records_of(batch, self.topic)
            ]
            self.add(records)
            self.flush_due()
            now = self.clock()
            if now - lag_at >= 1.0:  # the client's own figures, once a second
                self.stats.lag = consumer_lag(consumer, self._next)
                lag_at = now
        self._stop = threading.Event()  # the last flush must land, not give up
        self.flush_due(force=True)  # graceful stop: leave nothing half-archived
