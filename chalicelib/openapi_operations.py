"""What each route does, answers and fails with: the hand-written half of the OpenAPI document.

Keyed by (method, path) as in Chalice's route table. Auth (401/403 and the security
requirement) is added from the endpoint's name and the deployment's settings, not written here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from chalicelib import gone_page
from chalicelib.backends.base import MAX_CURSOR
from chalicelib.front_page import ApiIndex
from chalicelib.models import (
    NAME_PATTERN,
    SERVER_ID_PATTERN,
    BindingCreate,
    BuildCreate,
    ImageRegister,
    PoolSize,
    StagingCreate,
)
from chalicelib.replies import (
    BindingReply,
    BuildLogPage,
    BuildSummary,
    ErrorReply,
    Health,
    OpenApiDocument,
    PoolMap,
    PoolReply,
    RegisteredImage,
    RepoProviders,
    RepositoryBuild,
    ServerList,
    ServerReply,
    Spawned,
    StagingCreated,
    StagingReply,
    Stats,
    StatusReply,
    Versions,
)
from chalicelib.repository_urls import MAX_URL_LENGTH


@dataclass(frozen=True)
class Answer:
    description: str
    models: tuple[type[BaseModel], ...]
    # besides JSON (the models): media types whose body is a document for people or an image (a string)
    media_types: tuple[str, ...] = ()


def answer(description: str, *models: type[BaseModel], media_types: tuple[str, ...] = ()) -> Answer:
    return Answer(description, models, media_types)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    replies: Mapping[int, Answer]
    errors: Mapping[int, str]
    body: type[BaseModel] | None = None
    example: Any = None
    description: str = ""
    # query parameter name -> (description, example, schema)
    query: Mapping[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    optional_query: frozenset[str] = frozenset()  # the query parameters a caller may leave out
    headers: tuple[dict[str, Any], ...] = ()  # header parameters, as OpenAPI writes them


REPOSITORY = "https://github.com/binder-examples/requirements"
IMAGE = "github-com-binder-examples-requirements-0123456789ab-6869538414c8e928eaaaea8a7024ec00"
ENVIRONMENT = f"{IMAGE[:80]}-5f0e2a9c"
NAME = {"type": "string", "pattern": NAME_PATTERN}
SEGMENT = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"}
BINDER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # a name that does not match is never found (404)
PATH_PARAMETERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "image_name": ("An image-name, as POST /builds/repos or POST /builds/images named it.", IMAGE, NAME),
    "environment_name": ("An environment-name, as POST /stagings named it.", ENVIRONMENT, NAME),
    "org": ("A binding's organisation (any case: bindings are found whatever the case).", "CodeNeuro", SEGMENT),
    "repo": ("A binding's repository name (any case).", "notebooks", SEGMENT),
    "binder_name": ("A binder's name: its binding's name, or any environment-name (matched in lowercase).",
                    "codeneuro-notebooks", {"type": "string", "pattern": BINDER_NAME_PATTERN}),
    "server_id": ("A server's id, as POST /deployments/{environment_name} gave it.", "9f3c" + "0" * 28,
                  {"type": "string", "pattern": SERVER_ID_PATTERN}),
}
REPOSITORY_QUERY = {"type": "string", "format": "uri", "minLength": 1, "maxLength": MAX_URL_LENGTH}

BODY = {400: "No body, a body that is not a JSON object, or malformed JSON.",
        422: "Unknown fields, or values of the wrong type or out of range."}
BUSY = {503: "Transient trouble (the database or AWS is throttling): retry after Retry-After seconds."}
BACKEND = {502: "An AWS (or local) backend call failed in a way the client cannot fix."}
NO_ENVIRONMENT = {404: "No such environment."}
GONE = {410: "The server has stopped or failed (the record stays a day): launch a new one."}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Makes a retry safe: a request sent again with the same key gets the first answer back "
                   "instead of doing the work twice (keys are remembered for an hour by default).",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"}, "example": "8e0f4a5c-5d1e-4b7e-9a43-0c6f1f5d2b7a"}
IN_PROGRESS = "a request with this Idempotency-Key is still in progress (retry after Retry-After seconds)"

NOT_READY_BINDER = ("The binder is not ready: its image is building or being staged (retry after Retry-After "
                    "seconds), or its build or staging failed (the message says which)")
BINDING_EXAMPLE = {"name": "codeneuro-notebooks", "repo": "https://github.com/CodeNeuro/notebooks",
                   "requirements": "repo/requirements.txt", "notebooks": "repo/notebooks",
                   "services": [{"name": "postgres", "version": "16", "params": {"database": "notebooks"}}]}
V1_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/bindings/{org}/{repo}"): Operation(
        "createBinding", "v1: declare a binder: its repository is built and, once built, staged under its name",
        {200: answer("This declaration exists already (a failed build is started again).", BindingReply),
         201: answer("Created: its build is requested; once the image exists it is staged under `name`.",
                     BindingReply)},
        {**BODY, 400: "A malformed body, or a repository URL that is not acceptable or cannot be reached.",
         404: "The repository has no HEAD.",
         409: "Another declaration exists at this path (bindings do not change), or another binding or environment "
              "has this name.",
         422: "Unknown fields, values of the wrong type, an org or repo that is not a name, services (or params) "
              "the catalog does not offer, or services that leave the notebook nothing within the default limits.",
         429: "Too many builds are running: retry after Retry-After seconds.", **BACKEND,
         503: "The git host or AWS is unavailable or throttling: retry after Retry-After seconds."},
        body=BindingCreate, example=BINDING_EXAMPLE,
        description="The repository is built at its HEAD as POST /builds/repos builds it, and staged with this "
                    "deployment's default limits and the declared services (the operator's catalog). "
                    "`requirements` and `notebooks` are kept as declared but not used: repo2docker builds from the "
                    "repository's own files (requirements.txt, environment.yml, ...) and servers open at its root; "
                    "the reply's `ignored` lists them."),
    ("GET", "/bindings/{org}/{repo}"): Operation(
        "getBinding", "v1: a binding's declaration and status",
        {200: answer("The declaration as POSTed, its image-name and status.", BindingReply)},
        {404: "No binding at this path.", 409: "Its environment-name is taken by a staging of another image.",
         **BACKEND, **BUSY},
        description="Once the image is built, the binding is staged (if it is not yet) before this answers."),
    ("HEAD", "/bindings/{org}/{repo}"): Operation(
        "bindingExists", "v1: whether a binding exists (headers only)",
        {200: answer("It exists; the reply has no body.", BindingReply)}, {404: "No binding at this path.", **BUSY}),
    ("POST", "/binders/{binder_name}"): Operation(
        "createBinder", "v1: launch a binder: from its pool at once, or cold",
        {201: answer("A ready server from the pool: `{id, location}`.", ServerReply),
         202: answer("Starting cold: `{id}`; poll GET /binders/{binder_name}/{server_id} for its location.",
                     ServerReply)},
        {400: "A malformed Idempotency-Key.", 404: "No binding or environment has this name.",
         409: f"{NOT_READY_BINDER}, or {IN_PROGRESS}.",
         429: "A quota (live servers in this deployment, environment or repository) or, without a token, the "
              "launch rate limit: retry after Retry-After seconds.", **BACKEND,
         503: "No server could be started right now, or AWS is throttling: retry after Retry-After seconds."},
        description="As POST /deployments/{environment_name}. No request body.", headers=(IDEMPOTENCY_KEY,)),
    ("GET", "/binders/{binder_name}"): Operation(
        "listBinders", "v1: a binder's live servers, never their tokens",
        {200: answer("The servers, oldest first.", ServerList)},
        {404: "No binding or environment has this name.", 409: NOT_READY_BINDER + ".", **BACKEND, **BUSY},
        description="An admin token sees each server's id, uri (/binders/{binder_name}/{id}) and location (its URL "
                    "without the token); any other caller sees only their statuses."),
    ("GET", "/binders/{binder_name}/{server_id}"): Operation(
        "getBinder", "v1: a launched binder: its status, and its location once it answers",
        {200: answer("The server: `{id, location}` once it answers.", ServerReply)},
        {404: "No such server (it may have ended long ago).", **GONE, **BUSY},
        description="As GET /deployments/{environment_name}/{server_id}: the id is the secret."),
}

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/builds/repos"): Operation(
        "createBuild", "Build a repository at a ref (once: the same commit is the same image)",
        {200: answer("Built already (completed), or failed at once (failed: GET .../status says why).",
                     BuildSummary),
         202: answer("Building: poll GET /builds/repos/{image_name}/status.", BuildSummary)},
        {**BODY, 400: "A malformed body or Idempotency-Key, or a repository URL that is not acceptable or cannot "
                      "be reached.",
         404: "The ref is not in the repository.", 409: f"Conflict: {IN_PROGRESS}.",
         422: "Unknown fields, values of the wrong type or out of range, or an Idempotency-Key already used for a "
              "different request.",
         429: "Too many builds of this repository are running: retry after Retry-After seconds.", **BACKEND,
         503: "The git host or AWS is unavailable or throttling: retry after Retry-After seconds."},
        body=BuildCreate, example={"repository": REPOSITORY}, headers=(IDEMPOTENCY_KEY,)),
    ("GET", "/builds/repos"): Operation(
        "findBuild", "The newest completed build of a repository, else its newest build",
        {200: answer("The build.", BuildSummary)},
        {400: "No repository given, or not an acceptable URL.", 404: "The repository has not been built.", **BUSY},
        query={"repository": ("The repository URL (quotes around it are ignored).", REPOSITORY, REPOSITORY_QUERY)}),
    ("GET", "/builds/repos/{image_name}"): Operation(
        "getBuild", "A build, or an operator-registered image",
        {200: answer("The build, or the registered image.", RepositoryBuild, RegisteredImage)},
        {404: "No such image.", **BUSY}),
    ("GET", "/builds/repos/{image_name}/status"): Operation(
        "getBuildStatus", "A build's status",
        {200: answer("pending, completed or failed (with a reason).", StatusReply)},
        {404: "No such image.", **BUSY}),
    ("GET", "/builds/repos/{image_name}/logs"): Operation(
        "getBuildLogs", "A page of a build's log",
        {200: answer("The log's lines after `cursor` and the cursor to ask from next (the same one while nothing "
                     "new was logged). Read on while `status` is pending or `lines` is not empty.", BuildLogPage)},
        {400: "A cursor this API did not give.", 404: "No such image.", **BUSY},
        description="What repo2docker said (AWS: the CodeBuild build's CloudWatch Logs stream), or git and pip "
                    "(local mode). The same lines come as `building` events on the `/build/` stream. A registered "
                    "image, or one that was built before it was asked for, has no lines here.",
        query={"cursor": ("The `cursor` of the last page; leave it out to read from the start.", "",
                          {"type": "string", "maxLength": MAX_CURSOR})},
        optional_query=frozenset({"cursor"})),
    ("POST", "/builds/images"): Operation(
        "registerImage", "Register an operator-approved prebuilt image under an image-name",
        {201: answer("Registered: stage it like a completed build.", RegisteredImage)},
        {**BODY, 409: "The image-name is taken by a repository build.", **BUSY},
        body=ImageRegister, example={"image-name": "scipy-notebook", "image": "quay.io/jupyter/scipy-notebook:latest"}),
    ("POST", "/stagings"): Operation(
        "createStaging", "Stage an image with limits and services as a launchable environment",
        {200: answer("The same staging exists already (one that had failed, or was stuck pending, is registered "
                     "again first).", StagingCreated),
         201: answer("Staged.", StagingCreated)},
        {**BODY, 400: "A malformed body, or services the catalog does not offer.", 404: "No such image.",
         409: "The image is still building or its build failed, or the environment-name is taken by another "
              "staging.", 422: "Unknown fields, or limits or values that are not acceptable.", **BACKEND, **BUSY},
        body=StagingCreate, example={"image-name": IMAGE, "limits": {"cpu": "0.5", "memory": "1G"}},
        description="Limits: `cpu` as vCPU or CPU units, `memory` as `1G`, `512M` or MiB; they must make a valid "
                    "Fargate pair within the operator's caps. Staging the same thing twice names the same "
                    "environment."),
    ("GET", "/stagings/{environment_name}"): Operation(
        "getStaging", "A staged environment",
        {200: answer("The staging.", StagingReply)}, {**NO_ENVIRONMENT, **BUSY}),
    ("GET", "/stagings/{environment_name}/status"): Operation(
        "getStagingStatus", "A staged environment's status",
        {200: answer("pending, completed or failed (with a reason).", StatusReply)}, {**NO_ENVIRONMENT, **BUSY}),
    ("POST", "/deployments/{environment_name}"): Operation(
        "createDeployment", "Launch a server: from the pool at once, or cold",
        {201: answer("A ready server from the pool: open its location.", ServerReply),
         202: answer("Starting cold: poll GET /deployments/{environment_name}/{server_id} for its location.",
                     ServerReply)},
        {400: "A malformed Idempotency-Key.", **NO_ENVIRONMENT,
         409: f"The environment is not ready (still staging, or staging failed), or {IN_PROGRESS}.",
         429: "A quota (live servers in this deployment, environment or repository) or, without a token, the "
              "launch rate limit: retry after Retry-After seconds.", **BACKEND,
         503: "No server could be started right now, or AWS is throttling: retry after Retry-After seconds."},
        description="No request body.", headers=(IDEMPOTENCY_KEY,)),
    ("GET", "/deployments/{environment_name}"): Operation(
        "listDeployments", "The environment's live servers, never their tokens",
        {200: answer("The servers, oldest first.", ServerList)}, {**NO_ENVIRONMENT, **BUSY},
        description="An admin token sees each server's id, uri and location (its URL without the token); any "
                    "other caller sees only their statuses, since an id opens its server's location, token "
                    "included (GET /deployments/{environment_name}/{server_id})."),
    ("GET", "/deployments/{environment_name}/{server_id}"): Operation(
        "getDeployment", "A server: its status, and its location once it answers",
        {200: answer("The server.", ServerReply)},
        {404: "No such server (it may have ended long ago).", **GONE, **BUSY},
        description="The id is the secret: anyone who has it may follow the server. A pooled server not yet "
                    "handed out answers 404, as an unknown id does."),
    ("DELETE", "/deployments/{environment_name}/{server_id}"): Operation(
        "deleteDeployment", "Stop a server",
        {200: answer("It had ended already (stopping it again changes nothing), or it ended at once.",
                     ServerReply),
         202: answer("Stopping.", ServerReply)},
        {404: "No such server (it may have ended long ago).", **BACKEND, **BUSY}),
    ("GET", "/pools"): Operation(
        "listPools", "Every pool that keeps or still has servers",
        {200: answer("The pools, keyed by environment-name.", PoolMap)}, {**BUSY}),
    ("GET", "/pools/{environment_name}"): Operation(
        "getPool", "An environment's pool: its size and counters",
        {200: answer("The pool.", PoolReply)}, {**NO_ENVIRONMENT, **BUSY}),
    ("POST", "/pools/{environment_name}"): Operation(
        "createPool", "Keep `size` idle, ready servers for an environment",
        {200: answer("The pool; the first batch of missing servers is starting.", PoolReply)},
        {**BODY, **NO_ENVIRONMENT, 409: "The environment is not ready (size > 0 needs a completed staging).",
         422: "Unknown fields, or a size that is negative or over the deployment's maximum.",
         429: "A quota of live servers stops even one more: retry after Retry-After seconds.", **BACKEND, **BUSY},
        body=PoolSize, example={"size": 2}, description="`minPool` (the v1 name) is accepted for `size`."),
    ("PUT", "/pools/{environment_name}"): Operation(
        "resizePool", "Resize an environment's pool (same as POST)",
        {200: answer("The pool; missing servers are starting, surplus idle ones stopping.", PoolReply)},
        {**BODY, **NO_ENVIRONMENT, 409: "The environment is not ready (size > 0 needs a completed staging).",
         422: "Unknown fields, or a size that is negative or over the deployment's maximum.",
         429: "A quota of live servers stops even one more: retry after Retry-After seconds.", **BACKEND, **BUSY},
        body=PoolSize, example={"size": 2}, description="`minPool` (the v1 name) is accepted for `size`."),
    ("DELETE", "/pools/{environment_name}"): Operation(
        "deletePool", "Drain a pool: size 0, idle servers stopped; handed-out servers run on",
        {200: answer("The pool.", PoolReply)}, {**NO_ENVIRONMENT, **BACKEND, **BUSY}),
    ("GET", "/health"): Operation(
        "health", "Liveness: the API answers and can read its table",
        {200: answer("Healthy.", Health)}, {503: "The database cannot be reached: retry after Retry-After seconds."}),
    ("GET", "/versions"): Operation(
        "versions", "Versions of this deployment and its API",
        {200: answer("The versions.", Versions)}, {}),
    ("POST", "/api/spawn"): Operation(
        "spawn", "tmpnb: a ready server of the default environment, from its pool",
        {200: answer("The server's URL, token included.", Spawned)},
        {404: "This deployment has no default environment (BINDERLESS_DEFAULT_ENVIRONMENT), or it is unknown.",
         409: "The default environment is not ready.",
         429: 'The pool has no ready server, or a limit refused the caller: `"status": "full"` (tmpnb\'s '
              "answer) beside the error; retry after Retry-After seconds.", **BACKEND, **BUSY},
        description="Never starts a server cold, as tmpnb never did: size the default environment's pool."),
    ("GET", "/api/stats"): Operation(
        "stats", "tmpnb: the default environment's pool",
        {200: answer("Ready servers, the pool's size, this version and the environment's image.", Stats)},
        {404: "This deployment has no default environment (BINDERLESS_DEFAULT_ENVIRONMENT), or it is unknown."}),
    ("GET", "/api/repoproviders"): Operation(
        "repoProviders", "BinderHub: the repository providers a launch link or form may name",
        {200: answer("The providers, in BinderHub's shape.", RepoProviders)}, {}),
    ("GET", "/openapi.json"): Operation(
        "openapi", "This document", {200: answer("The OpenAPI 3.1 document.", OpenApiDocument)}, {}),
    **V1_OPERATIONS,
}

# Pages for people (chalicelib/routes/pages.py).
PATH_PARAMETERS.update({
    "provider": ("A repository provider: gh, gl, gist or git (GET /api/repoproviders).", "gh",
                 {"type": "string", "enum": ["gh", "gl", "gist", "git"]}),
    "proxy+": ("The rest of the path, slashes included: a launch link's spec (`<org>/<repo>/<ref>`, "
               "`<url-escaped URL>/<ref>`, ...), or a path on a server.", "binder-examples/requirements/HEAD",
               {"type": "string"}),
})
OPERATIONS.update({
    ("GET", "/"): Operation(
        "index", "The launch form for browsers; an index of the API for programs",
        {200: answer("HTML (the launch form) when the client prefers text/html, as a browser does; else JSON: "
                     "where the documents and the launch links are.", ApiIndex, media_types=("text/html",))},
        {}, description="Content negotiation on `Accept`: HTML when the preferred media range (highest q, then "
                        "first listed) is `text/html` or `application/xhtml+xml`; JSON for anything else, `*/*` "
                        "and no Accept included."),
    ("GET", "/badge_logo.svg"): Operation(
        "badge", "The launch badge image, for README files",
        {200: answer("The badge, cacheable for a day.", media_types=("image/svg+xml",))}, {},
        description="Markdown: `[![Binder](<base>/badge_logo.svg)](<base>/v2/<provider>/<spec>)`."),
    ("GET", "/v2/{provider}/{proxy+}"): Operation(
        "launchPage", "BinderHub's launch link: a page that follows the launch, then opens the server",
        {200: answer("The launch page: it reads the launch's `/build/` event stream on the same origin, shows the "
                     "phases and the build log, then sends the browser to the server (`urlpath`, `labpath` or "
                     "`filepath` chooses where). A spec no provider can read fails on the page.",
                     media_types=("text/html",))},
        {404: "An unknown provider, or no spec."},
        description="Optional query parameters, BinderHub's: `urlpath` (a path on the server, e.g. `lab`), "
                    "`labpath` (a file opened in JupyterLab: `lab/tree/<labpath>`) or `filepath` (`tree/<filepath>`)."),
})
# A server's path behind the proxy, once the proxy has no route for it (chalicelib/gone_page.py).
OPERATIONS.update({
    (method, "/user/{proxy+}"): Operation(
        f"gone{method.title()}", "A server that has ended: what the proxy's default route answers under /user/",
        {410: answer("The server at this path has ended (or never existed): an HTML page for browsers (`Accept: "
                     "text/html`) saying why and when, with a link that launches the same environment again; "
                     "the JSON error for programs.", ErrorReply, media_types=("text/html",))},
        {503: "The server is live but its route is being restored (a proxy restarted): try again after "
              "`Retry-After` seconds."},
        description="What the proxy's default route reaches: it never answers 2xx. Nothing of the request is "
                    "echoed: its query may hold the server's token.")
    for method in gone_page.METHODS
})

# BinderHub's event stream is served outside Chalice's route table (by local mode's server, and on AWS by
# the streaming function behind the same API: chalicelib/stream_server.py), and documented all the same.
# path -> (the endpoint name its security is shown by, the operation)
STREAMED: dict[str, tuple[str, Operation]] = {
    "/build/{provider}/{proxy+}": ("builds.create", Operation(
        "launchStream", "BinderHub's launch protocol: build if needed, launch, and say so as it goes",
        {200: answer("`text/event-stream`: events `data: {\"phase\", \"message\", ...}` in BinderHub's phases: "
                     "`waiting`, `fetching`, `building` (one per build log line), `built`, `launching`, then "
                     "`ready` (`url`, `token`, `image`, `repo_url`, `binder_ref_url`) or `failed` (`status_code`: "
                     "429 when a limit refused it). The stream stays open until one of those two, with a comment "
                     "every 25 s; every error is a `failed` event (an EventSource cannot read an error reply).",
                     media_types=("text/event-stream",))},
        {}, description="What Thebe, sphinx-thebe and Jupyter Book's launch buttons open as `{binderUrl}/build/...`. "
                        "A reconnect with `Last-Event-ID` (the id of the last event) follows the same server and "
                        "never starts another; after `ready` it gets `ready` again. Launching also needs what "
                        "`deployments.create` needs. Local mode takes `git/<url-escaped file:// URL>/<ref>` too.",
        headers=({"name": "Last-Event-ID", "in": "header", "required": False,
                  "description": "The last event's id, as EventSource sends it when it reconnects.",
                  "schema": {"type": "string", "maxLength": 300}},))),
}
