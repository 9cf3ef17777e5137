"""What the documents name, and whether it exists (issue 16: every command, file,
table, topic and setting the documents name exists).

Two halves:

* extraction, pure text in and references out: `references(markdown)` finds, outside
  fenced code, the inline code spans that name a file, a Kafka topic, a table or a
  setting, the relative links, and the commands (`make <target>`, `python -m
  <module>`) in code spans, shell blocks and indented blocks; `sql_statements`
  gives the statements of the ```sql blocks;
* checking, against `Facts` read once from the checkout (the Makefile's targets,
  `iot_common.topics`, `stream_jobs.tables` and the views `stream_jobs.catalog`
  creates, the settings classes' fields, the files): `problem(ref, facts, doc)` says
  what is wrong with one reference, or None.

Not checked, as not something of this checkout: URLs, URL paths (`/health`),
absolute and home paths, placeholders (anything with `<...>`), the running stack's
files (EXEMPT_* below: ./data, the virtualenvs, .env), paths whose first folder is
not ours and that have no file extension (the lake's `metadata/`, the MQTT topic
`sensors/#`), bare file names of run-time kinds (`ca.pem`, `latest.json`), other
software's names that look like settings (EXEMPT_SETTINGS), and the modules of other
software after `python -m`. Globs are checked: they must match something. A name
written with "(proposed)" right after it is exempt throughout its document: the
documents may describe what does not exist yet, once they say so.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent

# The line before a ```sql block that is not meant to run as written (DDL for
# admins, a template): <!-- sql: no-run -->
NO_RUN = re.compile(r"<!--\s*sql:\s*no-run\s*-->")
PROPOSED = re.compile(r"\s*\(proposed\)")

# -- exemptions, kept short: each is something that is not a file of this checkout ---

# Paths that exist only at run time, not in a checkout: ./data is the running stack's
# state (the lake, logins, logs), the virtualenvs are made by `make`, .env is the
# uncommitted copy of .env.example.
EXEMPT_PATH_PREFIXES = ("data/", "./data", ".venv")
EXEMPT_PATHS = frozenset({"data", ".env"})
# Names in backticks that look like a setting but belong to other software.
EXEMPT_SETTINGS = frozenset(
    {
        "PERMISSION_DENIED",  # Trino's error name for a refused statement
    }
)
# Extensions that make a backticked name without a `/` a file name to look for.
# Not .json, .pem, .db, .parquet: those bare names are the running stack's files
# (latest.json, ca.pem, password.db, ...), which a checkout does not have.
SOURCE_EXTENSIONS = frozenset(
    {
        ".py",
        ".md",
        ".sql",
        ".yml",
        ".yaml",
        ".toml",
        ".properties",
        ".xml",
        ".conf",
        ".java",
        ".sh",
        ".cfg",
        ".ini",
        ".env",  # versions.env
        ".example",  # .env.example
    }
)
# Extensions of files named with a path (then every kind is looked for).
FILE_EXTENSIONS = SOURCE_EXTENSIONS | {".json", ".txt", ".png", ".pem"}
CATALOGS = ("lake", "iceberg", "hive")
ZONES = ("raw", "curated")
# Iceberg's metadata tables, as Trino names them ("readings$snapshots").
METADATA_TABLES = frozenset(
    {
        "snapshots",
        "history",
        "files",
        "partitions",
        "properties",
        "manifests",
        "all_manifests",
        "refs",
        "entries",
        "all_entries",
        "metadata_log_entries",
    }
)
SHELL_LANGS = frozenset({"", "sh", "bash", "shell", "console", "text"})
# Folders of the checkout that hold no documentation's referents.
SKIP_DIRS = frozenset(
    {
        ".git",
        "data",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
    }
)


@dataclass(frozen=True)
class Ref:
    """One thing a document names."""

    kind: str  # file, link, make, module, topic, table, setting
    text: str  # as written
    line: int  # 1-based line in the document


@dataclass(frozen=True)
class CodeBlock:
    lang: str  # the fence's info string ("" for an indented block)
    text: str
    line: int  # the first line of the code
    end: int  # the block's last line (its closing fence)
    fenced: bool = True
    run: bool = True  # False when the line before the fence is <!-- sql: no-run -->


# -- extraction -------------------------------------------------------------------------

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)")
COMMAND_START = r"(?:^|(?<=[;&|(`])|(?<=\$ ))\s*"
MAKE = re.compile(COMMAND_START + r"make((?:\s+[-A-Za-z0-9_.=/'\"]+)+)", re.M)
PYTHON_M = re.compile(r"\bpython3?(?:\.\d+)?\s+-m\s+([A-Za-z_][\w.]*)")
SETTING = re.compile(r"^([A-Z][A-Z0-9]*(?:_[A-Z0-9*]+)+)(?:=.*)?$", re.S)
TOPIC = re.compile(r"^iot\.[\w.*-]+$")
TABLE = re.compile(
    r"^(?:(?P<catalog>lake|iceberg|hive)\.)?(?P<zone>raw|curated)\."
    r'(?P<q>"?)(?P<table>\w+)(?:\$(?P<meta>\w+))?(?P=q)(?:\.(?P<column>\w+))?$'
)
METADATA_TABLE = re.compile(r'^"(?P<table>\w+)\$(?P<meta>\w+)"$')
PATHLIKE = re.compile(r"^[\w.*/-]+$")


def code_blocks(text: str) -> list[CodeBlock]:
    """The fenced blocks and the indented code blocks of a Markdown text."""
    lines = text.split("\n")
    blocks: list[CodeBlock] = []
    i = 0
    prev_blank = True
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            marker, lang = fence.group(1), fence.group(2).lower()
            start = i + 1
            j = start
            while j < len(lines) and not lines[j].lstrip().startswith(marker):
                j += 1
            run = i == 0 or not NO_RUN.search(lines[i - 1])
            code = "\n".join(lines[start:j])
            blocks.append(CodeBlock(lang, code, start + 1, min(j + 1, len(lines)), True, run))
            i = j + 1
            prev_blank = False
            continue
        if prev_blank and line.startswith("    ") and line.strip():
            start = i
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            while j > start and not lines[j - 1].strip():
                j -= 1
            code = "\n".join(ln[4:] for ln in lines[start:j])
            blocks.append(CodeBlock("", code, start + 1, j, False))
            i = j
            prev_blank = False
            continue
        prev_blank = not line.strip()
        i += 1
    return blocks


def prose(text: str) -> str:
    """`text` with its code blocks blanked (newlines kept, so offsets keep their line)."""
    lines = text.split("\n")
    for block in code_blocks(text):
        first = block.line - 2 if block.fenced else block.line - 1  # from the fence
        for k in range(first, block.end):
            lines[k] = ""
    return "\n".join(lines)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def inline_code(text: str) -> Iterator[tuple[str, int, bool]]:
    """Each inline code span outside code blocks: its text (a line break inside it
    read as a space), its line, and whether "(proposed)" follows it."""
    body = prose(text)
    for m in INLINE.finditer(body):
        content = m.group(2)
        if "\n\n" in content:  # no span crosses a paragraph: an unpaired backtick
            continue
        proposed = bool(PROPOSED.match(body, m.end()))
        yield " ".join(content.split()), _line(body, m.start()), proposed


def links(text: str) -> Iterator[tuple[str, int, bool]]:
    """The targets of the Markdown links and images outside code."""
    body = prose(text)
    for m in LINK.finditer(body):
        target = m.group(1) or m.group(2)
        proposed = bool(PROPOSED.match(body, m.end()))
        yield target, _line(body, m.start()), proposed


def commands(code: str) -> Iterator[tuple[str, str, int, bool]]:
    """(kind, name, line within `code`, proposed) of each `make <target>` (kind
    make), `python -m <module>` (kind module) and path of ours (kind file: a word
    with a `/`) in a piece of shell; proposed when "(proposed)" follows on its line."""
    for m in MAKE.finditer(code):
        for word in m.group(1).split():
            word = word.strip("'\"")
            if word.startswith("-") or "=" in word:
                continue  # an option or a variable: the target comes after it
            yield "make", word, _line(code, m.start(1)), _proposed_on_line(code, m.end())
            break
    for m in PYTHON_M.finditer(code):
        yield "module", m.group(1), _line(code, m.start()), _proposed_on_line(code, m.end())
    for number, line in enumerate(code.split("\n"), 1):
        for word in line.split():
            word = word.strip("'\"()$;|&<>,")
            if "/" in word and file_candidate(word):
                yield "file", word, number, "(proposed)" in line


def _proposed_on_line(code: str, offset: int) -> bool:
    end = code.find("\n", offset)
    return "(proposed)" in code[offset : len(code) if end < 0 else end]


def file_candidate(span: str) -> bool:
    """Whether an inline code span reads as a path of this checkout."""
    if not PATHLIKE.match(span) or span.startswith(("/", "~")):
        return False  # a command, an expression, a URL path (/health), a placeholder
    if span.startswith(EXEMPT_PATH_PREFIXES) or span in EXEMPT_PATHS:
        return False
    suffix = PurePosixPath(span.rstrip("/")).suffix
    if "/" in span:
        return True  # checked when its first folder is ours (see `problem`)
    return suffix in SOURCE_EXTENSIONS


def classify(span: str) -> str | None:
    """The kind of reference an inline code span is, if any."""
    if TABLE.match(span) or METADATA_TABLE.match(span):
        return "table"
    if TOPIC.match(span):
        return "topic"
    if SETTING.match(span):
        return "setting"
    if file_candidate(span):
        return "file"
    return None


def references(text: str) -> list[Ref]:
    """Every reference of a Markdown document, once per line, sorted by kind and line.
    A name written with "(proposed)" right after it is left out throughout the
    document: it is said once that it does not exist yet."""
    found: list[tuple[Ref, bool]] = []
    for span, line, proposed in inline_code(text):
        kind = classify(span)
        if kind is not None:
            found.append((Ref(kind, span, line), proposed))
            continue
        for cmd_kind, name, _, on_line in commands(span):
            found.append((Ref(cmd_kind, name, line), proposed or on_line))
    for target, line, proposed in links(text):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # not a URL, mailto:, ...
            found.append((Ref("link", target, line), proposed))
    for block in code_blocks(text):
        if block.lang in SHELL_LANGS:
            for cmd_kind, name, offset, proposed in commands(block.text):
                found.append((Ref(cmd_kind, name, block.line + offset - 1), proposed))
    planned = {(r.kind, r.text) for r, proposed in found if proposed}
    refs = {r for r, _ in found if (r.kind, r.text) not in planned}
    return sorted(refs, key=lambda r: (r.kind, r.line, r.text))


def sql_statements(text: str) -> list[tuple[int, str, bool]]:
    """(line, statement, runs) of each statement of the ```sql blocks: split at `;`
    outside quotes and comments; a block after <!-- sql: no-run --> does not run."""
    out: list[tuple[int, str, bool]] = []
    for block in code_blocks(text):
        if block.lang != "sql":
            continue
        for offset, statement in split_sql(block.text):
            out.append((block.line + offset, statement, block.run))
    return out


def split_sql(sql: str) -> list[tuple[int, str]]:
    """The statements of a SQL text with the line (0-based) each starts on: split at
    `;` outside quotes, without `--` comments and without the `;`."""
    statements: list[tuple[int, str]] = []
    buf: list[str] = []
    start: int | None = None  # the line of the statement's first character
    quote: str | None = None
    i = 0
    while i < len(sql):
        c = sql[i]
        if quote is None and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        if quote is None and c == ";":
            statements.append((start or 0, "".join(buf).strip()))
            buf, start = [], None
        else:
            if quote is None and c in "'\"":
                quote = c
            elif c == quote:
                quote = None
            if start is None and not c.isspace():
                start = sql.count("\n", 0, i)
            buf.append(c)
        i += 1
    statements.append((start or 0, "".join(buf).strip()))
    return [(line, s) for line, s in statements if s]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> frozenset[str]:
    body = prose(text)
    return frozenset(slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", body, re.M))


# -- what exists --------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the checkout has, as the checks need it."""

    paths: frozenset[str]  # every file and folder, relative, posix
    make_targets: frozenset[str]
    topics: frozenset[str]
    property_names: frozenset[str]  # table properties named `iot.`..., `*` at a prefix
    tables: dict[tuple[str, str], frozenset[str]]  # (zone, table) -> its columns
    views: frozenset[tuple[str, str]]
    settings: frozenset[str]  # the settings classes' fields, upper-case
    code_names: frozenset[str]  # UPPER_SNAKE words of the code and configuration
    anchors: dict[str, frozenset[str]] = field(default_factory=dict)  # per .md file

    @property
    def basenames(self) -> frozenset[str]:
        return frozenset(PurePosixPath(p).name for p in self.paths)

    @property
    def top_level(self) -> frozenset[str]:
        return frozenset(p.split("/")[0] for p in self.paths)


def problem(ref: Ref, facts: Facts, doc: str) -> str | None:
    """What is wrong with `ref` of the document `doc` (a path relative to the
    checkout), or None when it names something that exists."""
    check = CHECKS[ref.kind]
    return check(ref.text, facts, doc)


def _exists(path: str, facts: Facts) -> bool:
    path = os.path.normpath(path).replace(os.sep, "/")
    if any(ch in path for ch in "*?["):
        return any(fnmatch.fnmatchcase(p, path) for p in facts.paths)
    return path in facts.paths


def _check_file(text: str, facts: Facts, doc: str) -> str | None:
    name = text.rstrip("/")
    here = str(PurePosixPath(doc).parent)
    if "/" not in text:
        if any(fnmatch.fnmatchcase(b, name) for b in facts.basenames):
            return None
        return "no file of that name in the checkout"
    first = name.split("/")[0]
    suffix = PurePosixPath(name).suffix
    ours = first in facts.top_level or _exists(f"{here}/{first}", facts)
    if not ours and suffix not in FILE_EXTENSIONS:
        return None  # a folder of the lake or an MQTT topic (metadata/, sensors/#)
    if _exists(name, facts) or _exists(f"{here}/{name}", facts):
        return None
    return "no such file or folder (paths are relative to the repository's root)"


def _check_link(text: str, facts: Facts, doc: str) -> str | None:
    target, _, anchor = text.partition("#")
    here = str(PurePosixPath(doc).parent)
    path = os.path.normpath(f"{here}/{target}").replace(os.sep, "/") if target else doc
    if target and path not in facts.paths:
        return f"the link's target {path} does not exist"
    if anchor and path in facts.anchors and anchor not in facts.anchors[path]:
        return f"{path} has no heading #{anchor}"
    return None


def _check_make(text: str, facts: Facts, doc: str) -> str | None:
    if text in facts.make_targets:
        return None
    return "the Makefile has no such target (`make help` lists them)"


def _check_module(text: str, facts: Facts, doc: str) -> str | None:
    parts = text.split(".")
    if parts[0] not in facts.top_level:
        return None  # not ours (pytest, venv, ...): the documents may name any tool
    base = "/".join(parts)
    if f"{base}.py" in facts.paths or f"{base}/__main__.py" in facts.paths:
        return None
    return f"no module {text} to run in the checkout ({base}.py or {base}/__main__.py)"


def _check_topic(text: str, facts: Facts, doc: str) -> str | None:
    contract = re.match(r"^(iot\.[\w.-]+?)\.v\d+(?:\.json)?$", text)
    if contract:
        name = text if text.endswith(".json") else f"{text}.json"
        if f"iot_common/contracts/{name}" in facts.paths:
            return None
        return f"no contract iot_common/contracts/{name}"
    for prop in facts.property_names:
        if text == prop or (prop.endswith("*") and text.startswith(prop[:-1])):
            return None
    if any(fnmatch.fnmatchcase(t, text) for t in facts.topics):
        return None
    return "not a topic of iot_common/topics.py, a contract or a table property of ours"


def _check_table(text: str, facts: Facts, doc: str) -> str | None:
    m = TABLE.match(text)
    if m:
        key = (m.group("zone"), m.group("table"))
        if key in facts.views:
            if m.group("meta") or m.group("column"):
                return "a view has no metadata tables, and its columns are not checked here"
            return None
        if key not in facts.tables:
            return "no such table (stream_jobs/tables.py) or view (stream_jobs/catalog.py)"
        column = m.group("column")
        if column and column not in facts.tables[key]:
            return f"{key[0]}.{key[1]} has no column {column} (stream_jobs/tables.py)"
        meta = m.group("meta")
        if meta and meta not in METADATA_TABLES:
            return f"Iceberg has no metadata table ${meta}"
        return None
    m = METADATA_TABLE.match(text)
    assert m is not None
    if not any(name == m.group("table") for _, name in facts.tables):
        return "no such table (stream_jobs/tables.py)"
    if m.group("meta") not in METADATA_TABLES:
        return f"Iceberg has no metadata table ${m.group('meta')}"
    return None


def _check_setting(text: str, facts: Facts, doc: str) -> str | None:
    m = SETTING.match(text)
    assert m is not None
    name = m.group(1)
    if name in EXEMPT_SETTINGS:
        return None
    known = facts.settings | facts.code_names
    if any(fnmatch.fnmatchcase(k, name) for k in known):
        return None
    return (
        "neither a field of a settings class (iot_common, mqtt_bridge, stream_jobs, portal, "
        "iot_data_generator, expectations) nor a name in the code or configuration "
        "(.env.example, docker-compose.yml, versions.env, the services' configs)"
    )


CHECKS = {
    "file": _check_file,
    "link": _check_link,
    "make": _check_make,
    "module": _check_module,
    "topic": _check_topic,
    "table": _check_table,
    "setting": _check_setting,
}


# -- reading the facts from the checkout ------------------------------------------------------


def walk(root: Path) -> Iterator[str]:
    """Every file and folder of the checkout (relative, posix), without the run-time
    state, the virtualenvs and the caches."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS and not d.startswith(".venv") and not d.endswith(".egg-info")
        )
        rel = Path(dirpath).relative_to(root)
        for name in [*dirnames, *filenames]:
            yield (rel / name).as_posix()


def make_targets(makefile: str) -> frozenset[str]:
    targets: set[str] = set()
    for m in re.finditer(r"^([^\s:#=][^:=]*?)\s*::?(?!=)", makefile, re.M):
        targets.update(t for t in m.group(1).split() if not t.startswith("$"))
    targets.discard(".PHONY")
    return frozenset(targets)


def topic_names() -> frozenset[str]:
    """The topics' default names: the `iot.` strings of iot_common.topics."""
    topics = importlib.import_module("iot_common.topics")
    return frozenset(
        v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str) and "." in v
    )


def property_names() -> frozenset[str]:
    """The table properties we name `iot.`...: the offsets, the state files, the
    migration's marker."""
    iceberg = importlib.import_module("stream_jobs.iceberg")
    checkpoint = importlib.import_module("stream_jobs.checkpoint")
    migrate = importlib.import_module("stream_jobs.migrate")
    maintenance = importlib.import_module("stream_jobs.maintenance")
    return frozenset(
        {
            f"{iceberg.OFFSET_PREFIX}*",
            f"{checkpoint.STATE_PREFIX}*",
            str(migrate.MIGRATED),
            str(maintenance.COMPACTION_PROPERTY),
        }
    )


def tables_and_views() -> tuple[dict[tuple[str, str], frozenset[str]], frozenset[tuple[str, str]]]:
    tables_mod = importlib.import_module("stream_jobs.tables")
    catalog = importlib.import_module("stream_jobs.catalog")
    tables = {
        (spec.zone, spec.name): frozenset(spec.documented_schema.names)
        for spec in tables_mod.TABLES
    }
    sqls = [
        *catalog.view_sqls("c", "raw", "curated"),
        catalog.sensor_status_sql("c", "raw", "curated"),
        catalog.live_view_sql("c", "raw", "kafka", "iot.readings", 60),
    ]
    views = frozenset(
        (m.group(1), m.group(2))
        for sql in sqls
        for m in re.finditer(r"CREATE OR REPLACE VIEW c\.(\w+)\.(\w+)", sql)
    )
    return tables, views


SETTINGS_MODULES = (
    "iot_common.settings",
    "mqtt_bridge.settings",
    "stream_jobs.settings",
    "portal.settings",
    "iot_data_generator.settings",
    "expectations.settings",
)


def settings_fields() -> frozenset[str]:
    """The environment variables the services' settings classes read."""
    from pydantic_settings import BaseSettings

    names: set[str] = set()
    for module in SETTINGS_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, type) and issubclass(value, BaseSettings):
                names.update(f.upper() for f in value.model_fields)
    return frozenset(names)


def code_names(root: Path, paths: frozenset[str]) -> frozenset[str]:
    """UPPER_SNAKE words of the code and configuration: every text file but the
    documents and the tests (a name only the tests or the docs use is not ours)."""
    words: set[str] = set()
    for rel in paths:
        top = rel.split("/")[0]
        if top in ("docs", "tests") or rel.endswith((".md", ".png", ".jar", ".ico")):
            continue
        path = root / rel
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        words.update(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*\b", text))
    return frozenset(words)


def read_facts(root: Path = ROOT) -> Facts:
    """The facts of the checkout at `root` (imports the project's modules)."""
    assert importlib.util.find_spec("iot_common") is not None, "run from the project's venv"
    paths = frozenset(walk(root))
    tables, views = tables_and_views()
    md = {p: anchors((root / p).read_text()) for p in paths if p.endswith(".md")}
    return Facts(
        paths=paths,
        make_targets=make_targets((root / "Makefile").read_text()),
        topics=topic_names(),
        property_names=property_names(),
        tables=tables,
        views=views,
        settings=settings_fields(),
        code_names=code_names(root, paths),
        anchors=md,
    )


def documents(root: Path = ROOT) -> list[str]:
    """The documents checked: README.md and docs/*.md."""
    return ["README.md", *sorted(p.relative_to(root).as_posix() for p in root.glob("docs/*.md"))]
