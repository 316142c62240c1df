"""BinderHub launch specs: what each provider's spec means, what is refused, and the canonical spec back."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from chalicelib.errors import BadRequest
from chalicelib.providers import MAX_SPEC_LENGTH, PROVIDERS, Spec, parse, repoproviders

SHA = "0123456789abcdef0123456789abcdef01234567"


def refused(provider: str, spec: str, match: str | None = None, **options: bool) -> str:
    with pytest.raises(BadRequest, match=match) as caught:
        parse(provider, spec, **options)
    return caught.value.message


# GitHub


def test_github_spec_with_ref():
    assert parse("gh", "org/repo/main") == Spec("gh", "https://github.com/org/repo", "main")


def test_github_ref_may_contain_slashes():
    assert parse("gh", "org/repo/feature/x").ref == "feature/x"


def test_github_without_ref_is_head():
    assert parse("gh", "org/repo") == Spec("gh", "https://github.com/org/repo", "HEAD")


def test_github_drops_trailing_dot_git():
    assert parse("gh", "org/repo.git/v1").repository == "https://github.com/org/repo"


def test_github_accepts_sha_and_usual_names():
    assert parse("gh", f"my-org/my_repo.py/{SHA}").ref == SHA
    assert parse("gh", "Org.Name/Repo-1/v1.2.3").repository == "https://github.com/Org.Name/Repo-1"


@pytest.mark.parametrize("spec", ["org", "-org/repo/main", "org/re po/main", "o$rg/repo/main", "org/../main",
                                  "../repo/main", "org//main", "/repo/main", "org/.git/main"])
def test_github_refuses_bad_names(spec):
    refused("gh", spec)


def test_github_names_the_expected_form():
    assert '"org/repo/ref"' in refused("gh", "just-one-part")


# GitLab


def test_gitlab_unescapes_the_namespace():
    assert parse("gl", "group%2Fsub%2Fproject/main") == Spec("gl", "https://gitlab.com/group/sub/project", "main")


def test_gitlab_ref_may_contain_slashes_and_may_be_missing():
    assert parse("gl", "group%2Fproject/feature/x").ref == "feature/x"
    assert parse("gl", "group%2Fproject").ref == "HEAD"


@pytest.mark.parametrize("spec", ["project/main", "group%2F/main", "group%2F..%2Fproject/main",
                                  "-group%2Fproject/main", "group%2Fpro%20ject/main"])
def test_gitlab_refuses_bad_namespaces(spec):
    refused("gl", spec)


# Gist


def test_gist_with_and_without_ref():
    assert parse("gist", "user/abc123") == Spec("gist", "https://gist.github.com/user/abc123", "HEAD")
    assert parse("gist", f"user/abc123/{SHA}").ref == SHA


@pytest.mark.parametrize("spec", ["user", "user/abc123/a/b", "user/abc-123", "user//HEAD", "../abc123"])
def test_gist_refuses_bad_specs(spec):
    refused("gist", spec)


# Plain git


ESCAPED = "https%3A%2F%2Fgit.example.org%2Fteam%2Frepo.git"


def test_git_escaped_url():
    assert parse("git", f"{ESCAPED}/main") == Spec("git", "https://git.example.org/team/repo.git", "main")


def test_git_escaped_url_ref_may_contain_slashes():
    assert parse("git", f"{ESCAPED}/feature/x").ref == "feature/x"


def test_git_url_already_unescaped_splits_on_the_last_slash():
    assert parse("git", "https://git.example.org/team/repo.git/main") == parse("git", f"{ESCAPED}/main")


def test_git_without_ref_is_head_only_when_the_spec_is_a_url():
    assert parse("git", ESCAPED) == Spec("git", "https://git.example.org/team/repo.git", "HEAD")
    assert parse("git", "http://git.example.org/repo") == Spec("git", "http://git.example.org/repo", "HEAD")
    refused("git", "not-a-url/main", "url-escaped repository URL")


def test_git_file_urls_only_in_local_mode():
    assert "only for local mode" in refused("git", "file%3A%2F%2F%2Ftmp%2Frepo/main")
    assert "only for local mode" in refused("git", "file:///tmp/repo/main")
    assert parse("git", "file:///tmp/repo/main", allow_file=True) == Spec("git", "file:///tmp/repo", "main")
    assert parse("git", "file%3A%2F%2F%2Ftmp%2Frepo", allow_file=True).ref == "HEAD"


@pytest.mark.parametrize("url", ["ssh://git.example.org/repo", "git://git.example.org/repo", "ftp://example.org/r"])
def test_git_refuses_other_schemes(url):
    assert "https://" in refused("git", f"{url}/main", allow_file=True)


@pytest.mark.parametrize("url", ["https://user:secret@git.example.org/repo", "https://token@git.example.org/repo",
                                 "https%3A%2F%2Fuser%3Asecret%40git.example.org%2Frepo"])
def test_git_refuses_credentials(url):
    assert "credentials" in refused("git", f"{url}/main")


@pytest.mark.parametrize("spec", ["https%3A%2F%2Fgit.example.org%2Fre%20po/main", "https://git.example.org/re\tpo/main",
                                  "https%3A%2F%2Fgit.example.org%2Frepo%00/main"])
def test_git_refuses_whitespace_and_control_characters(spec):
    assert "whitespace or control" in refused("git", spec)


def test_git_refuses_dot_dot_segments():
    refused("git", "file%3A%2F%2F%2Ftmp%2F..%2Fetc/main", "\\.\\.", allow_file=True)
    refused("git", "https://git.example.org/a/../b/main", "\\.\\.")


def test_git_scheme_is_case_insensitive():
    assert parse("git", "HTTPS://git.example.org/repo/main").ref == "main"
    assert "only for local mode" in refused("git", "FILE:///tmp/repo/main")


def test_git_refuses_scp_style_urls():
    refused("git", "git@github.com:org/repo.git/main")


# Every provider


def test_unknown_provider_names_the_known_ones():
    assert "gh, gl, gist, git" in refused("bitbucket", "org/repo/main")


def test_empty_and_overlong_specs_are_refused():
    refused("gh", "", "empty")
    refused("gl", "group%2Fproject/", "empty")
    refused("git", f"{ESCAPED}/", "empty")
    refused("gh", "org/repo/" + "a" * MAX_SPEC_LENGTH, str(MAX_SPEC_LENGTH))


@pytest.mark.parametrize("ref", ["-upload-pack=evil", "--help", "a..b", "..", "main.lock", "x/y.lock", "a b", "a\tb",
                                 "a\x00b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "a@{1}", "a//b", "a/",
                                 ".hidden", "a/.b", "end."])
def test_bad_refs_are_refused_for_every_provider(ref):
    refused("gh", f"org/repo/{ref}")
    refused("gl", f"group%2Fproject/{ref}")
    refused("git", f"{ESCAPED}/{ref}")
    refused("gist", f"user/abc123/{ref}")


def test_option_injection_refs_say_why():
    assert "'-'" in refused("gh", "org/repo/--upload-pack=touch")


@pytest.mark.parametrize("ref", ["main", "HEAD", SHA, "v1.0.0", "feature/new-thing", "release-2024_01", "a.lock.b"])
def test_normal_refs_are_accepted(ref):
    assert parse("gh", f"org/repo/{ref}").ref == ref


@pytest.mark.parametrize("provider, spec, canonical", [
    ("gh", "org/repo.git", "org/repo/HEAD"),
    ("gh", "org/repo/feature/x", "org/repo/feature/x"),
    ("gl", "group%2Fsub%2Fproject", "group%2Fsub%2Fproject/HEAD"),
    ("gl", "group%2Fproject/feature/x", "group%2Fproject/feature/x"),
    ("gist", "user/abc123", "user/abc123/HEAD"),
    ("git", "https://git.example.org/team/repo/v1", "https%3A%2F%2Fgit.example.org%2Fteam%2Frepo/v1"),
    ("git", f"{ESCAPED}/feature/x", f"{ESCAPED}/feature/x"),
    ("git", "https%3A%2F%2Fgit.example.org%2Frepo/100%25", "https%3A%2F%2Fgit.example.org%2Frepo/100%25"),
])
def test_spec_is_canonical_and_round_trips(provider, spec, canonical):
    parsed = parse(provider, spec)
    assert parsed.spec() == canonical
    assert re.fullmatch(PROVIDERS[provider]["spec"]["validateRegex"], canonical)
    assert parse(provider, parsed.spec()) == parsed
    pinned = replace(parsed, ref=SHA)
    assert parse(provider, pinned.spec()) == pinned


def test_file_spec_round_trips_in_local_mode():
    parsed = parse("git", "file:///tmp/repo/main", allow_file=True)
    assert parse("git", parsed.spec(), allow_file=True) == parsed


@pytest.mark.parametrize("provider, spec, url", [
    ("gh", "org/repo/main", f"https://github.com/org/repo/tree/{SHA}"),
    ("gl", "group%2Fsub%2Fproject/main", f"https://gitlab.com/group/sub/project/-/tree/{SHA}"),
    ("gist", "user/abc123", f"https://gist.github.com/user/abc123/{SHA}"),
    ("git", f"{ESCAPED}/main", "https://git.example.org/team/repo.git"),
])
def test_binder_ref_url(provider, spec, url):
    assert parse(provider, spec).binder_ref_url(SHA) == url


def test_repoproviders_has_binderhubs_shape():
    listing = repoproviders()
    assert [entry["id"] for entry in listing] == ["gh", "gl", "gist", "git"]
    assert [entry["displayName"] for entry in listing] == ["GitHub", "GitLab", "GitHub Gist", "Git repository"]
    for entry in listing:
        assert set(entry) >= {"id", "displayName", "spec", "repo", "ref"}
        assert isinstance(entry["spec"]["validateRegex"], str)
        assert set(entry["repo"]) == {"label", "placeholder", "urlEncode"}
        assert entry["ref"] == {"enabled": True, "default": "HEAD"}
    assert [entry["repo"]["urlEncode"] for entry in listing] == [False, True, False, True]
    json.dumps(listing)


def test_repoproviders_is_a_copy():
    repoproviders()[0]["displayName"] = "changed"
    assert PROVIDERS["gh"]["displayName"] == "GitHub"
