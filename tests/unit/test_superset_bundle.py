"""The dashboards kept as code (bi/dashboards) hold together, and the import bundle
is rewritten for a stack's connection and schemas; `.env` is read and completed
with secrets without touching what is there."""

import importlib.util
import io
import stat
import string
import zipfile

import yaml
from hypothesis import given
from hypothesis import strategies as st

from local.common import ROOT, dotenv, ensure_secrets

BUNDLE = ROOT / "bi" / "dashboards"


def service_module():
    spec = importlib.util.spec_from_file_location(
        "superset_service", ROOT / "bi" / "superset_service.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docs(kind):
    return {p.name: yaml.safe_load(p.read_text()) for p in (BUNDLE / kind).rglob("*.yaml")}


def test_every_reference_of_the_bundle_resolves():
    databases = docs("databases")
    datasets = docs("datasets")
    charts = docs("charts")
    boards = docs("dashboards")
    assert len(databases) == 1 and len(datasets) >= 5 and len(charts) >= 5 and len(boards) >= 3
    db_uuids = {d["uuid"] for d in databases.values()}
    dataset_uuids = {d["uuid"] for d in datasets.values()}
    chart_uuids = {c["uuid"] for c in charts.values()}
    assert all(d["database_uuid"] in db_uuids for d in datasets.values())
    assert all(c["dataset_uuid"] in dataset_uuids for c in charts.values())
    on_boards = set()
    for board in boards.values():
        placed = {
            v["meta"]["chartId"]: v["meta"]["uuid"]
            for v in board["position"].values()
            if isinstance(v, dict) and v.get("type") == "CHART"
        }
        assert placed and set(placed.values()) <= chart_uuids, board["dashboard_title"]
        on_boards |= set(placed.values())
        for f in board["metadata"].get("native_filter_configuration", []):
            assert set(f["chartsInScope"]) <= set(placed), f["name"]
            for target in f["targets"]:
                assert target.get("datasetUuid", next(iter(dataset_uuids))) in dataset_uuids
    assert on_boards == chart_uuids  # no chart left off every dashboard


def test_the_datasets_name_our_schemas_so_the_import_can_map_them():
    for name, d in docs("datasets").items():
        assert d["schema"] in ("raw", "curated"), name
        if d.get("sql"):
            # every table the SQL names is schema-qualified, so the import can map it
            assert "FROM raw." in d["sql"] or "FROM curated." in d["sql"], name


def test_bundle_rewrites_connection_and_schemas():
    module = service_module()
    uri = "trino://someone:pw@127.0.0.1:12345/lake"
    trust = {"verify": "/there/ca.pem"}
    zipped = module.bundle(uri, {"raw": "raw_ab12", "curated": "curated_ab12"}, trust)
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        names = zf.namelist()
        contents = {n: yaml.safe_load(zf.read(n)) for n in names}
    assert len(names) == len(list(BUNDLE.rglob("*.yaml")))
    assert all(n.startswith("bundle/") for n in names)
    [database] = [d for n, d in contents.items() if "/databases/" in n]
    assert database["sqlalchemy_uri"] == uri
    assert database["extra"]["engine_params"]["connect_args"] == trust
    datasets = [d for n, d in contents.items() if "/datasets/" in n]
    assert {d["schema"] for d in datasets} == {"raw_ab12", "curated_ab12"}
    for d in datasets:
        sql = d.get("sql") or ""
        assert " raw." not in sql and " curated." not in sql, sql
        if "sensor_status" in sql:
            assert "curated_ab12.sensor_status" in sql
    # a mapping to the same names changes nothing but the URI
    same = module.bundle(uri, {"raw": "raw", "curated": "curated"})
    with zipfile.ZipFile(io.BytesIO(same)) as zf:
        for n in zf.namelist():
            if "/datasets/" in n:
                original = yaml.safe_load((BUNDLE / n.removeprefix("bundle/")).read_text())
                assert yaml.safe_load(zf.read(n)) == original


KEYS = st.text(alphabet=string.ascii_uppercase + "_", min_size=1, max_size=12)
VALUES = st.text(alphabet=string.ascii_letters + string.digits + "-_=/+.:@", max_size=40)


@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_dotenv_reads_what_was_written(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("env") / ".env"
    lines = ["# a comment", ""] + [f"{k}={v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    assert dotenv(path) == values


def test_ensure_secrets_adds_only_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("A_SECRET", raising=False)
    monkeypatch.delenv("B_SECRET", raising=False)
    monkeypatch.setenv("C_SECRET", "from-the-environment")
    path = tmp_path / ".env"
    path.write_text("A_SECRET=kept\n")
    added = ensure_secrets(("A_SECRET", "B_SECRET", "C_SECRET"), path)
    assert added == ["B_SECRET"]
    got = dotenv(path)
    assert got["A_SECRET"] == "kept" and len(got["B_SECRET"]) >= 24 and "C_SECRET" not in got
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secrets(("A_SECRET", "B_SECRET"), path) == []
    assert dotenv(path) == got
    assert dotenv(tmp_path / "missing") == {}


def test_export_sets_charts_in_scope_from_the_scope():
    module = service_module()
    chart = {"type": "CHART", "meta": {"chartId": 0}}
    board = {
        "position": {
            "CHART-a": {**chart, "meta": {"chartId": 4}},
            "CHART-b": {**chart, "meta": {"chartId": 7}},
            "ROOT_ID": {"type": "ROOT"},
        },
        "metadata": {
            "native_filter_configuration": [
                {"scope": {"rootPath": ["ROOT_ID"], "excluded": [7]}, "chartsInScope": [2]},
                {"scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": []},
            ]
        },
    }
    module.in_scope(board)
    scopes = [f["chartsInScope"] for f in board["metadata"]["native_filter_configuration"]]
    assert scopes == [[4], [4, 7]]


def test_export_maps_back_what_the_import_mapped():
    module = service_module()
    there = {"raw": "raw_ab12", "curated": "curated_ab12"}
    back = {v: k for k, v in there.items()}
    for path in BUNDLE.rglob("*.yaml"):
        rel = path.relative_to(BUNDLE).as_posix()
        original = yaml.safe_load(path.read_text())
        doc = yaml.safe_load(path.read_text())
        module.retarget(rel, doc, "trino://x:pw@127.0.0.1:1/lake", there, {"verify": "/ca.pem"})
        module.retarget(rel, doc, original.get("sqlalchemy_uri", ""), back)
        assert doc == original, rel


def test_the_committed_connection_has_no_password_and_the_import_gets_one(monkeypatch):
    module = service_module()
    [database] = docs("databases").values()
    assert database["sqlalchemy_uri"] == "trino://iot-superset@127.0.0.1:8443/lake"
    assert "connect_args" not in database["extra"]["engine_params"]
    monkeypatch.setenv("SUPERSET_TRINO_URI", "trino://iot-superset@h:1/lake")
    monkeypatch.setenv("SUPERSET_TRINO_PASSWORD", "p@ss:/w")
    monkeypatch.setenv("SUPERSET_TRINO_CA_FILE", "/x/ca.pem")
    assert module.trino_connection() == (
        "trino://iot-superset:p%40ss%3A%2Fw@h:1/lake",
        {"http_scheme": "https", "verify": "/x/ca.pem"},
    )
    monkeypatch.setenv("SUPERSET_TRINO_PASSWORD", "")
    assert module.trino_connection() == ("trino://iot-superset@h:1/lake", {})


def test_ensure_secrets_fills_a_secret_left_empty_as_in_env_example(tmp_path, monkeypatch):
    monkeypatch.delenv("MQTT_DEVICE_SECRET", raising=False)
    path = tmp_path / ".env"
    path.write_text("MQTT_DEVICE_SECRET=\nOTHER=x\n")  # copied from .env.example
    assert ensure_secrets(("MQTT_DEVICE_SECRET",), path) == ["MQTT_DEVICE_SECRET"]
    assert len(dotenv(path)["MQTT_DEVICE_SECRET"]) >= 24  # the last line of a name wins
    assert dotenv(path)["OTHER"] == "x"
