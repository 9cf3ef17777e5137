"""The catalogue describes every dataset that exists and nothing else, each with
its purpose, lineage, guarantees and a description of every column or field."""

import json
import subprocess
import sys

from iot_common import contracts, topics
from stream_jobs.catalogue import datasets, view_names
from stream_jobs.tables import TABLES


def declared_topics():
    return {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}


def test_every_topic_table_and_view_is_described_and_nothing_else():
    described = {d.name: d.kind for d in datasets()}
    exist = {
        **{t: "topic" for t in declared_topics()},
        **{f"{s.zone}.{s.name}": "table" for s in TABLES},
        **{v: "view" for v in view_names()},
    }
    assert described == exist


def test_every_dataset_says_what_it_is_where_it_comes_from_and_what_it_promises():
    for d in datasets():
        assert d.purpose and d.lineage and d.guarantees and d.owner, d.name
        if d.kind != "view":
            assert d.columns and d.retention and d.partitioning and d.key, d.name
        for c in d.columns:
            assert c.description, f"{d.name}.{c.name} has no description"


def test_topics_have_a_released_contract_and_tables_their_declared_columns():
    subjects = contracts.versions()
    for d in datasets():
        if d.kind == "topic":
            assert d.name in subjects or f"{d.name}.headers" in subjects, d.name
    by_name = {d.name: d for d in datasets()}
    for spec in TABLES:
        columns = [c.name for c in by_name[f"{spec.zone}.{spec.name}"].columns]
        assert columns == spec.table_schema.names


def test_the_catalogue_prints_as_json_for_machines():
    out = subprocess.run(
        [sys.executable, "-m", "stream_jobs.catalogue"], capture_output=True, check=True
    )
    doc = json.loads(out.stdout)
    assert {d["name"] for d in doc} == {d.name for d in datasets()}
    readings = next(d for d in doc if d["name"] == "raw.readings")
    assert any(c["name"] == "ts" and "Event time" in c["description"] for c in readings["columns"])


def test_every_topic_has_an_example_its_contracts_accept():
    import jsonschema

    for d in datasets():
        if d.kind != "topic":
            assert d.example is None, d.name
            continue
        assert d.example is not None, f"{d.name} has no example message"
        subjects = contracts.versions()
        if d.name in subjects:
            value = d.example["value"]
            jsonschema.validate(value, contracts.schema(d.name))
        if f"{d.name}.headers" in subjects:
            jsonschema.validate(d.example["headers"], contracts.schema(f"{d.name}.headers"))
