// The demo page's script: starts generations and renders their live state
// with the SDK that the relay serves under /sdk/. The page's generations are
// kept in sessionStorage, so a reload watches them again.
import { createRelayClient } from "/sdk/index.js";

const STORAGE_KEY = "runblob-relay-demo:generations";
const transport = new URLSearchParams(location.search).get("transport") ?? "auto";
const client = createRelayClient({ baseUrl: location.origin, transport });

const form = document.getElementById("generate");
const list = document.getElementById("generations");
const template = document.getElementById("generation-template");
const formError = document.getElementById("form-error");
const connection = document.getElementById("connection");

/** Generations started on this page, by id: { record, element, finishedAt }. */
const items = new Map();

const CONNECTION_TEXT = {
  idle: () => "Idle: nothing to watch",
  connecting: (name) => `Connecting over ${name}…`,
  open: (name) => `Live over ${name}`,
  reconnecting: () => "Reconnecting…",
};
const TRANSPORT_NAMES = { websocket: "WebSocket", sse: "Server-Sent Events" };

client.onConnectionChange(({ status, transport: current }) => {
  connection.dataset.status = status;
  connection.dataset.transport = current ?? "";
  connection.textContent = CONNECTION_TEXT[status](TRANSPORT_NAMES[current]);
});

function saveRecords() {
  const records = [...items.values()].map((item) => item.record);
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(records));
}

function formatElapsed(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function updateElapsed(item) {
  const end = item.finishedAt ?? Date.now();
  item.element.querySelector(".elapsed").textContent = `Elapsed ${formatElapsed(end - item.record.startedAt)}`;
}

function setState(item, state, label) {
  item.element.dataset.state = state;
  item.element.querySelector(".state").textContent = label;
}

function finish(item) {
  item.finishedAt ??= Date.now();
  item.record.finishedAt = item.finishedAt;
  updateElapsed(item);
  saveRecords();
}

function render(item, status) {
  const element = item.element;
  const queue = element.querySelector(".queue");
  const bar = element.querySelector(".bar");
  const error = element.querySelector(".error");
  const video = element.querySelector("video");
  element.querySelector(".notice").hidden = true;
  element.dataset.version = String(status.version);

  queue.textContent = status.status === "pending" && status.progress_pos_in_queue != null ? `Position ${status.progress_pos_in_queue} in queue` : "";

  const processing = status.status === "processing";
  bar.hidden = !processing;
  if (processing) {
    const percent = status.progress_pct ?? 0;
    bar.setAttribute("aria-valuenow", String(percent));
    bar.firstElementChild.style.width = `${percent}%`;
  }

  switch (status.status) {
    case "pending":
      setState(item, "pending", "Queued");
      break;
    case "processing":
      setState(item, "processing", `Processing ${status.progress_pct ?? 0} %`);
      break;
    case "completed":
      setState(item, "completed", "Completed");
      if (status.video_url && video.getAttribute("src") !== status.video_url) {
        video.src = status.video_url;
        video.hidden = false;
      }
      finish(item);
      break;
    case "failed":
      setState(item, "failed", "Failed");
      error.textContent = status.error_message ?? "Runblob did not say why the generation failed.";
      error.hidden = false;
      finish(item);
      break;
    default:
      setState(item, "pending", status.status);
  }
}

function endWithError(item, message) {
  setState(item, "ended", "Stopped");
  const error = item.element.querySelector(".error");
  error.textContent = message;
  error.hidden = false;
  finish(item);
}

function show(record) {
  const element = template.content.firstElementChild.cloneNode(true);
  element.dataset.id = record.id;
  element.querySelector(".prompt").textContent = record.prompt;
  element.querySelector(".meta").textContent = `${record.orientation} · ${record.duration} s · ${record.id}`;
  element.querySelector(".bar").setAttribute("aria-label", `Progress of “${record.prompt.slice(0, 60)}”`);
  list.prepend(element);
  document.getElementById("empty").hidden = true;

  const item = { record, element, finishedAt: record.finishedAt };
  items.set(record.id, item);
  updateElapsed(item);

  client.watch(record.id, {
    onStatus: (status) => render(item, status),
    onTimeout: () => endWithError(item, "The relay stopped watching: no final status after its maximum number of polls."),
    onError: (error) => endWithError(item, error.code === "not_found" ? "Runblob does not know this generation (any more)." : error.message),
    onUpstream: () => {
      const notice = element.querySelector(".notice");
      notice.textContent = "Runblob is not responding right now; the relay keeps trying.";
      notice.hidden = false;
    },
  });
}

function describeFailure(error) {
  if (!Array.isArray(error.detail)) return error.message;
  return error.detail.map((issue) => `${issue.loc.slice(1).join(".")}: ${issue.msg}`).join("; ");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const request = { prompt: String(data.get("prompt")), orientation: String(data.get("orientation")), duration: Number(data.get("duration")) };
  const button = document.getElementById("start");
  button.disabled = true;
  formError.hidden = true;
  try {
    const { generation_id: id, unwatch } = await client.generate(request);
    show({ id, prompt: request.prompt, orientation: request.orientation, duration: request.duration, startedAt: Date.now() });
    // show() watches the generation itself, so the watch that generate() started is no longer needed.
    unwatch();
    saveRecords();
  } catch (error) {
    formError.textContent = `Could not start the generation: ${describeFailure(error)}`;
    formError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

setInterval(() => {
  for (const item of items.values()) if (item.finishedAt === undefined) updateElapsed(item);
}, 1000);

for (const record of JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "[]")) show(record);
