"""The stream jobs (archive, 1-minute, quality, views, maintenance) start with the
Faust app, not after it: services added with `@app.service` wait until Faust's own
consumer group has an assignment and its recovery is done, so a rebalance that
stalls after a crash would hold every table's writer back."""

import stream_jobs.app as jobs_app


def test_the_jobs_are_a_dependency_of_the_app_itself():
    children = [type(c).__name__ for c in jobs_app.app._children]
    assert "ArchiveJobs" in children
    assert not jobs_app.app._extra_services, "jobs added with @app.service wait for Faust"
