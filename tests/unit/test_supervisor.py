"""supervisord's config for `make up`: every value reaches its service unchanged."""

from supervisor.datatypes import dict_of_key_value_pairs
from supervisor.options import UnhosedConfigParser

from local.stack import DEMO_FAULTS
from local.supervisor import environment


def test_every_environment_value_reaches_the_services_unchanged():
    env = {
        **DEMO_FAULTS,  # a JSON value, with double quotes
        "PLAIN": "x",
        "COMMA": "a,b",
        "PERCENT": "100%",
        "SPACES": "Sensor 5, Sensor 6",
    }
    parser = UnhosedConfigParser()
    parser.read_string(f"[program:x]\nenvironment={environment(env)}\n")
    # supervisord expands %(...)s in the value, then splits it into pairs
    assert dict_of_key_value_pairs(parser.saneget("program:x", "environment")) == env


def test_superset_alone_gets_its_secrets(tmp_path, monkeypatch):
    from local import services, supervisor
    from local.services import Stack

    monkeypatch.setenv("SUPERSET_SECRET_KEY", "the-key")
    monkeypatch.setenv("SUPERSET_ADMIN_PASSWORD", "the-password")
    for installed in (True, False):
        superset = next(s for s in services.SERVICES if s.name == "superset")
        monkeypatch.setattr(
            services,
            "SERVICES",
            tuple(
                s
                if s is not superset
                else services.Service(**{**vars(s), "enabled": lambda i=installed: i})
                for s in services.SERVICES
            ),
        )
        monkeypatch.setattr(supervisor, "SERVICES", services.SERVICES)
        parser = UnhosedConfigParser()
        parser.read_string(supervisor.write_conf(Stack(tmp_path / str(installed))).read_text())
        programs = [
            s.removeprefix("program:") for s in parser.sections() if s.startswith("program:")
        ]
        assert ("superset" in programs) is installed
        for program in programs:
            env = dict_of_key_value_pairs(parser.saneget(f"program:{program}", "environment"))
            if program == "superset":
                assert env["SUPERSET_SECRET_KEY"] == "the-key"
                assert env["SUPERSET_ADMIN_PASSWORD"] == "the-password"
                assert env["SUPERSET_TRINO_URI"].endswith("@127.0.0.1:8443/lake")
            else:
                assert "SUPERSET_ADMIN_PASSWORD" not in env, program


def test_the_generator_starts_only_once_the_rest_is_ready(tmp_path):
    """On a first start the broker keeps readings for the bridge only once its
    persistent session exists: the generator is not started with the others (the
    soak lost its first 7 seconds of readings so), `make up` starts it after."""
    from local import supervisor
    from local.services import Stack

    parser = UnhosedConfigParser()
    conf = supervisor.write_conf(Stack(tmp_path))
    parser.read_string(conf.read_text())
    autostart = {
        s.removeprefix("program:"): parser.saneget(s, "autostart")
        for s in parser.sections()
        if s.startswith("program:")
    }
    assert autostart.pop("iot_data_generator") == "false"
    assert set(autostart.values()) == {"true"}
    assert supervisor._programs(conf) >= {"iot_data_generator", "mqtt_bridge"}
