"""The RefResolver contract: what a build request relies on to turn a ref into a commit. One suite
(``ResolverContract``), run against the HTTPS resolver (git's smart HTTP protocol, as GitHub serves it;
tests/git_http.py) and the local resolver (the git binary), over the same repositories made with git.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Callable, Iterator

import pytest
import trustme

from chalicelib import errors
from chalicelib.backends.base import RefResolver
from chalicelib.backends.local import LocalResolver
from chalicelib.resolver import GitHttpResolver
from tests.git_http import GitServer, Network, commit, git, make_repo, serve

Url = Callable[[str], str]  # a repository's name -> its URL for the resolver under test


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("git")
    project = make_repo(root / "project")
    commit(project, "first")
    git(project, "tag", "-a", "v1.0", "-m", "release 1.0")  # an annotated tag: a tag object, not a commit
    commit(project, "second")
    git(project, "branch", "feature")
    commit(project, "third")
    trunk = make_repo(root / "trunk", branch="trunk")
    commit(trunk, "only")
    return {"project": project, "trunk": trunk}


class ResolverContract:
    """Every RefResolver. Subclasses provide the ``resolver`` and ``url`` fixtures."""

    def test_a_branch_is_its_newest_commit(self, resolver: RefResolver, url: Url, repos: dict[str, Path]) -> None:
        assert resolver.resolve(url("project"), "main") == git(repos["project"], "rev-parse", "main")
        assert resolver.resolve(url("project"), "feature") == git(repos["project"], "rev-parse", "feature")

    def test_an_annotated_tag_is_the_commit_it_tags(self, resolver: RefResolver, url: Url,
                                                   repos: dict[str, Path]) -> None:
        assert resolver.resolve(url("project"), "v1.0") == git(repos["project"], "rev-parse", "v1.0^{commit}")

    def test_head_is_the_default_branch_whatever_its_name(self, resolver: RefResolver, url: Url,
                                                         repos: dict[str, Path]) -> None:
        assert resolver.resolve(url("trunk"), "HEAD") == git(repos["trunk"], "rev-parse", "trunk")

    def test_a_full_sha_is_itself(self, resolver: RefResolver, url: Url) -> None:
        assert resolver.resolve(url("project"), "AB" * 20) == "ab" * 20  # a commit no branch names (yet)

    def test_an_unknown_ref_is_not_found(self, resolver: RefResolver, url: Url) -> None:
        with pytest.raises(errors.NotFound, match="no-such-branch"):
            resolver.resolve(url("project"), "no-such-branch")

    def test_a_repository_that_cannot_be_read_is_a_bad_request(self, resolver: RefResolver, url: Url) -> None:
        with pytest.raises(errors.BadRequest):
            resolver.resolve(url("missing"), "main")


class TestGitHttpResolver(ResolverContract):
    @pytest.fixture(scope="class")
    def server(self, repos: dict[str, Path]) -> Iterator[tuple[GitServer, trustme.CA]]:
        ca = trustme.CA()
        for server in serve(repos, ca):
            yield server, ca

    @pytest.fixture
    def resolver(self, server: tuple[GitServer, trustme.CA]) -> GitHttpResolver:
        tls = ssl.create_default_context()
        server[1].configure_trust(tls)
        return GitHttpResolver(5.0, tls=tls, connect=Network())

    @pytest.fixture
    def url(self, server: tuple[GitServer, trustme.CA]) -> Url:
        return lambda name: f"{server[0].url}/{name}"


class TestLocalResolver(ResolverContract):
    @pytest.fixture
    def resolver(self) -> LocalResolver:
        return LocalResolver()

    @pytest.fixture
    def url(self, repos: dict[str, Path]) -> Url:
        return lambda name: f"file://{repos['project'].parent / name}"
