"""The archive's storage: an fsspec file system under one root URL.

A local directory and S3 are one code path; the only difference is how a file
is made to appear atomically: S3 makes an object visible only once its upload
completed, a local file is written under a hidden temporary name (Trino and
Hive skip names starting with '.' or '_'), fsynced and renamed.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

import fsspec
import orjson
from fsspec.implementations.local import LocalFileSystem

from stream_jobs.errors import LakeError


class Lake:
    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)
        self.url = url
        if self.local:
            os.makedirs(self.root, exist_ok=True)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def uri(self, *parts: str) -> str:
        """A full URL of a path in the lake, as other engines (Trino, Hive) name it."""
        return self.uri_of(self.path(*parts))

    def uri_of(self, path: str) -> str:
        return f"file://{path}" if self.local else str(self.fs.unstrip_protocol(path))

    def relative(self, path_or_uri: str) -> str:
        """A path or URL inside the lake (file:/..., s3://...) relative to its root."""
        path = str(self.fs._strip_protocol(path_or_uri)).rstrip("/")
        if path.startswith("file:"):  # file:/x (one slash), as the metastore writes it
            path = path[len("file:") :]
        if not path.startswith(self.root + "/"):
            raise LakeError(f"{path_or_uri} is not inside the lake {self.url}")
        return path[len(self.root) + 1 :]

    def ensure_dir(self, path: str) -> None:
        """A folder that engines may check exists (object stores have none: no-op)."""
        if self.local:
            os.makedirs(path, exist_ok=True)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Make `path` hold `data`, all or nothing, durable when this returns."""
        try:
            if self.local:
                _write_local_atomic(path, data)
            else:
                self.fs.pipe_file(path, data)
        except OSError as exc:
            raise LakeError(f"cannot write {path}: {exc}") from exc

    def read_json(self, path: str) -> Any | None:
        try:
            return orjson.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def write_json(self, path: str, doc: object) -> None:
        self.write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def list_files(self, path: str) -> list[str]:
        """Visible files under `path`, recursively (hidden and temporary ones skipped)."""
        try:
            found = self.fs.find(path)
        except FileNotFoundError:
            return []
        return sorted(p for p in found if not p.rsplit("/", 1)[-1].startswith((".", "_")))


def _write_local_atomic(path: str, data: bytes) -> None:
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)
