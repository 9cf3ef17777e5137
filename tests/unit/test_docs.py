"""Issue 16: every file, command, topic, table and setting that README.md and
docs/*.md name exists in this checkout (tests/docs_refs.py says what counts as a
reference and what is exempt). One test per document and kind of reference, so a
failure names both; tests/integration/test_docs_sql.py runs the documents' SQL."""

from __future__ import annotations

import pytest

from tests.docs_refs import ROOT, Facts, Ref, documents, problem, read_facts, references

KINDS = {
    "files": ("file", "link"),
    "commands": ("make", "module"),
    "topics": ("topic",),
    "tables": ("table",),
    "settings": ("setting",),
}

WHAT_TO_DO = (
    "Make the document describe what exists: correct the name or drop it (or, if the "
    "document is right, fix the code). Something planned but not built is written with "
    '"(proposed)" right after it. What counts as a reference, and the few exemptions: '
    "tests/docs_refs.py."
)


@pytest.fixture(scope="module")
def facts() -> Facts:
    return read_facts()


def missing(doc: str, kinds: tuple[str, ...], facts: Facts) -> list[tuple[Ref, str]]:
    refs = [r for r in references((ROOT / doc).read_text()) if r.kind in kinds]
    found = [(r, problem(r, facts, doc)) for r in refs]
    return [(r, why) for r, why in found if why is not None]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("doc", documents())
def test_what_the_document_names_exists(doc: str, kind: str, facts: Facts) -> None:
    wrong = missing(doc, KINDS[kind], facts)
    lines = "\n".join(f"  {doc}:{r.line}: `{r.text}` ({r.kind}): {why}" for r, why in wrong)
    assert not wrong, f"{doc} names {len(wrong)} {kind} that do not exist:\n{lines}\n{WHAT_TO_DO}"


def test_the_documents_are_read(facts: Facts) -> None:
    """The checks above see what the documents name (not a vacuous pass)."""
    readme = {(r.kind, r.text) for r in references((ROOT / "README.md").read_text())}
    assert {("make", "up"), ("make", "test"), ("make", "sql")} <= readme
    assert {("table", "raw.readings"), ("table", "lake.curated.sensor_status")} <= readme
    assert {("topic", "iot.readings"), ("link", "docs/sql.md")} <= readme
    assert ("file", "iot_data_generator/sensors.json") in readme
    config = {(r.kind, r.text) for r in references((ROOT / "docs/configuration.md").read_text())}
    assert {("setting", "LAKE_URL"), ("setting", "TRINO_BI_PASSWORD")} <= config
    assert "docs/configuration.md" in documents() and documents()[0] == "README.md"
    # and what they name is read from the code, not from the documents
    assert {"up", "test", "sql", "help"} <= facts.make_targets
    assert "iot.readings.dlq" in facts.topics
    assert ("curated", "sensor_status") in facts.views
    assert "reason_code" in facts.tables[("raw", "rejected")]
    assert {"LAKE_URL", "KAFKA_TOPIC_QUALITY_STATUS", "QUALITY_WINDOW_MINUTES"} <= facts.settings
