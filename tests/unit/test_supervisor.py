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
