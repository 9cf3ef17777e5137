"""supervisord for the local stack: its config file, and supervisorctl.

One [program] for each record of SERVICES, in their order, with the record's
command, priority and stop signal; each restarts whenever it exits, logs to
`<data>/logs/<name>.log`, and gets the same environment (the Python services' and
the metastore's). The config is written anew at every start; a supervisord that
runs already takes it up (supervisorctl update) and starts what is stopped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from local.common import ROOT, wait_for
from local.services import SERVICES, Stack


def conf_path(s: Stack) -> Path:
    return s.run_dir / "supervisord.conf"


def environment(env: dict[str, str]) -> str:
    """supervisord's `environment=` value: each value quoted with a quote it does not
    hold (a JSON value holds double quotes), `%` doubled (supervisord expands %(x)s)."""
    parts = []
    for key, value in env.items():
        quote = "'" if '"' in value else '"'
        if quote in value and "'" in value:
            raise ValueError(f"{key}: a value with both kinds of quote cannot be passed")
        parts.append(f"{key}={quote}{value.replace('%', '%%')}{quote}")
    return ",".join(parts)


def write_conf(s: Stack, only: frozenset[str] | None = None) -> Path:
    """The config of every enabled service (`only`: of these alone, e.g. for the soak)."""
    s.log_dir.mkdir(parents=True, exist_ok=True)
    s.run_dir.mkdir(parents=True, exist_ok=True)
    shared = {**s.python_env(), **s.metastore_env()}
    parts = [
        "[unix_http_server]",
        f"file={s.run_dir / 'supervisor.sock'}",
        "[supervisord]",
        f"logfile={s.log_dir / 'supervisord.log'}",
        f"pidfile={s.run_dir / 'supervisord.pid'}",
        f"directory={ROOT}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{s.run_dir / 'supervisor.sock'}",
    ]
    for service in SERVICES:
        if not service.enabled() or (only is not None and service.name not in only):
            continue
        own = service.env(s) if service.env is not None else {}
        parts += [
            f"[program:{service.name}]",
            "command=" + " ".join(service.command(s)),
            f"environment={environment({**shared, **own})}",
            f"priority={service.order}",
            f"autostart={'false' if service.after_ready else 'true'}",
            "autorestart=true",
            "startsecs=3",
            "startretries=100",
            f"stopsignal={service.stop_signal}",
            "stopwaitsecs=45",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={s.log_dir / (service.name + '.log')}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
        ]
    conf = conf_path(s)
    conf.write_text("\n".join(parts) + "\n")
    return conf


def ctl(conf: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
        capture_output=True,
        text=True,
        check=check,
    )


def running(conf: Path) -> bool:
    return conf.exists() and ctl(conf, "pid").returncode == 0


def start(conf: Path) -> None:
    """Every program of `conf` but those that wait for the others to be ready
    (`start_after_ready`): by the running supervisord, else a new one."""
    if running(conf):
        ctl(conf, "update")
        ctl(
            conf,
            "start",
            *(s.name for s in SERVICES if s.name in _programs(conf) and not s.after_ready),
        )
    else:
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], check=True
        )


def start_after_ready(conf: Path) -> None:
    """The programs that wait for the others (Service.after_ready), once they are ready."""
    names = [s.name for s in SERVICES if s.after_ready and s.name in _programs(conf)]
    if names:
        ctl(conf, "start", *names)


def _programs(conf: Path) -> set[str]:
    return {
        line[len("[program:") : -1]
        for line in conf.read_text().splitlines()
        if line.startswith("[program:")
    }


def shutdown(conf: Path) -> None:
    """supervisord and every program stopped (it is running)."""
    pid_file = conf.parent / "supervisord.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    ctl(conf, "shutdown")
    # supervisord stops answering before it has stopped its programs and exited
    wait_for(lambda: pid is None or not Path(f"/proc/{pid}").exists(), 120, "supervisord shutdown")
