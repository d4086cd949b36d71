// Live status of a job's page. With the API's event stream (data-events-url), each event
// makes the page read the job resource once; without it, or when the stream fails, the
// resource is polled every second. Either way it stops when the job finishes.
// Values go in with textContent only, so nothing from a job is ever parsed as HTML.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live || live.dataset.finished === "yes") {
    return;
  }
  const url = live.dataset.liveUrl;
  const field = (name) => live.querySelector('[data-field="' + name + '"]');
  const setText = (name, value) => {
    const el = field(name);
    if (el) {
      el.textContent = value === null || value === undefined ? "" : String(value);
    }
  };
  const finished = new Set(["succeeded", "failed", "cancelled"]);

  function show(job) {
    const status = field("status");
    if (status) {
      status.textContent = job.status;
      status.className = "status status-" + job.status;
    }
    setText("reason", job.reason);
    setText("attempts", job.attempts + " of " + job.max_attempts);
    if (typeof job.runs === "number") {
      setText("runs", job.runs); // durable jobs: one job, several runs
    }
    setText("started_at", job.started_at);
    setText("finished_at", job.finished_at);
    const fraction = job.progress ? Number(job.progress.fraction) || 0 : 0;
    const bar = field("progress");
    if (bar) {
      bar.value = fraction;
      bar.textContent = Math.round(fraction * 100) + "%";
    }
    setText("progress-percent", Math.round(fraction * 100) + "%");
    setText("progress-message", job.progress ? job.progress.message : "");
  }

  let failures = 0;
  let stopped = false;

  // Result, error and attempt log are drawn by the server: take the final page's content
  // (parsed as a document, so nothing in it runs) and keep the messages shown above it.
  async function showFinalPage() {
    try {
      const answer = await fetch(window.location.href, { credentials: "same-origin" });
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      const next = fresh.querySelector("main");
      const current = document.querySelector("main");
      if (!answer.ok || !next || !current) {
        throw new Error("HTTP " + answer.status);
      }
      const flashes = current.querySelector(".flashes");
      next.querySelector(".flashes")?.remove();
      if (flashes) {
        next.prepend(flashes);
      }
      current.replaceWith(document.adoptNode(next));
    } catch (e) {
      window.location.reload();
    }
  }

  // Reads the job once; true while it is still running.
  async function refresh() {
    const answer = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (answer.status === 401 || answer.status === 404) {
      setText("live-note", "Not updating: sign in again or reload.");
      stopped = true;
      return false;
    }
    if (!answer.ok) {
      throw new Error("HTTP " + answer.status);
    }
    const job = await answer.json();
    show(job);
    if (finished.has(job.status)) {
      setText("live-note", "Finished.");
      stopped = true;
      showFinalPage();
      return false;
    }
    return true;
  }

  async function poll() {
    if (stopped) {
      return;
    }
    try {
      if (!(await refresh())) {
        return;
      }
      failures = 0;
    } catch (e) {
      failures += 1;
      setText("live-note", "Updating live (connection lost, retrying).");
    }
    window.setTimeout(poll, Math.min(1000 * (failures + 1), 10000));
  }

  function listen(eventsUrl) {
    const source = new EventSource(eventsUrl);
    let opened = false;
    let errors = 0;
    const onEvent = () => {
      refresh().catch(() => undefined);
    };
    source.onopen = () => {
      opened = true;
      errors = 0;
    };
    ["status", "progress", "attempt", "finished"].forEach((kind) => {
      source.addEventListener(kind, onEvent);
    });
    source.onerror = () => {
      errors += 1;
      // EventSource reconnects by itself (Last-Event-ID); give up on it only if it
      // never opened or keeps failing, and poll instead.
      if (!opened || errors > 3) {
        source.close();
        if (!stopped) {
          window.setTimeout(poll, 1000);
        }
      }
    };
  }

  if (live.dataset.eventsUrl && window.EventSource) {
    listen(live.dataset.eventsUrl);
  } else {
    window.setTimeout(poll, 1000);
  }
})();
