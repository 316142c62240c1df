"""The launch form's markup, style and script (chalicelib/front_page.py serves them).

The script builds the ``/v2/`` link as BinderHub's form does: the provider's ``detect`` regex takes a
repository's URL or name, ``validateRegex`` checks it, ``urlEncode`` escapes it into one segment; the
ref (HEAD when empty) keeps its slashes; an optional path goes as ``labpath`` (a file, opened in
JupyterLab) or ``urlpath`` (a URL path on the server, e.g. ``lab`` or ``tree``).
"""

from __future__ import annotations

STYLE = """
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222;
         line-height: 1.4; }
  h1 { font-size: 1.5rem; margin-bottom: .2rem; }
  form { display: grid; grid-template-columns: 10rem 1fr; gap: .6rem .8rem; align-items: center; }
  label, legend { font-weight: 600; }
  input[type=text], select, textarea { font: inherit; padding: .35rem; border: 1px solid #888; border-radius: .25rem;
                                       width: 100%; box-sizing: border-box; }
  fieldset { grid-column: 1 / -1; border: 0; padding: 0; margin: 0; display: flex; gap: 1rem; align-items: center; }
  textarea, #link { font-family: ui-monospace, monospace; font-size: .85rem; background: #f6f6f6; }
  .actions { grid-column: 1 / -1; display: flex; gap: .6rem; align-items: center; }
  button, .button { font: inherit; padding: .45rem 1rem; border-radius: .25rem; border: 1px solid #555;
                    background: #fff; color: #222; cursor: pointer; text-decoration: none; }
  .button.launch { background: #e66581; border-color: #b84a63; color: #fff; font-weight: 600; }
  .button[aria-disabled=true] { opacity: .5; cursor: not-allowed; }
  :focus-visible { outline: 3px solid #579aca; outline-offset: 2px; }
  #problem { color: #b3261e; grid-column: 1 / -1; margin: 0; }
  .hint { color: #555; font-size: .9rem; margin: 0; }
  .second { grid-column: 2; }
  footer { margin-top: 2rem; color: #555; font-size: .9rem; }
"""

SCRIPT = """
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const byId = (id) => document.getElementById(id);
const providers = new Map(config.providers.map((provider) => [provider.id, provider]));
const fields = { provider: byId("provider"), repository: byId("repository"), ref: byId("ref"), path: byId("path") };
const outputs = { link: byId("link"), markdown: byId("markdown"), rst: byId("rst") };
const launch = byId("launch"), problem = byId("problem"), copied = byId("copied");
const site = window.location.origin + config.base;
byId("preview").src = `${site}/badge_logo.svg`;
for (const provider of config.providers) {
  fields.provider.add(new Option(provider.displayName, provider.id));
}

function repositorySpec(provider, text) {
  let repository = text.trim();
  const detected = provider.detect ? repository.match(new RegExp(provider.detect.regex)) : null;
  if (detected && detected.groups && detected.groups.repo) repository = detected.groups.repo;
  if (!repository || /\\s/.test(repository)) return null;
  if (!new RegExp(`^(?:${provider.spec.validateRegex})$`).test(repository)) return null;
  return provider.repo.urlEncode ? encodeURIComponent(repository) : repository;
}

function pathQuery() {
  const path = fields.path.value.trim();
  if (!path) return "";
  const kind = document.querySelector("input[name=pathkind]:checked").value;
  return `?${kind}=${encodeURIComponent(path)}`;
}

function update() {
  const provider = providers.get(fields.provider.value);
  byId("repository-label").textContent = provider.repo.label;
  fields.repository.placeholder = provider.repo.placeholder;
  const spec = repositorySpec(provider, fields.repository.value);
  const ref = encodeURIComponent(fields.ref.value.trim() || provider.ref.default).replaceAll("%2F", "/");
  if (spec === null) {
    problem.textContent = fields.repository.value.trim() ? `This is not a ${provider.repo.label}.` : "";
    for (const output of Object.values(outputs)) output.value = "";
    launch.removeAttribute("href");
    launch.setAttribute("aria-disabled", "true");
    return;
  }
  problem.textContent = "";
  const link = `${site}/v2/${provider.id}/${spec}/${ref}${pathQuery()}`;
  const badge = `${site}/badge_logo.svg`;
  outputs.link.value = link;
  outputs.markdown.value = `[![Binder](${badge})](${link})`;
  outputs.rst.value = `.. image:: ${badge}\\n   :target: ${link}`;
  launch.href = link;
  launch.setAttribute("aria-disabled", "false");
}

async function copy(output) {
  if (!output.value) return;
  try {
    await navigator.clipboard.writeText(output.value);
  } catch {
    output.select();
    document.execCommand("copy");
  }
  copied.textContent = `Copied the ${output.dataset.what}.`;
}

byId("form").addEventListener("input", update);
byId("form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (launch.href) window.location.assign(launch.href);
});
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", () => copy(byId(button.dataset.copy)));
}
update();
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>binderless: launch a repository</title>
<style>{{STYLE}}</style>
</head>
<body>
<main>
<h1>Launch a repository</h1>
<p class="hint">Turn a Git repository into a temporary Jupyter server, and get a link and a badge that do the
same for your readers.</p>
<form id="form">
  <label for="provider">Provider</label>
  <select id="provider" name="provider"></select>
  <label for="repository" id="repository-label">Repository</label>
  <input type="text" id="repository" name="repository" autocomplete="off" spellcheck="false" required
         aria-describedby="problem">
  <label for="ref">Git ref</label>
  <input type="text" id="ref" name="ref" placeholder="HEAD" autocomplete="off" spellcheck="false"
         aria-describedby="ref-hint">
  <p class="hint second" id="ref-hint">A branch, tag or commit; empty means HEAD.</p>
  <label for="path">Path to open</label>
  <input type="text" id="path" name="path" autocomplete="off" spellcheck="false"
         placeholder="optional: a notebook, or a URL path such as lab">
  <fieldset>
    <legend>The path is</legend>
    <label><input type="radio" name="pathkind" value="labpath" checked> a file</label>
    <label><input type="radio" name="pathkind" value="urlpath"> a URL</label>
  </fieldset>
  <p id="problem" role="alert"></p>
  <label for="link">Link</label>
  <input type="text" id="link" readonly data-what="link">
  <label for="markdown">Badge (Markdown)</label>
  <textarea id="markdown" rows="2" readonly data-what="Markdown"></textarea>
  <label for="rst">Badge (reStructuredText)</label>
  <textarea id="rst" rows="2" readonly data-what="reStructuredText"></textarea>
  <div class="actions">
    <a id="launch" class="button launch" aria-disabled="true">Launch</a>
    <button type="button" data-copy="link">Copy link</button>
    <button type="button" data-copy="markdown">Copy Markdown</button>
    <button type="button" data-copy="rst">Copy reStructuredText</button>
    <img id="preview" alt="the launch binder badge" width="110" height="20">
  </div>
  <p id="copied" class="hint" role="status" aria-live="polite"></p>
</form>
<noscript><p>This form needs JavaScript. Links have the form
<code>{{BASE}}/v2/&lt;provider&gt;/&lt;repository&gt;/&lt;ref&gt;</code>.</p></noscript>
</main>
<footer>binderless {{VERSION}} &middot; <a href="{{BASE}}/openapi.json">API (OpenAPI)</a> &middot;
<a href="{{BASE}}/health">health</a> &middot; <a href="{{BASE}}/versions">versions</a></footer>
<script type="application/json" id="config">{{CONFIG}}</script>
<script>{{SCRIPT}}</script>
</body>
</html>
"""
