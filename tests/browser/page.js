// A Thebe-like page on another origin: launch a server through the binderless API, then run
// print(6*7) on it with a real Jupyter client and write what it printed into the page.
//
// index.html?api=<API>&env=<environment>&client=<services|thebe>. The outcome lands in
// <pre id="output"> (the printed text) or <pre id="error">, and the times in <pre id="timings">.
// index.html?api=<API>&client=binder&repo=<git URL>&ref=<ref>: thebe-core's own Binder flow, with the
// API as its binderUrl (the /build/ event stream), as a Thebe page pointed at mybinder.org would.
import { KernelManager, ServerConnection } from "@jupyterlab/services";
import {
  connectToBinder,
  connectToJupyter,
  makeConfiguration,
  makeRenderMimeRegistry,
  setupNotebookFromBlocks,
} from "thebe-core";

const CODE = "print(6*7)";
const POLL_EVERY_MS = 200;

const params = new URLSearchParams(window.location.search);
const api = params.get("api");
const env = params.get("env");
const client = params.get("client") || "services";
const timings = {};
const started = performance.now();

function mark(name) {
  timings[name] = Math.round(performance.now() - started);
}

async function json(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { text };
  }
}

// POST /deployments/{env}: 201 with a location from the pool, or 202 cold (poll for the location).
async function launch() {
  const response = await fetch(`${api}/deployments/${env}`, { method: "POST" });
  const body = await json(response);
  timings.launchStatus = response.status;
  if (response.status !== 201 && response.status !== 202) {
    throw new Error(`launch answered ${response.status}: ${JSON.stringify(body)}`);
  }
  let location = body.location;
  while (!location) {
    await new Promise((resolve) => setTimeout(resolve, POLL_EVERY_MS));
    const polled = await fetch(`${api}/deployments/${env}/${body.id}`);
    const state = await json(polled);
    if (!polled.ok) throw new Error(`polling answered ${polled.status}: ${JSON.stringify(state)}`);
    location = state.location;
  }
  mark("location");
  const url = new URL(location);
  const token = url.searchParams.get("token");
  const baseUrl = `${url.origin}${url.pathname}`;
  return { baseUrl, wsUrl: baseUrl.replace(/^http/, "ws"), token };
}

// @jupyterlab/services alone: a kernel, an execute_request, the stdout stream messages.
async function runWithServices(server) {
  const serverSettings = ServerConnection.makeSettings({ ...server, appendToken: true });
  const kernel = await new KernelManager({ serverSettings }).startNew({ name: "python3" });
  mark("kernel");
  const future = kernel.requestExecute({ code: CODE });
  const printed = [];
  future.onIOPub = (message) => {
    if (message.header.msg_type === "stream" && message.content.name === "stdout") {
      printed.push(message.content.text);
    }
  };
  await future.done;
  return printed.join("");
}

// thebe-core as a Thebe page uses it: a server connection, a session, a cell rendered into the page.
async function runWithThebe(server) {
  const config = makeConfiguration({
    serverSettings: { ...server, appendToken: true },
    kernelOptions: { kernelName: "python3", path: "/" },
    savedSessionOptions: { enabled: false },
    mathjaxUrl: "", // no CDN here; and no latex to typeset
  });
  const jupyter = connectToJupyter(config);
  await jupyter.ready;
  return runCell(jupyter, config);
}

// thebe-core's Binder flow: binderOptions -> EventSource on {binderUrl}/build/git/<repo>/<ref> -> ready.
async function runWithBinder() {
  const config = makeConfiguration({
    binderOptions: { binderUrl: api, repo: params.get("repo"), ref: params.get("ref") || "HEAD", repoProvider: "git" },
    kernelOptions: { kernelName: "python3", path: "/" },
    savedSessionOptions: { enabled: false },
    mathjaxUrl: "",
  });
  const server = connectToBinder(config);
  await server.ready;
  mark("location");
  timings.launchStatus = 200;
  return runCell(server, config);
}

async function runCell(jupyter, config) {
  const rendermime = makeRenderMimeRegistry(config.mathjax);
  const session = await jupyter.startNewSession(rendermime);
  mark("kernel");
  const notebook = setupNotebookFromBlocks([{ id: "answer", source: CODE }], config, rendermime);
  notebook.attachSession(session);
  const cell = notebook.getCellById("answer");
  const area = document.getElementById("thebe-cell");
  cell.attachToDOM(area);
  const [result] = await notebook.executeAll();
  if (!result || result.error) throw new Error(`the cell failed: ${JSON.stringify(result)}`);
  return area.textContent;
}

async function main() {
  let printed;
  if (client === "binder") {
    printed = await runWithBinder();
  } else {
    const server = await launch();
    printed = client === "thebe" ? await runWithThebe(server) : await runWithServices(server);
  }
  mark("output");
  document.getElementById("timings").textContent = JSON.stringify(timings);
  document.getElementById("output").textContent = printed.trim();
}

main().catch((error) => {
  document.getElementById("timings").textContent = JSON.stringify(timings);
  document.getElementById("error").textContent = String(error && (error.stack || error.message || error));
});
