"""The ``amm`` command line. ``_app`` declares the commands; each concern's command body lives in
its own module here (``_config``, ``_demo``, ``_query``, ``_report``, ``_replay``)."""

from ._app import app, main

__all__ = ["app", "main"]
