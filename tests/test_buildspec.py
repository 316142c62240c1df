"""buildspec.yml's repo2docker command, run for real: moto never runs a buildspec.

The command line is taken from buildspec.yml itself and run by bash, as CodeBuild runs it, with
the variables the API hands a build (``AwsBuilder.start``'s StartBuild request, captured) for a git
repository on disk, and the buildspec's own ``env.variables``. We run as root, as CodeBuild does.

There is no Docker daemon here, so the build itself cannot run. ``--no-build`` (repo2docker's dry
run: clone, check out the commit, pick a buildpack, print the Dockerfile) checks everything up to
the daemon. It also skips repo2docker's refusal to build for root, so the refusal is checked
separately on the full command, which stops at the missing daemon once its arguments passed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from chalicelib.backends.aws import AwsBuilder
from chalicelib.backends.base import BuildRequest
from chalicelib.config import Settings
from scripts.cfn import BUILDSPEC, ROOT
from tests.helpers import JsonHandler
from tests.local_repo import make_repository

REGION = "us-east-1"
REPO_URI = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/binderless"
SPEC: dict[str, Any] = yaml.safe_load(BUILDSPEC.read_text())
ROOT_REFUSAL = "Root as the primary user in the image is not permitted."


def commands(phase: str) -> list[str]:
    return list(SPEC["phases"][phase]["commands"])


REPO2DOCKER = next(c for c in commands("build") if c.startswith("jupyter-repo2docker "))
# The command as it was before --user-id: repo2docker then takes the caller's uid, 0 on CodeBuild.
WITHOUT_USER_ID = REPO2DOCKER.replace("--user-id 1000 ", "")


class _EmptyDataverseList(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.reply(200, {"installations": []})


@pytest.fixture(scope="module")
def dataverse_list() -> Iterator[str]:
    """repo2docker's Dataverse provider downloads the list of Dataverse sites for any URL (CodeBuild
    reaches the real one); this machine has no internet, so it gets an empty list from here."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyDataverseList)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/data.json"
    server.shutdown()


@pytest.fixture
def build_variables(tmp_path: Path) -> dict[str, str]:
    """The environment variable overrides the API sends StartBuild for a repository on disk."""
    commit = make_repository(tmp_path / "repo", {"requirements.txt": "", "hello.py": "print('hello')\n"})
    ecr, codebuild = boto3.client("ecr", region_name=REGION), boto3.client("codebuild", region_name=REGION)
    sent: dict[str, str] = {}
    codebuild.meta.events.register(
        "provide-client-params.codebuild.StartBuild",
        lambda params, **_: sent.update({v["name"]: v["value"] for v in params["environmentVariablesOverride"]}),
    )
    with Stubber(ecr) as ecr_stub, Stubber(codebuild) as codebuild_stub:
        ecr_stub.add_client_error("describe_images", service_error_code="ImageNotFoundException")
        codebuild_stub.add_response("start_build", {"build": {"id": "binderless-repo2docker:b-1"}})
        request = BuildRequest(image_name="r2d-local-repo-0123456789ab", repository=f"file://{tmp_path / 'repo'}",
                               ref="main", commit=commit)
        AwsBuilder(Settings(region=REGION, ecr_repository_uri=REPO_URI), codebuild=codebuild, ecr=ecr).start(request)
    assert sent["COMMIT"] == commit
    return sent


def run_command(command: str, variables: dict[str, str], tmp_path: Path,
                dataverse: str) -> subprocess.CompletedProcess[str]:
    """``command`` as CodeBuild runs it: bash, the buildspec's variables, then the build's overrides."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if shutil.which("hg") is None:
        # repo2docker's Mercurial provider runs `hg identify URL` first; the build installs mercurial
        # (buildspec install phase), which answers "not found" (exit 255) for a git repository.
        (bin_dir / "hg").write_text("#!/bin/sh\necho 'abort: repository not found' >&2\nexit 255\n")
        (bin_dir / "hg").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **{name: str(value) for name, value in SPEC["env"]["variables"].items()},
        **variables,
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "HOME": str(home),
        "R2D_DATAVERSE_INSTALLATIONS_URL": dataverse,
        # Never reach a Docker daemon this machine might have: the full command must stop at the engine.
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
    }
    return subprocess.run([SPEC["env"]["shell"], "-c", command], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_tests_run_the_repo2docker_version_the_build_installs() -> None:
    import repo2docker

    pins = re.findall(r"^jupyter-repo2docker==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M)
    version = SPEC["env"]["variables"]["REPO2DOCKER_VERSION"]

    assert pins == [version] == [repo2docker.__version__] == [AwsBuilder.info["repo2docker-version"]]  # /versions
    install = " ".join(commands("install"))
    assert '"jupyter-repo2docker==${REPO2DOCKER_VERSION}"' in install
    assert '"mercurial==${MERCURIAL_VERSION}"' in install


def test_the_buildspec_command_prepares_the_build_as_root(build_variables: dict[str, str], tmp_path: Path,
                                                          dataverse_list: str) -> None:
    dry_run = REPO2DOCKER.replace("jupyter-repo2docker ", "jupyter-repo2docker --no-build ", 1)

    result = run_command(dry_run, build_variables, tmp_path, dataverse_list)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Picked Git content provider" in result.stderr  # cloned the repository, checked out COMMIT
    dockerfile = result.stdout
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == [SPEC["env"]["variables"]["BASE_IMAGE"]]
    assert "ARG NB_UID" in dockerfile and ROOT_REFUSAL not in result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is of root; CodeBuild (and CI here) run as root")
@pytest.mark.parametrize(("command", "refused"), [(REPO2DOCKER, False), (WITHOUT_USER_ID, True)],
                         ids=["buildspec", "without --user-id"])
def test_repo2docker_refuses_root_unless_given_a_user_id(command: str, refused: bool, build_variables: dict[str, str],
                                                          tmp_path: Path, dataverse_list: str) -> None:
    result = run_command(command, build_variables, tmp_path, dataverse_list)
    output = result.stdout + result.stderr

    assert result.returncode == 1  # refused, or (no daemon here) stopped at the container engine
    assert (ROOT_REFUSAL in output) is refused, output
    if not refused:
        assert "docker" in output.strip().splitlines()[-1], output  # it got as far as the engine


def test_the_base_image_comes_from_ecr_public_with_repo2dockers_tag() -> None:
    from repo2docker.app import Repo2Docker

    default = str(Repo2Docker.base_image.default_value)
    base = SPEC["env"]["variables"]["BASE_IMAGE"]

    # ECR Public mirrors Docker's official images at public.ecr.aws/docker/library/<name>.
    assert default.startswith("docker.io/library/buildpack-deps:")
    assert base == default.replace("docker.io/library/", "public.ecr.aws/docker/library/", 1)
    assert '--Repo2Docker.base_image="$BASE_IMAGE"' in REPO2DOCKER
    login = next(c for c in commands("pre_build") if "ecr-public" in c)
    # ECR Public's API (and so its login) lives in us-east-1, whatever region the build runs in.
    assert login.startswith("aws ecr-public get-login-password --region us-east-1 | docker login")
    assert "--password-stdin public.ecr.aws ||" in login  # a failed login leaves pulls anonymous, not the build failed
