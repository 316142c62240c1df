"""GitHttpResolver against real git: repositories made with `git`, served by `git upload-pack`
over HTTPS exactly as git's http-backend does, answers checked against `git rev-parse`.

There is no internet here: conftest's FakeDns answers a public address for every name, and the
resolver's ``connect`` is a ``Network`` that routes public addresses to the test servers on
127.0.0.1, whose certificates come from a throwaway CA (trustme). The resolver's own checks (the
DNS answer, TLS, redirects, the deadline) run exactly as in production."""

from __future__ import annotations

import shutil
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from chalicelib import errors
from chalicelib.repository_urls import normalize_repository, set_host_resolver, validate_repository_url
from chalicelib.resolver import GitHttpResolver, parse_advertisement
from tests.git_http import HOST, PUBLIC, GitServer, Network, Seen, commit, git, make_repo, pkt, serve

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("git")
    project = make_repo(root / "project")
    commit(project, "first")
    git(project, "tag", "light")  # lightweight tag on the first commit
    git(project, "tag", "-a", "v1.0", "-m", "release 1.0")  # annotated tag on the first commit
    commit(project, "second")
    git(project, "checkout", "-q", "-b", "feature")
    commit(project, "on a branch")
    git(project, "branch", "cafe1234")  # a branch whose name looks like an abbreviated sha
    git(project, "checkout", "-q", "main")

    trunk = make_repo(root / "trunk", branch="trunk")
    commit(trunk, "only")
    return {"project": project, "trunk": trunk, "empty": make_repo(root / "empty")}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server(repos: dict[str, Path], ca: trustme.CA) -> Iterator[GitServer]:
    yield from serve(repos, ca)


@pytest.fixture(scope="module")
def elsewhere(repos: dict[str, Path], ca: trustme.CA) -> Iterator[GitServer]:
    """A second server, on another port: where a refused redirect must not lead."""
    yield from serve(repos, ca)


@pytest.fixture
def network() -> Network:
    return Network()


@pytest.fixture
def make_resolver(ca: trustme.CA, network: Network) -> Callable[..., GitHttpResolver]:
    tls = ssl.create_default_context()
    ca.configure_trust(tls)

    def make(timeout: float = 5.0) -> GitHttpResolver:
        return GitHttpResolver(timeout, tls=tls, connect=network)

    return make


@pytest.fixture
def resolver(make_resolver: Callable[..., GitHttpResolver]) -> GitHttpResolver:
    return make_resolver()


@pytest.mark.parametrize(
    ("ref", "revision"),
    [
        ("HEAD", "HEAD"),
        ("", "HEAD"),
        ("main", "refs/heads/main"),
        ("feature", "refs/heads/feature"),
        ("light", "light^{commit}"),
        ("v1.0", "v1.0^{commit}"),
        ("refs/tags/v1.0", "v1.0^{commit}"),
        ("refs/heads/feature", "feature"),
        ("cafe1234", "refs/heads/cafe1234"),
        (" main ", "main"),
    ],
)
@pytest.mark.parametrize("suffix", ["", ".git"])
def test_refs_resolve_to_the_commit_git_names(
    server: GitServer, repos: dict[str, Path], resolver: GitHttpResolver, ref: str, revision: str, suffix: str
) -> None:
    commit = resolver.resolve(f"{server.url}/project{suffix}", ref)
    assert commit == git(repos["project"], "rev-parse", revision)


def test_an_annotated_tag_resolves_to_its_commit_not_the_tag_object(
    server: GitServer, repos: dict[str, Path], resolver: GitHttpResolver
) -> None:
    tag_object = git(repos["project"], "rev-parse", "v1.0")
    tagged_commit = git(repos["project"], "rev-parse", "v1.0^{commit}")
    assert tag_object != tagged_commit
    assert resolver.resolve(f"{server.url}/project", "v1.0") == tagged_commit


def test_head_follows_the_default_branch_whatever_its_name(
    server: GitServer, repos: dict[str, Path], resolver: GitHttpResolver
) -> None:
    assert resolver.resolve(f"{server.url}/trunk", "HEAD") == git(repos["trunk"], "rev-parse", "trunk")


def test_the_resolver_introduces_itself_as_git_to_the_host_the_url_names(
    server: GitServer, resolver: GitHttpResolver
) -> None:
    resolver.resolve(f"{server.url}/trunk", "trunk")
    assert server.requests[-1] == Seen("/trunk/info/refs?service=git-upload-pack", "git/binderless",
                                       f"{HOST}:{server.port}")
    assert server.server_names[-1] == HOST  # TLS asked for the name, though it connected to an address


def test_a_full_sha_is_returned_without_asking_the_server(server: GitServer, resolver: GitHttpResolver) -> None:
    before = len(server.requests)
    sha = "0123456789ABCDEF0123456789abcdef01234567"
    assert resolver.resolve(f"{server.url}/nowhere", sha) == sha.lower()
    assert len(server.requests) == before


def test_an_unknown_ref_is_not_found_naming_ref_and_repository(server: GitServer, resolver: GitHttpResolver) -> None:
    with pytest.raises(errors.NotFound) as caught:
        resolver.resolve(f"{server.url}/project", "no-such-branch")
    assert "no-such-branch" in caught.value.message and f"{server.url}/project" in caught.value.message


def test_an_abbreviated_sha_asks_for_the_full_one(
    server: GitServer, repos: dict[str, Path], resolver: GitHttpResolver
) -> None:
    short = git(repos["project"], "rev-parse", "--short=10", "main")
    with pytest.raises(errors.BadRequest, match="full 40-character sha"):
        resolver.resolve(f"{server.url}/project", short)


def test_an_empty_repository_has_no_head(server: GitServer, resolver: GitHttpResolver) -> None:
    with pytest.raises(errors.NotFound, match="is it empty"):
        resolver.resolve(f"{server.url}/empty", "HEAD")


@pytest.mark.parametrize("path", ["/missing", "/private", "/forbidden"])
def test_a_missing_or_private_repository_is_a_bad_request(
    server: GitServer, resolver: GitHttpResolver, path: str
) -> None:
    with pytest.raises(errors.BadRequest, match="not found or not public"):
        resolver.resolve(server.url + path, "main")


def test_a_web_page_is_not_a_git_repository(server: GitServer, resolver: GitHttpResolver) -> None:
    with pytest.raises(errors.BadRequest, match="not a git repository"):
        resolver.resolve(f"{server.url}/website", "main")


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/broken", "answered HTTP 500"),
        ("/busy", "answered HTTP 503"),
        ("/slow", "timed out"),
        ("/trickle", "timed out"),
    ],
)
def test_server_trouble_and_timeouts_ask_to_retry(
    server: GitServer, make_resolver: Callable[..., GitHttpResolver], path: str, says: str
) -> None:
    with pytest.raises(errors.Unavailable) as caught:
        make_resolver(0.3).resolve(server.url + path, "main")
    assert says in caught.value.message and "try again" in caught.value.message
    assert caught.value.headers == {"Retry-After": "10"}
    assert caught.value.status == 503


def test_an_unreachable_host_is_a_bad_request(resolver: GitHttpResolver) -> None:
    with pytest.raises(errors.BadRequest, match="could not be reached"):
        resolver.resolve(f"https://{HOST}:9/nothing-listens", "main")


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_only_https_urls_are_fetched(
    server: GitServer, network: Network, resolver: GitHttpResolver, scheme: str
) -> None:
    with pytest.raises(errors.BadRequest, match="must be an https URL"):
        resolver.resolve(f"{scheme}://{HOST}:{server.port}/project", "main")
    assert network.connected == []


def test_parsing_falls_back_to_the_symref_and_reports_server_errors() -> None:
    sha = "a" * 40
    headless = pkt(b"version 1\n") + pkt(f"{sha} refs/heads/dev\0symref=HEAD:refs/heads/dev agent=x\n".encode())
    assert parse_advertisement(headless + b"0000").lookup("HEAD") == sha
    with pytest.raises(ValueError, match="access denied"):
        parse_advertisement(pkt(b"ERR access denied\n"))
    with pytest.raises(ValueError):
        parse_advertisement(b"not pkt-lines")


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://github.com/binder-examples/requirements", "https://github.com/binder-examples/requirements"),
        ("  HTTPS://GitHub.COM/User/Repo.git/ ", "https://github.com/User/Repo"),
        ("https://gitlab.com/group/sub/repo/", "https://gitlab.com/group/sub/repo"),
        ("https://git.example.org:8443/r.git", "https://git.example.org:8443/r"),
        ("/srv/repos/project.git/", "/srv/repos/project.git"),
    ],
)
def test_normalize_repository_gives_one_spelling(url: str, normalized: str) -> None:
    assert normalize_repository(url) == normalized


@pytest.mark.parametrize(
    ("url", "options", "normalized"),
    [
        ("https://github.com/u/r.git", {}, "https://github.com/u/r"),
        ("https://[2606:4700::1]/u/r", {}, "https://[2606:4700::1]/u/r"),
        ("http://github.com/u/r", {"allow_http": True}, "http://github.com/u/r"),
        ("/srv/repos/r.git", {"allow_local": True}, "/srv/repos/r.git"),
        ("file:///srv/repos/r/", {"allow_local": True}, "file:///srv/repos/r"),
        ("http://127.0.0.1:8000/r", {"allow_http": True, "allow_local": True}, "http://127.0.0.1:8000/r"),
        ("https://GitHub.com/u/r", {"allowed_hosts": ["github.com"]}, "https://github.com/u/r"),
    ],
)
def test_validate_repository_url_accepts(url: str, options: dict[str, Any], normalized: str) -> None:
    assert validate_repository_url(url, **options) == normalized


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "must be a URL"),
        ("github.com/user/repo", "is not a URL"),
        ("git@github.com:user/repo.git", "is not a URL"),
        ("ftp://example.com/r", "scheme ftp:// is not supported"),
        ("http://github.com/u/r", "scheme http:// is not supported"),
        ("https:///u/r", "is not a URL"),
        ("https://user:secret@github.com/u/r", "must not contain credentials"),
        ("https://token@github.com/u/r", "must not contain credentials"),
        ("https://github.com:0/u/r", "port must be a number from 1 to 65535"),
        ("https://github.com:65536/u/r", "port must be a number from 1 to 65535"),
        ("https://github.com:http/u/r", "port must be a number from 1 to 65535"),
        ("https://github.com/u/my repo", "whitespace or control characters"),
        ("https://github.com/u/r\x00", "whitespace or control characters"),
        ("https://github.com/u/\u202er", "whitespace or control characters"),
        ("https://github.com/" + "r" * 2048, "longer than 2048"),
        ("https://github.com/u/r?tab=readme", "?query or #fragment"),
        ("https://github.com/u/r#main", "?query or #fragment"),
        ("https://bad_host..com/r", "not a valid host name"),
        ("https://[::1/r", "not a valid URL"),
        ("https://exämple.com/r", "xn--"),
        ("/srv/repos/r", "local repositories are not accepted"),
        ("file:///etc/passwd", "local repositories are not accepted"),
        ("https://localhost/r", "local or private address"),
        ("https://127.0.0.1/r", "local or private address"),
        ("https://10.0.0.5/r", "local or private address"),
        ("https://169.254.169.254/latest", "local or private address"),
        ("https://[::1]/r", "local or private address"),
        ("https://2130706433/r", "local or private address"),  # 127.0.0.1 spelled as one number
    ],
)
def test_validate_repository_url_refuses(url: str, says: str) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        validate_repository_url(url)
    assert says in caught.value.message


def test_validate_repository_url_checks_the_operators_hosts() -> None:
    with pytest.raises(errors.BadRequest, match="not allowed here; allowed: github.com, gitlab.com"):
        validate_repository_url("https://example.com/u/r", allowed_hosts=["gitlab.com", "github.com"])


def test_file_urls_must_name_a_local_path() -> None:
    with pytest.raises(errors.BadRequest, match="must name a local path"):
        validate_repository_url("file://server/share/r", allow_local=True)


# --- SSRF: the resolver fetches whatever a client names, from inside the VPC ----------------------

def test_the_resolver_connects_to_the_address_it_checked_and_looks_up_once(
    server: GitServer, repos: dict[str, Path], network: Network, resolver: GitHttpResolver
) -> None:
    """DNS rebinding: a public answer for the check, then the metadata service or the VPC."""
    asked: list[str] = []

    def rebinding(host: str) -> list[str]:
        asked.append(host)
        return [PUBLIC] if len(asked) == 1 else ["127.0.0.1", "10.0.0.1"]

    set_host_resolver(rebinding)
    assert resolver.resolve(f"{server.url}/project", "main") == git(repos["project"], "rev-parse", "main")
    assert asked == [HOST]
    assert network.connected == [(PUBLIC, server.port)]


@pytest.mark.parametrize(
    "answer",
    [["10.0.0.1"], [PUBLIC, "169.254.169.254"], ["127.0.0.1"], ["::ffff:10.0.0.1"], ["fd00::1"], [PUBLIC, "::1"]],
)
def test_a_name_resolving_to_any_private_address_is_refused_before_connecting(
    server: GitServer, network: Network, resolver: GitHttpResolver, answer: list[str]
) -> None:
    set_host_resolver(lambda host: answer)
    before = len(server.requests)
    with pytest.raises(errors.BadRequest, match=f"host {HOST} resolves to a local or private address"):
        resolver.resolve(f"{server.url}/project", "main")
    assert network.connected == [] and len(server.requests) == before


def test_the_next_checked_address_is_tried_when_one_is_down(
    server: GitServer, repos: dict[str, Path], dns: Any, network: Network, resolver: GitHttpResolver
) -> None:
    dns.answers[HOST] = ["140.82.112.4", PUBLIC]
    network.down.add("140.82.112.4")
    assert resolver.resolve(f"{server.url}/trunk", "HEAD") == git(repos["trunk"], "rev-parse", "trunk")
    assert network.connected == [("140.82.112.4", server.port), (PUBLIC, server.port)]


def test_the_certificate_must_be_for_the_host_the_url_names(
    server: GitServer, network: Network, resolver: GitHttpResolver
) -> None:
    before = len(server.requests)
    with pytest.raises(errors.BadRequest, match="could not be reached .*certificate"):
        resolver.resolve(f"https://impostor.test:{server.port}/project", "main")  # the server's certificate: git.test
    assert network.connected == [(PUBLIC, server.port)] and len(server.requests) == before


@pytest.mark.parametrize(
    "location",
    [
        "https://{host}:{port}/project/info/refs?service=git-upload-pack",
        "/project/info/refs?service=git-upload-pack",
        "../../project/info/refs?service=git-upload-pack",
    ],
)
def test_a_redirect_within_the_https_host_is_followed(  # GitHub's renamed repositories
    server: GitServer, repos: dict[str, Path], dns: Any, network: Network, resolver: GitHttpResolver, location: str
) -> None:
    server.redirects["/renamed"] = location.format(host=HOST, port=server.port)
    assert resolver.resolve(f"{server.url}/renamed", "feature") == git(repos["project"], "rev-parse", "feature")
    assert [seen.path for seen in server.requests[-2:]] == ["/renamed/info/refs?service=git-upload-pack",
                                                            "/project/info/refs?service=git-upload-pack"]
    assert dns.asked == [HOST] and network.connected == [(PUBLIC, server.port)] * 2


@pytest.mark.parametrize(
    "location",
    [
        "https://elsewhere.test:{other}/project/info/refs?service=git-upload-pack",  # another host
        "http://{host}:{port}/project/info/refs?service=git-upload-pack",  # plain http
        "https://{host}:{other}/project/info/refs?service=git-upload-pack",  # another port
        "//{host}:{other}/project/info/refs?service=git-upload-pack",  # another port, scheme-relative
    ],
)
def test_a_redirect_off_the_https_host_and_port_is_refused(
    server: GitServer, elsewhere: GitServer, network: Network, resolver: GitHttpResolver, location: str
) -> None:
    server.redirects["/away"] = location.format(host=HOST, port=server.port, other=elsewhere.port)
    before, elsewhere_before = len(server.requests), len(elsewhere.requests)
    with pytest.raises(errors.BadRequest, match=f"redirects to .*; only redirects within https://{HOST}:"):
        resolver.resolve(f"{server.url}/away", "main")
    assert len(server.requests) == before + 1 and len(elsewhere.requests) == elsewhere_before
    assert network.connected == [(PUBLIC, server.port)]


def test_a_redirect_loop_is_given_up_after_a_few_hops(server: GitServer, resolver: GitHttpResolver) -> None:
    before = len(server.requests)
    with pytest.raises(errors.BadRequest, match="redirects more than 5 times"):
        resolver.resolve(f"{server.url}/loop", "main")
    assert len(server.requests) - before == 6


@pytest.mark.parametrize("path", ["/slow-loop", "/trickle-headers"])
def test_one_deadline_bounds_the_whole_resolution(
    server: GitServer, make_resolver: Callable[..., GitHttpResolver], path: str
) -> None:
    """A server answering a piece at a time, each within any per-read timeout, across hops or in
    one answer's headers, cannot hold the resolver (and so the API request) past its deadline."""
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="timed out; try again") as caught:
        make_resolver(0.5).resolve(server.url + path, "main")
    assert time.monotonic() - started < 1.5
    assert caught.value.headers == {"Retry-After": "10"}


def test_a_hanging_dns_lookup_is_given_up_at_the_deadline(
    server: GitServer, network: Network, make_resolver: Callable[..., GitHttpResolver]
) -> None:
    released = threading.Event()
    set_host_resolver(lambda host: [PUBLIC] if released.wait(5) else [])
    started = time.monotonic()
    try:
        with pytest.raises(errors.Unavailable, match="timed out"):
            make_resolver(0.3).resolve(f"{server.url}/project", "main")
    finally:
        released.set()
    assert time.monotonic() - started < 1.5
    assert network.connected == []
