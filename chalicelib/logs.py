"""Structured JSON logs through powertools, shared with the chalicelib loggers.

No secret goes into a log line: our code never logs events, request headers or server records,
and the AWS SDK's own DEBUG output (the wire: request and response bodies, signing material)
is kept off whatever level the operator or the Lambda runtime sets.
"""

from __future__ import annotations

import logging

from chalicelib.config import get_settings

# Not the Chalice app name: Chalice already logs under "binderless", and a shared name doubles every line.
SERVICE = "binderless-core"
# At DEBUG these log every request and reply body: RunTask's overrides (a batch's BINDERLESS_BATCH_KEY),
# DynamoDB items (server tokens), DescribeTasks replies; and the signed headers (AWS session tokens).
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
WIRE_LEVEL = logging.WARNING


def configure_logging() -> logging.Logger:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging import utils

    logger = Logger(service=SERVICE, level=get_settings().log_level)
    utils.copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})
    quiet_wire_loggers()
    return logging.getLogger(SERVICE)


def quiet_wire_loggers() -> None:
    """The AWS SDK's loggers at WARNING, their children inheriting it, even when the root logs DEBUG."""
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(WIRE_LEVEL)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if isinstance(child, logging.Logger) and name.startswith(tuple(f"{wire}." for wire in WIRE_LOGGERS)):
            child.setLevel(logging.NOTSET)  # inherit WARNING: a child set to DEBUG would log the wire anyway
