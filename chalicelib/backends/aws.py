"""AWS adapters: CodeBuild + ECR build images, ECS Fargate runs notebook servers.

Clients are created on first use (never at import: import time is the Lambda cold start)
and can be injected, which is how the tests hand in moto- or Stubber-backed clients.
Every AWS error leaves these adapters as a domain error (``aws_common.aws_errors``).

The builder lives in ``aws_builds``, the stager and spawner in ``aws_tasks``, what they
share in ``aws_common``; callers import them from here.
"""

from __future__ import annotations

from chalicelib.backends.aws_builds import AwsBuilder
from chalicelib.backends.aws_common import aws_errors, domain_error
from chalicelib.backends.aws_stagings import AwsStager
from chalicelib.backends.aws_tasks import AwsSpawner

__all__ = ["AwsBuilder", "AwsSpawner", "AwsStager", "aws_errors", "domain_error"]
