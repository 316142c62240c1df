"""Local mode's embedded DynamoDB runs in a process of its own, and never outlives local mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import boto3
import psutil

from chalicelib.local_database import EmbeddedDynamoDB
from chalicelib.store.dynamo import Dynamo
from tests.local_mode import alive, wait_for

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


def test_it_serves_dynamodb_until_stopped() -> None:
    database = EmbeddedDynamoDB.start({**os.environ, **CREDENTIALS})
    process = psutil.Process(database.process.pid)
    try:
        client = boto3.client("dynamodb", endpoint_url=database.url, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106 (fake)
        Dynamo("binderless", "us-east-1", client).create_table()
        client.put_item(TableName="binderless", Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
        assert client.get_item(TableName="binderless", Key={"pk": {"S": "a"}, "sk": {"S": "b"}})["Item"]
    finally:
        database.stop()
    assert not alive(process)


def test_it_ends_when_local_mode_is_killed_outright() -> None:
    """No cleanup runs after SIGKILL: the database sees its stdin (a pipe from local mode) end."""
    code = ("import os; from chalicelib.local_database import EmbeddedDynamoDB; "
            "database = EmbeddedDynamoDB.start(dict(os.environ)); "
            "print(database.process.pid, flush=True); import time; time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **CREDENTIALS})
    assert parent.stdout is not None
    database = psutil.Process(int(parent.stdout.readline()))
    assert alive(database)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not alive(database), timeout=15, what="the database exits")
