"""`python -m portal`: serve the portal until SIGTERM or SIGINT."""

import logging
import sys

from aiohttp import web

from iot_common.logs import configure as configure_logging
from portal.app import create
from portal.settings import PortalSettings


def main() -> int:
    settings = PortalSettings.load()  # the environment, .env, then SECRETS_DIR (compose)
    configure_logging(settings.logging_level, settings.log_format)
    logging.getLogger(__name__).info(
        "portal on http://%s:%d/ (catalogue from %s, Trino %s:%d)",
        settings.portal_host,
        settings.portal_port,
        settings.stream_jobs_url,
        settings.trino_host or "(off)",
        settings.trino_port,
    )
    web.run_app(create(settings), host=settings.portal_host, port=settings.portal_port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
