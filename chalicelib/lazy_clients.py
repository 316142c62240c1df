"""boto3 clients made on first use: building one is the costly part of a cold start, and a request
that never touches a service should not pay for its client.

    class AwsStager:
        ecs: LazyClient[ECSClient] = LazyClient("ecs")

        def __init__(self, settings, *, ecs=None):
            self.settings, self._ecs = settings, ecs   # a given client (moto, a Stubber) is used as it is

The region is the instance's ``region``, else its ``settings.region``. Clients are made under one lock:
boto3's default session is not safe to use from two threads at once, and the local server is threaded.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

C = TypeVar("C")
_MAKING = threading.Lock()


class LazyClient(Generic[C]):
    """A descriptor: the instance's client of ``service``, kept in the attribute ``_<name>``."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.attribute = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = f"_{name}"

    def __get__(self, instance: Any, owner: type | None = None) -> C:
        client = getattr(instance, self.attribute, None)
        if client is None:
            with _MAKING:
                client = getattr(instance, self.attribute, None)
                if client is None:
                    import boto3

                    region = getattr(instance, "region", None) or instance.settings.region
                    client = boto3.client(self.service, region_name=region)  # type: ignore[call-overload]
                    setattr(instance, self.attribute, client)
        return client  # type: ignore[no-any-return]
