"""Structured JSON logs through powertools, shared with the chalicelib loggers."""

from __future__ import annotations

import logging

from chalicelib.config import get_settings

# Not the Chalice app name: Chalice already logs under "binderless", and a shared name doubles every line.
SERVICE = "binderless-core"


def configure_logging() -> logging.Logger:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging import utils

    logger = Logger(service=SERVICE, level=get_settings().log_level)
    utils.copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})
    return logging.getLogger(SERVICE)
