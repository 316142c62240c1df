"""BinderHub launch specs: the ``{provider}/{spec}`` of ``/build/...`` and ``/v2/...`` URLs.

``parse`` turns a provider and its spec into a ``Spec`` (a clone URL and a ref) or refuses it with
``BadRequest``; ``Spec.spec`` writes the canonical spec back. The meaning of each provider's spec, the
clone and ref URLs and the ``GET /api/repoproviders`` listing follow BinderHub's git providers
(jupyterhub/binderhub ``binderhub/repoproviders.py`` and ``builder.py``), minus its network look-ups.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from chalicelib.errors import BadRequest

MAX_SPEC_LENGTH = 1024
DEFAULT_REF = "HEAD"
GITHUB = "https://github.com/"
GITLAB = "https://gitlab.com/"
GIST = "https://gist.github.com/"

_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")  # not starting with "-"
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_GIST_ID = re.compile(r"[A-Za-z0-9]+")
_ALLOWED = {_NAME: "letters, digits, '_', '.' and '-' (not first)",
            _REPOSITORY_NAME: "letters, digits, '_', '.' and '-'", _GIST_ID: "letters and digits"}
# What ``git check-ref-format`` refuses anywhere in a ref, besides control characters and spaces.
_REF_FORBIDDEN = re.compile(r"[~^:?*\[\\]|@\{|\.\.")


@dataclass(frozen=True)
class Spec:
    provider: str  # "gh", "gl", "gist" or "git"
    repository: str  # the clone URL
    ref: str  # a branch, tag or commit; "HEAD" when the spec names none

    def spec(self) -> str:
        """The spec BinderHub writes for this repository and ref: ``parse(provider, spec())`` gives it back."""
        if self.provider == "gh":
            return f"{self.repository.removeprefix(GITHUB)}/{self.ref}"
        if self.provider == "gist":
            return f"{self.repository.removeprefix(GIST)}/{self.ref}"
        # gl and git carry the URL-escaped name as one segment; BinderHub unescapes their refs too
        name = self.repository.removeprefix(GITLAB) if self.provider == "gl" else self.repository
        return f"{quote(name, safe='')}/{quote(self.ref, safe='/')}"

    def binder_ref_url(self, resolved_ref: str) -> str:
        """Where a browser shows the repository at ``resolved_ref`` (BinderHub's ``binder_ref_url``)."""
        if self.provider == "gh":
            return f"{self.repository}/tree/{resolved_ref}"
        if self.provider == "gl":
            return f"{self.repository}/-/tree/{resolved_ref}"
        if self.provider == "gist":
            return f"{self.repository}/{resolved_ref}"
        return self.repository  # a plain git host has no known page per commit


def parse(provider: str, spec: str, *, allow_file: bool = False) -> Spec:
    """The repository and ref ``spec`` names for ``provider``; ``allow_file`` (local mode) admits file:// URLs."""
    if len(spec) > MAX_SPEC_LENGTH:
        raise BadRequest(f"The spec is longer than {MAX_SPEC_LENGTH} characters.")
    if not spec:
        raise BadRequest("The spec is empty: give the repository after the provider, e.g. /v2/gh/org/repo/HEAD.")
    _refuse_unprintable(spec, "The spec")
    if provider == "gh":
        return _parse_github(spec)
    if provider == "gl":
        return _parse_gitlab(spec)
    if provider == "gist":
        return _parse_gist(spec)
    if provider == "git":
        return _parse_git(spec, allow_file)
    raise BadRequest(f"Unknown provider {provider[:40]!r}: use one of {', '.join(PROVIDERS)}.")


def _parse_github(spec: str) -> Spec:
    parts = spec.split("/", 2)  # the ref may itself contain "/"
    if len(parts) < 2:
        raise BadRequest(f'A GitHub spec is "org/repo" or "org/repo/ref", not "{spec}".')
    org, repository = parts[0], parts[1].removesuffix(".git")
    _check_name(org, "GitHub organization", _NAME)
    _check_name(repository, "GitHub repository", _REPOSITORY_NAME)
    ref = parts[2] if len(parts) == 3 else DEFAULT_REF
    return Spec("gh", f"{GITHUB}{org}/{repository}", _checked_ref(ref))


def _parse_gitlab(spec: str) -> Spec:
    escaped, has_ref, ref = spec.partition("/")
    namespace = unquote(escaped)
    parts = namespace.split("/")
    if len(parts) < 2:
        raise BadRequest('A GitLab spec is "<url-escaped group/project>/ref", e.g. "group%2Fproject/main".')
    for part in parts:
        _check_name(part, "GitLab namespace part", _NAME)
    return Spec("gl", f"{GITLAB}{namespace}", _checked_ref(unquote(ref) if has_ref else DEFAULT_REF))


def _parse_gist(spec: str) -> Spec:
    parts = spec.split("/")
    if len(parts) not in (2, 3):
        raise BadRequest(f'A Gist spec is "user/id" or "user/id/ref", not "{spec}".')
    user, gist_id = parts[0], parts[1]
    _check_name(user, "Gist user", _NAME)
    _check_name(gist_id, "Gist id", _GIST_ID)
    ref = parts[2] if len(parts) == 3 else DEFAULT_REF
    return Spec("gist", f"{GIST}{user}/{gist_id}", _checked_ref(ref))


def _parse_git(spec: str, allow_file: bool) -> Spec:
    url, ref = _split_git_spec(spec)
    _check_git_url(url, allow_file)
    return Spec("git", url, _checked_ref(ref))


def _split_git_spec(spec: str) -> tuple[str, str]:
    """(URL, ref) of a spec written escaped ("https%3A%2F%2Fhost%2Frepo/main") or as a web server may have
    unescaped it ("https://host/repo/main"). Unescaped, the last segment is the ref whenever what precedes
    it is a URL with a path, so such a spec must name its ref; "HEAD" is only for a spec that is a URL."""
    escaped, has_ref, ref = spec.partition("/")
    if _is_repository_url(unquote(escaped)):
        return unquote(escaped), unquote(ref) if has_ref else DEFAULT_REF
    head, has_ref, ref = spec.rpartition("/")
    if has_ref and _is_repository_url(unquote(head)):
        return unquote(head), unquote(ref)
    if _is_repository_url(unquote(spec)):
        return unquote(spec), DEFAULT_REF
    raise BadRequest('A git spec is "<url-escaped repository URL>/ref", e.g. "https%3A%2F%2Fexample.org%2Frepo/main".')


def _is_repository_url(text: str) -> bool:
    """Whether ``text`` reads as scheme://host/path (file:///path without a host): any scheme, so that
    the caller can say which schemes are allowed rather than that this is no URL."""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host
        return False
    has_host = bool(parts.netloc) or parts.scheme == "file"
    has_slashes = text[: len(parts.scheme) + 3].lower() == f"{parts.scheme}://"
    return bool(parts.scheme) and has_slashes and has_host and bool(parts.path.strip("/"))


def _check_git_url(url: str, allow_file: bool) -> None:
    _refuse_unprintable(url, "The git URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file" and not allow_file:
        raise BadRequest("file:// URLs are only for local mode; give an https:// URL.")
    if scheme not in ("https", "http", "file"):
        raise BadRequest(f"Git URLs must be https:// or http://, not {scheme}://.")
    # userinfo in a URL is a credential (often a token as the user name) that would end up in logs and events
    if "@" in parts.netloc:
        raise BadRequest("Git URLs must not carry credentials (user:password@); give the repository's public URL.")
    if ".." in parts.path.split("/"):
        raise BadRequest('Git URLs must not contain ".." path segments.')


def _check_name(name: str, what: str, pattern: re.Pattern[str]) -> None:
    if not name:
        raise BadRequest(f"The {what} is empty.")
    if name in (".", "..") or not pattern.fullmatch(name):
        raise BadRequest(f"The {what} {name!r} is not a name: use {_ALLOWED[pattern]}.")


def _checked_ref(ref: str) -> str:
    if not ref:
        raise BadRequest("The ref is empty: name a branch, tag or commit, or leave it out for HEAD.")
    _refuse_unprintable(ref, "The ref")
    if ref.startswith("-"):  # git would read it as an option
        raise BadRequest(f"The ref {ref!r} must not start with '-'.")
    if _REF_FORBIDDEN.search(ref):
        raise BadRequest(f"The ref {ref!r} must not contain '..', '@{{' or any of ~ ^ : ? * [ \\.")
    segments = ref.split("/")
    if not all(segments):
        raise BadRequest(f"The ref {ref!r} has an empty part: no leading, trailing or double '/'.")
    if any(segment.endswith(".lock") or segment.startswith(".") for segment in segments) or ref.endswith("."):
        raise BadRequest(f"The ref {ref!r} is not a valid git ref name (a part starts with '.' or ends in '.lock').")
    return ref


def _refuse_unprintable(text: str, what: str) -> None:
    if any(character.isspace() or unicodedata.category(character).startswith("C") for character in text):
        raise BadRequest(f"{what} must not contain whitespace or control characters.")


# What GET /api/repoproviders answers: each provider's ``display_config``, in the shape of
# jupyterhub/binderhub main (binderhub/repoproviders.py and handlers/repoproviders.py at b9fad995, April 2026;
# the endpoint came with the frontend rewrite, 31910bc3 of May 2024). The regexes are JavaScript's, for the
# BinderHub frontend: a first check only, ``parse`` is the real one.
PROVIDERS: dict[str, dict[str, Any]] = {
    "gh": {
        "displayName": "GitHub", "id": "gh",
        "spec": {"validateRegex": r"[^/]+/[^/]+(/.+)?"},
        "detect": {"regex": r"^(https?://github\.com/)?(?<repo>[^/]+/[^/]+?)(\.git)?/?$"},
        "repo": {"label": "GitHub repository name or URL", "urlEncode": False,
                 "placeholder": "example: jupyterhub/binderhub or https://github.com/jupyterhub/binderhub"},
        "ref": {"enabled": True, "default": DEFAULT_REF},
    },
    "gl": {
        "displayName": "GitLab", "id": "gl",
        "spec": {"validateRegex": r"[^/]+(/.+)?"},
        "detect": {"regex": r"^(https?://gitlab\.com/)?(?<repo>[^/].*[^/])/?$"},
        "repo": {"label": "GitLab repository name or URL", "urlEncode": True,
                 "placeholder": "example: group/subgroup/project or https://gitlab.com/group/project"},
        "ref": {"enabled": True, "default": DEFAULT_REF},
    },
    "gist": {
        "displayName": "GitHub Gist", "id": "gist",
        "spec": {"validateRegex": r"[^/]+/[^/]+(/[^/]+)?"},
        "detect": {"regex": r"^(https?://gist\.github\.com/)?(?<repo>[^/]+/[^/]+)/?$"},
        "repo": {"label": "Gist ID (user/gistId) or URL", "placeholder": "example: user/0123abcd", "urlEncode": False},
        "ref": {"enabled": True, "default": DEFAULT_REF},
    },
    "git": {
        "displayName": "Git repository", "id": "git",
        "spec": {"validateRegex": r"[^/]+(/.+)?"},
        "repo": {"label": "Git repository URL", "placeholder": "example: https://example.org/repo", "urlEncode": True},
        "ref": {"enabled": True, "default": DEFAULT_REF},
    },
}


def repoproviders() -> list[dict[str, Any]]:
    """The body of GET /api/repoproviders: a copy, so that no caller can change ``PROVIDERS``."""
    return copy.deepcopy(list(PROVIDERS.values()))
