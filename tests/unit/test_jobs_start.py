"""The stream jobs (archive, 1-minute, quality, views, maintenance) start with the
Faust app, not after it: services added with `@app.service` wait until Faust's own
consumer group has an assignment and its recovery is done, so a rebalance that
stalls after a crash would hold every table's writer back."""

import json
import subprocess
import sys

from local.services import ROOT

# In a process of its own: importing the app makes Kafka clients, which would go
# on trying to reach a broker for the rest of the test run.
PROBE = """
import json, stream_jobs.app as a
print(json.dumps({
    "children": [type(c).__name__ for c in a.app._children],
    "extra_services": [s.__name__ for s in a.app._extra_services],
}))
"""


def test_the_jobs_are_a_dependency_of_the_app_itself():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "ArchiveJobs" in found["children"], found
    assert not found["extra_services"], "jobs added with @app.service wait for Faust"
