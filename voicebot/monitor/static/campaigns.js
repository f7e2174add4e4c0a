// voicebot · call monitor — the campaigns view (outbound campaigns the recruiter may see).
//
// Kept current by the /monitor/ws/campaigns socket, which sends the whole visible list on
// connect and again whenever a campaign's counts change (the dialer placed or settled a call,
// an interview ended). Each campaign shows its progress as a bar (interviews finished of all),
// its counts, the next attempt due and the calls up now, with a Pause / Resume button
// (POST /monitor/api/campaigns/{id}/pause|resume with the page's CSRF token).
//
// Like monitor.js: server data reaches the page only through textContent / createElement, and
// nothing is styled inline (strict CSP).
"use strict";

(() => {
  const RECONNECT_FIRST_MS = 1000;
  const RECONNECT_MAX_MS = 10000;
  const BUCKETS = [
    ["scheduled", "scheduled"],
    ["dialing", "dialing"],
    ["in_interview", "in interview"],
    ["completed", "completed"],
    ["unreachable", "unreachable"],
    ["opted_out", "opted out"],
    ["other_ended", "ended otherwise"],
  ];
  const FINISHED = ["completed", "unreachable", "opted_out", "other_ended"];

  const $ = (id) => document.getElementById(id);
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  };
  const wsUrl = (path) =>
    (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

  function when(seconds) {
    if (!seconds) return "none";
    const date = new Date(seconds * 1000);
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString([], {
          month: "short",
          day: "numeric",
          hour: "2-digit",
          minute: "2-digit",
        });
  }

  /** "09:00 (12), 09:30 (3)": when the next attempts are due and how many then. */
  function nextAttempts(next) {
    if (!Array.isArray(next) || next.length === 0) return "none";
    return next.map((n) => `${when(n.at)} (${n.interviews})`).join(", ");
  }

  function showError(text) {
    const box = $("campaigns-error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  async function setPaused(campaign, paused, button) {
    button.disabled = true;
    try {
      const resp = await fetch(
        `/monitor/api/campaigns/${encodeURIComponent(campaign.id)}/${paused ? "pause" : "resume"}`,
        {
          method: "POST",
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        },
      );
      let body = null;
      try {
        body = await resp.json();
      } catch {
        body = null;
      }
      if (resp.status === 401) {
        location.assign("/monitor");
        return;
      }
      if (!resp.ok) {
        showError(body?.error?.message || `could not ${paused ? "pause" : "resume"} (HTTP ${resp.status})`);
        return;
      }
      showError("");
      upsert(body);
    } catch {
      showError("the server cannot be reached; try again in a moment");
    } finally {
      button.disabled = false;
    }
  }

  function render(campaign) {
    const counts = campaign.counts;
    const total = counts.total || 0;
    const finished = FINISHED.reduce((sum, key) => sum + (counts[key] || 0), 0);
    const item = el("article", "campaign");
    item.dataset.campaignId = campaign.id;
    item.dataset.paused = String(campaign.paused);

    const head = el("div", "campaign-head");
    const title = el("h3", "campaign-name", campaign.name || campaign.id);
    head.append(title);
    if (campaign.paused) head.append(el("span", "badge campaign-paused", "paused"));
    const toggle = el("button", "campaign-toggle", campaign.paused ? "Resume" : "Pause");
    toggle.type = "button";
    toggle.addEventListener("click", () => setPaused(campaign, !campaign.paused, toggle));
    head.append(toggle);
    item.append(head);

    item.append(el("p", "campaign-job muted", campaign.job_title || campaign.job_id));

    const bar = el("progress", "campaign-bar");
    bar.max = Math.max(total, 1);
    bar.value = finished;
    bar.setAttribute("aria-label", `${campaign.name}: ${finished} of ${total} finished`);
    item.append(bar);
    item.append(el("p", "campaign-progress", `${finished} of ${total} finished`));

    const list = el("dl", "campaign-counts");
    for (const [key, label] of BUCKETS) {
      const entry = el("div", `campaign-count count-${key}`);
      entry.append(el("dt", null, label), el("dd", "mono", counts[key] || 0));
      list.append(entry);
    }
    item.append(list);

    const meta = el("p", "campaign-meta muted");
    meta.append(
      el("span", "campaign-calls-up", `calls up now: ${campaign.calls_up}`),
      document.createTextNode(" · "),
      el("span", "campaign-next", `next attempts: ${nextAttempts(campaign.next_attempts)}`),
    );
    item.append(meta);
    return item;
  }

  let campaigns = [];

  function show() {
    const list = $("campaign-list");
    list.replaceChildren(...campaigns.map(render));
    $("campaigns-count").textContent = String(campaigns.length);
    $("campaigns-empty").hidden = campaigns.length > 0;
  }

  function upsert(campaign) {
    const at = campaigns.findIndex((c) => c.id === campaign.id);
    if (at >= 0) campaigns[at] = campaign;
    else campaigns.unshift(campaign);
    show();
  }

  let delay = RECONNECT_FIRST_MS;

  function connect() {
    const ws = new WebSocket(wsUrl("/monitor/ws/campaigns"));
    ws.onopen = () => {
      delay = RECONNECT_FIRST_MS;
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "campaigns" && Array.isArray(msg.campaigns)) {
        campaigns = msg.campaigns;
        show();
      }
    };
    ws.onclose = (event) => {
      if (event.code === 4401) return; // signed out: monitor.js takes the page back to sign-in
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    };
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
