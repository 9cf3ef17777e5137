"""The documents' reference extractor (tests/docs_refs.py) on its own: what it finds,
what it leaves alone, and its checks against hand-made facts."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.docs_refs import (
    Facts,
    Ref,
    code_blocks,
    make_targets,
    problem,
    references,
    slug,
    split_sql,
    sql_statements,
)

DOC = """# Title

Run `make up`, then `make sql LOGIN=bi` and read `lake.raw.readings` or
`curated.readings_1m`; the topic `iot.readings.dlq` and its contract
`iot.readings.headers.v1`. Settings: `LAKE_URL=s3://bucket/x`, `KAFKA_TOPIC_*`.
Files: `stream_jobs/archive.py`, [sql](docs/sql.md#time-travel), `trino/`.
Not files: `data/lake/warehouse`, `/health`, `<lake>/warehouse/<zone>/`, `metadata/`,
`https://example.org/a.py`, `sensors/<id>`. Planned: `make deploy` (proposed).

    make down     # stop (make logs F=1 follows)
    .venv/bin/python -m stream_jobs.backfill --sensors 3

```sh
make test && make bench  # make sure of nothing
make deploy  # said above to be proposed: exempt here too
python -m tests.bench --only day
```

```python
import make_believe  # `make nothing` here: not shell
```

<!-- sql: no-run -->
```sql
CREATE TABLE x (a int);
```

```sql
-- a comment; with a semicolon
SELECT ';' AS semi FROM lake.raw.readings;
SELECT 2
```
"""


def found(text: str) -> set[tuple[str, str]]:
    return {(r.kind, r.text) for r in references(text)}


def test_what_a_document_names() -> None:
    refs = found(DOC)
    assert {
        ("make", "up"),
        ("make", "sql"),
        ("make", "down"),
        ("make", "logs"),
        ("make", "test"),
        ("make", "bench"),
    } <= refs
    assert ("module", "stream_jobs.backfill") in refs and ("module", "tests.bench") in refs
    assert {("table", "lake.raw.readings"), ("table", "curated.readings_1m")} <= refs
    assert {("topic", "iot.readings.dlq"), ("topic", "iot.readings.headers.v1")} <= refs
    assert {("setting", "LAKE_URL=s3://bucket/x"), ("setting", "KAFKA_TOPIC_*")} <= refs
    assert {("file", "stream_jobs/archive.py"), ("file", "trino/")} <= refs
    assert ("link", "docs/sql.md#time-travel") in refs
    names = {text for _, text in refs}
    # runtime paths, URL paths, placeholders, URLs, English after `make`, Python, proposed
    for text in ("data/lake/warehouse", "/health", "<lake>/warehouse/<zone>/", "sensors/<id>"):
        assert text not in names
    assert not {"deploy", "sure", "nothing", "https://example.org/a.py"} & names
    assert ("make", "deploy") not in refs


def test_lines_are_the_documents() -> None:
    by_text = {r.text: r.line for r in references(DOC)}
    assert by_text["lake.raw.readings"] == 3
    assert by_text["stream_jobs/archive.py"] == 6
    assert by_text["down"] == 10
    assert by_text["bench"] == 14


def test_sql_blocks_their_statements_and_the_no_run_marker() -> None:
    statements = sql_statements(DOC)
    assert [(s, runs) for _, s, runs in statements] == [
        ("CREATE TABLE x (a int)", False),
        ("SELECT ';' AS semi FROM lake.raw.readings", True),
        ("SELECT 2", True),
    ]
    lines = DOC.split("\n")
    for line, statement, _ in statements:
        assert lines[line - 1].startswith(statement.split("\n")[0])


def test_code_blocks() -> None:
    blocks = code_blocks(DOC)
    assert [(b.lang, b.fenced) for b in blocks] == [
        ("", False),
        ("sh", True),
        ("python", True),
        ("sql", True),
        ("sql", True),
    ]
    assert blocks[0].text.startswith("make down")
    # an empty block, an unclosed one: the prose around them is still read
    assert found("```\n```\nRun `make up`.\n") == {("make", "up")}
    assert found("Run `make up`.\n\n```sh\nmake down\n") == {("make", "up"), ("make", "down")}


def test_makefile_targets() -> None:
    makefile = (
        "SHELL := /bin/bash\nPY ?= python3\n.PHONY: a b\n"
        "a: ## A\n\t$(PY) -m x\nb c: a\n$(VENV)/.installed: x\n\ttouch $@\n"
    )
    assert make_targets(makefile) == {"a", "b", "c"}


def test_slugs_are_githubs() -> None:
    assert slug("The commit protocol: why exactly once") == "the-commit-protocol-why-exactly-once"
    assert (
        slug("Our Parquet files, added with `add_files`")
        == "our-parquet-files-added-with-add_files"
    )


FACTS = Facts(
    paths=frozenset(
        {
            "docs",
            "docs/sql.md",
            "stream_jobs",
            "stream_jobs/archive.py",
            "stream_jobs/backfill.py",
            "trino",
            "iot_common",
            "iot_common/contracts",
            "iot_common/contracts/iot.readings.v1.json",
        }
    ),
    make_targets=frozenset({"up", "sql"}),
    topics=frozenset({"iot.readings", "iot.readings.dlq"}),
    property_names=frozenset({"iot.kafka.*", "iot.migrated-from-hive"}),
    tables={("raw", "readings"): frozenset({"sensor_id", "ts"})},
    views=frozenset({("curated", "readings_1m")}),
    settings=frozenset({"LAKE_URL", "KAFKA_TOPIC_READINGS"}),
    code_names=frozenset({"TRINO_JAVA_HOME"}),
    anchors={"docs/sql.md": frozenset({"time-travel"})},
)


def check(kind: str, text: str, doc: str = "README.md") -> str | None:
    return problem(Ref(kind, text, 1), FACTS, doc)


def test_checks_pass_what_exists() -> None:
    for kind, text in [
        ("file", "stream_jobs/archive.py"),
        ("file", "trino/"),
        ("file", "archive.py"),
        ("file", "metadata/"),  # a lake folder, not ours: not looked for
        ("link", "docs/sql.md#time-travel"),
        ("make", "up"),
        ("module", "stream_jobs.backfill"),
        ("module", "pytest"),  # not ours: not looked for
        ("topic", "iot.readings.dlq"),
        ("topic", "iot.readings.v1"),
        ("topic", "iot.kafka.iot.readings.0"),
        ("topic", "iot.migrated-from-hive"),
        ("table", "lake.raw.readings"),
        ("table", "raw.readings.ts"),
        ("table", 'iceberg.raw."readings$snapshots"'),
        ("table", '"readings$files"'),
        ("table", "hive.curated.readings_1m"),
        ("setting", "LAKE_URL=s3://x"),
        ("setting", "KAFKA_TOPIC_*"),
        ("setting", "TRINO_JAVA_HOME"),
        ("setting", "PERMISSION_DENIED"),  # exempt: Trino's
    ]:
        assert check(kind, text) is None, (kind, text)
    assert check("link", "sql.md#time-travel", "docs/x.md") is None


def test_checks_find_what_does_not() -> None:
    for kind, text in [
        ("file", "stream_jobs/archiv.py"),
        ("file", "stream_job/archive.py"),
        ("file", "docs/gone/"),
        ("file", "nothere.py"),
        ("link", "docs/sql.md#no-such-heading"),
        ("link", "docs/nothere.md"),
        ("make", "deploy"),
        ("module", "stream_jobs.nothere"),
        ("topic", "iot.ingest"),
        ("topic", "iot.sensors.v2"),
        ("table", "raw.readingz"),
        ("table", "raw.readings.value_x"),
        ("table", 'raw."readings$nothing"'),
        ("table", '"sensors$files"'),
        ("table", "curated.readings_1m.mean"),  # a view's columns are not known here
        ("setting", "COMPACTION_ENABLED"),
        ("setting", "HOST_*_BIND"),
    ]:
        assert check(kind, text) is not None, (kind, text)


prose_text = st.text(
    alphabet=st.characters(blacklist_characters="`", blacklist_categories=("Cs",)), max_size=200
)


@given(st.text(max_size=400))
def test_extraction_never_raises(text: str) -> None:
    refs = references(text)
    assert all(r.line >= 1 for r in refs)
    sql_statements(text)
    code_blocks(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())  # one paragraph line: no code block, no line break


name = st.from_regex(r"[a-z][a-z0-9]{0,7}(_[a-z0-9]{1,5}){0,2}", fullmatch=True)
written = st.one_of(
    st.builds(lambda a, b: (f"stream_jobs/{a}_{b}.py", "file"), name, name),
    st.builds(lambda z, t: (f"lake.{z}.{t}", "table"), st.sampled_from(["raw", "curated"]), name),
    st.builds(lambda t: (f"iot.{t}", "topic"), name),
    st.builds(lambda a, b: (f"{a}_{b}".upper(), "setting"), name, name),
)


@given(prose_text, written, prose_text)
def test_a_reference_in_backticks_is_found(before: str, ref: tuple[str, str], after: str) -> None:
    text, kind = ref
    before, after = _one_line(before), _one_line(after)
    assume(not after.startswith("(proposed)"))
    doc = f"# T\n\nSee {before} `{text}` {after}\n"
    assert Ref(kind, text, 3) in references(doc)


@given(st.lists(st.sampled_from(["SELECT 1", "SELECT 'a;b'", "VALUES (1, 2)"]), max_size=5))
def test_split_sql_gives_back_the_statements(statements: list[str]) -> None:
    sql = "".join(f"-- note\n{s};\n" for s in statements)
    assert [s for _, s in split_sql(sql)] == statements
    assert [line for line, _ in split_sql(sql)] == [2 * i + 1 for i in range(len(statements))]
