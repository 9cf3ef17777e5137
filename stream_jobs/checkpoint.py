"""The commit protocol of every job that writes a table from Kafka: the table is
its own checkpoint.

A job writes its files (not yet part of the table), then commits them in one
Iceberg commit together with, per Kafka partition it read,
* the next offset to read (table property `iot.kafka.<topic>.<partition>`), and
* optionally the name of a state file holding what it keeps between records
  (the 1-minute job's open windows), written to the lake before the commit
  (property `iot.state.<topic>.<partition>`, file
  `_state/<table>/<topic>+<partition>/<uuid>.json`).

Recovery reads those properties back: the job resumes at the offsets and from
the state the last commit that landed names. Guarantees:
* Exactly once: rows, offsets and state land together or not at all
  (stream_jobs.iceberg.IcebergTable.commit: one metastore call; an unknown
  outcome is checked before any retry).
* A crash after writing files or a state file but before the commit leaves
  files nothing names: data files are orphans for maintenance, state files are
  deleted at the next recovery. A state file is deleted only once a commit that
  names its successor landed.
* A state file the table names must exist: its absence is a LakeError (the lake
  lost data), never a silent restart from nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from stream_jobs.errors import LakeError
from stream_jobs.iceberg import IcebergTable, committed_offsets, offset_key

STATE_PREFIX = "iot.state."  # table property: iot.state.<topic>.<partition> = state file


def state_key(topic: str, partition: int) -> str:
    return f"{STATE_PREFIX}{topic}.{partition}"


def state_dir(table: str, topic: str, partition: int) -> str:
    """The lake folder (relative) of a partition's state files."""
    return f"_state/{table}/{topic}+{partition}"


def new_state_path(table: str, topic: str, partition: int) -> str:
    return f"{state_dir(table, topic, partition)}/{uuid.uuid4().hex}.json"


@dataclass
class Recovered:
    """What the last commit that landed left for one partition."""

    next_offset: int | None  # None: nothing committed yet (read from the beginning)
    state: dict[str, Any] | None = None  # the state file's document, if one is named


@dataclass
class Checkpoint:
    """One job's checkpoint in one table, for one input topic."""

    table: IcebergTable
    topic: str
    _state_files: dict[int, str] = field(default_factory=dict)  # named by the table, per partition

    def offsets(self) -> dict[int, int]:
        """Partition -> next offset, as the table holds them now (re-read)."""
        return self.table.offsets(self.topic)

    def recover(self, partition: int, properties: Mapping[str, str]) -> Recovered:
        """The offset and state the table's `properties` name for `partition`;
        state files no landed commit names are deleted."""
        lake = self.table.lake
        named = properties.get(state_key(self.topic, partition))
        folder = lake.path(state_dir(self.table.spec.name, self.topic, partition))
        for path in lake.list_files(folder):
            if named is None or not path.endswith("/" + named.rsplit("/", 1)[-1]):
                lake.delete(path)
        next_offset = committed_offsets(properties, self.topic).get(partition)
        self._state_files.pop(partition, None)
        if named is None:
            return Recovered(next_offset)
        doc = lake.read_json(lake.path(named))
        if doc is None:
            raise LakeError(f"{self.table.ident}: its state file {named} is missing from the lake")
        self._state_files[partition] = named
        return Recovered(next_offset, doc)

    def forget(self, partition: int) -> None:
        """A partition no longer assigned: its state file is another job's now."""
        self._state_files.pop(partition, None)

    def commit(
        self,
        files: list[str],
        next_offsets: Mapping[int, int],
        *,
        states: Mapping[int, dict[str, Any]] | None = None,
        other_offsets: Mapping[str, Mapping[int, int]] | None = None,
        stop: Event | None = None,
    ) -> None:
        """Commit `files` with the next offsets and (optionally) a new state per
        partition; then delete the state files they replace. A job reading more
        topics than its own commits their offsets too (`other_offsets`, per topic):
        all in the same commit."""
        properties = {offset_key(self.topic, p): str(o) for p, o in next_offsets.items()}
        for topic, offsets in (other_offsets or {}).items():
            properties.update({offset_key(topic, p): str(o) for p, o in offsets.items()})
        written: dict[int, str] = {}
        for partition, doc in (states or {}).items():
            path = new_state_path(self.table.spec.name, self.topic, partition)
            self.table.lake.write_json(self.table.lake.path(path), doc)
            properties[state_key(self.topic, partition)] = path
            written[partition] = path
        self.table.commit(files, properties, stop=stop)
        for partition, path in written.items():
            old = self._state_files.get(partition)
            self._state_files[partition] = path
            if old is not None:
                self.table.lake.delete(self.table.lake.path(old))
