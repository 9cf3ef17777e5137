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

Several members of one consumer group (several stream-job processes) write one
table, each the partitions the group assigned it. Ownership is in the table too:
* On assignment a job first claims its partitions: one commit sets
  `iot.owner.<topic>.<partition>` to a new token of its own. Only then does it read
  the offsets and state to resume from (and delete the state files nothing names).
* Every commit of a partition's rows, offset and state is conditional on the
  table still naming this job's claim as the partition's owner (IcebergTable.commit
  `expect`: checked by the metastore commit under the table's lock). A member
  whose partitions were taken while it was stalled (a pause longer than the
  group's session timeout, a metastore that hung) can therefore never commit them
  after the new owner read its starting point: its commit raises Fenced, nothing
  of it lands, and it drops what it held (the new owner reads it again). So the
  table's commits of a partition form one chain, each starting where the last
  ended, whichever member made it: no reading lost, none twice.
* A member leaving cleanly commits what it holds when the group revokes its
  partitions, before the group hands them on; one killed leaves them at the last
  commit that landed, and the next owner resumes there.
* Commits of different members set different properties (their own partitions'):
  none overwrites another's offsets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from stream_jobs.errors import Fenced, LakeError
from stream_jobs.iceberg import IcebergTable, committed_offsets, offset_key

STATE_PREFIX = "iot.state."  # table property: iot.state.<topic>.<partition> = state file
OWNER_PREFIX = "iot.owner."  # table property: iot.owner.<topic>.<partition> = owner's claim


def state_key(topic: str, partition: int) -> str:
    return f"{STATE_PREFIX}{topic}.{partition}"


def owner_key(topic: str, partition: int) -> str:
    return f"{OWNER_PREFIX}{topic}.{partition}"


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
    _claims: dict[int, str] = field(default_factory=dict)  # this job's claim token, per partition

    def claim(self, partitions: Iterable[int], *, stop: Event | None = None) -> dict[str, str]:
        """Make this job the owner of `partitions` in the table (one commit of new
        tokens): from then on no commit of them by a former owner lands. Returns the
        table's properties once the claim landed: what to recover from."""
        tokens = {p: uuid.uuid4().hex for p in partitions}
        if tokens:
            owners = {owner_key(self.topic, p): t for p, t in tokens.items()}
            # Protocol "claim": the crash points of the writers' commits (iceberg.*)
            # stay on the commits of rows.
            self.table.commit([], owners, stop=stop, protocol="claim")
        self._claims.update(tokens)
        return dict(self.table.refresh().properties)

    @property
    def claimed(self) -> list[int]:
        return sorted(self._claims)

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
        """A partition no longer assigned: its state file and its claim are another
        job's now (or will be)."""
        self._state_files.pop(partition, None)
        self._claims.pop(partition, None)

    def forget_all(self) -> None:
        for partition in {*self._state_files, *self._claims}:
            self.forget(partition)

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
        all in the same commit, whose owner is the owner of the partitions of its
        own topic. Lands only while the table names this job's claims as the owner
        of every partition it writes; else raises Fenced (nothing landed)."""
        partitions = sorted({*next_offsets, *(states or {})})
        unclaimed = [p for p in partitions if p not in self._claims]
        if unclaimed:
            raise Fenced(f"{self.table.ident}: {self.topic} {unclaimed} not claimed by this job")
        expect: dict[str, str | None] = {
            owner_key(self.topic, p): self._claims[p] for p in partitions
        }
        properties = {offset_key(self.topic, p): str(o) for p, o in next_offsets.items()}
        for topic, offsets in (other_offsets or {}).items():
            properties.update({offset_key(topic, p): str(o) for p, o in offsets.items()})
        written: dict[int, str] = {}
        for partition, doc in (states or {}).items():
            path = new_state_path(self.table.spec.name, self.topic, partition)
            self.table.lake.write_json(self.table.lake.path(path), doc)
            properties[state_key(self.topic, partition)] = path
            written[partition] = path
        # Fenced: the state files written above are named by nothing; the owner's
        # next recovery of the partition deletes them.
        self.table.commit(files, properties, stop=stop, expect=expect)
        for partition, path in written.items():
            old = self._state_files.get(partition)
            self._state_files[partition] = path
            if old is not None:
                self.table.lake.delete(self.table.lake.path(old))
