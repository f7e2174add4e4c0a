// voicebot · call monitor — the browser side.
//
// One page, three parts:
//   1. the calls lists (live + recent), kept current by the /monitor/ws socket;
//   2. the detail of one call: a live view fed by /monitor/ws/calls/{sid} (transcript,
//      position, prosody meters, running scores, timeline) with optional listen-in over
//      /monitor/ws/calls/{sid}/audio, or a finished view from GET /monitor/api/calls/{sid}
//      (recording synced with the transcript);
//   3. small helpers (formatting, DOM, reconnecting sockets).
//
// The page's chrome (lists, buttons, listen-in) is English. What it shows about one call (its
// position and state in the lists, and the whole detail: speaker labels, timeline, scores,
// prosody units, fillers, notices, times) is in the call's own language, the job script's
// ("language" on every call the server sends), from the server's message catalogue
// (voicebot/dialogue/messages.py), which the page carries as JSON in #monitor-messages.
//
// Everything the server sends is untrusted (transcripts are a candidate's words): it only
// ever reaches the page through textContent / createElement, never innerHTML. The page runs
// under a strict CSP (script-src 'self', style-src 'self'), so there is no inline script and
// styles are set via classes or element.style (CSSOM), never style="..." markup.
"use strict";

(() => {
  // ---------------------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------------------

  const RECONNECT_FIRST_MS = 1000;
  const RECONNECT_MAX_MS = 10000;
  const RECENT_LIMIT = 100; // rows kept in the recent table
  const TIMELINE_LIMIT = 500; // entries kept in a live call's timeline
  const CHART_WINDOW_S = 60; // prosody chart span
  const AUDIO_TARGET_LEAD_S = 0.25; // jitter buffer: audio scheduled ahead of the clock
  const AUDIO_MAX_LEAD_S = 0.8; // above this, drop chunks until back under the target
  const FINISHED_VIEW_DELAY_MS = 1000; // after call.ended, before loading the finished view
  const FINISHED_REFRESHES = 3; // reloads of a just-ended call while it is still being scored
  const FINISHED_REFRESH_MS = 5000;

  // Close codes the server uses to refuse a socket: reconnecting would not help.
  const REFUSALS = {
    4401: "You are signed out.",
    4403: "You may not watch this call.",
    4404: "This call was not found.",
  };

  // ---------------------------------------------------------------------------------------
  // DOM and formatting helpers
  // ---------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  /** A new element with an optional class list and text (text via textContent: safe). */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** A server value made safe to use as part of a class name. */
  function classToken(value) {
    return String(value ?? "")
      .toLowerCase()
      .replace(/[^a-z0-9_-]+/g, "-");
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const humanize = (s) => String(s ?? "").replace(/_/g, " ");
  const nowSecs = () => Date.now() / 1000;

  /** Seconds since an epoch start, never negative (client and server clocks may differ). */
  const elapsedSince = (startedAt) => (isNum(startedAt) ? Math.max(0, nowSecs() - startedAt) : 0);

  /** A duration as mm:ss (h:mm:ss past an hour). */
  function fmtDuration(secs) {
    const total = Math.floor(isNum(secs) && secs > 0 ? secs : 0);
    const h = Math.floor(total / 3600);
    const mm = String(Math.floor((total % 3600) / 60)).padStart(2, "0");
    const ss = String(total % 60).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }

  /** A time on the call clock as m:ss. */
  function fmtClock(t) {
    if (!isNum(t) || t < 0) return "–:––";
    const s = Math.floor(t);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  // ---------------------------------------------------------------------------------------
  // A call's language: the server's message catalogue
  // ---------------------------------------------------------------------------------------

  /** language -> key -> text, from the page's JSON data block (English only if it is missing). */
  const MESSAGES = (() => {
    try {
      const data = JSON.parse(document.getElementById("monitor-messages")?.textContent || "{}");
      return data && typeof data === "object" ? data : {};
    } catch {
      return {};
    }
  })();
  const LOCALES = { en: "en", zh: "zh-CN" }; // the lang attribute of a call's text

  /** The catalogue language of a call ("en" when the server did not say or does not know it). */
  const langOf = (call) => (call && MESSAGES[call.language] ? call.language : "en");

  /** `key`'s text in `lang` with its {fields} filled in (English, then the key, when missing). */
  function msg(lang, key, fields) {
    const text = MESSAGES[lang]?.[key] ?? MESSAGES.en?.[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (all, name) =>
      fields && name in fields ? String(fields[name]) : all,
    );
  }

  /** A machine code (script state, status, end reason) as `lang` reads it; English: the code. */
  const codeLabel = (lang, code) =>
    code === null || code === undefined || code === ""
      ? ""
      : (MESSAGES[lang]?.[`code_${code}`] ?? humanize(code));

  /** An epoch time in local time: the time alone today, with the date otherwise. */
  function fmtWhen(epoch, lang = "en") {
    if (!isNum(epoch)) return "";
    // English calls in the browser's own format; others in their language's.
    const locale = lang === "en" ? [] : LOCALES[lang] || [];
    const date = new Date(epoch * 1000);
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay
      ? date.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleString(locale, { dateStyle: "short", timeStyle: "short" });
  }

  /** "2/5", "consent", "3/5 (follow-up)": where a call is in its script, in its language. */
  function positionText(call) {
    const lang = langOf(call);
    let text;
    if (isNum(call.question_index) && isNum(call.question_count) && call.question_count > 0) {
      text = `${call.question_index + 1}/${call.question_count}`;
    } else {
      text = codeLabel(lang, call.state || "connecting");
    }
    return call.in_follow_up ? msg(lang, "monitor_follow_up", { position: text }) : text;
  }

  function candidateName(call) {
    return call.candidate_name || msg(langOf(call), "monitor_unknown_candidate");
  }

  function callTitle(call) {
    const who = candidateName(call);
    return call.job_title ? `${who} · ${call.job_title}` : who;
  }

  /** Keeps a scrolling container pinned to its bottom while it grows, unless scrolled up. */
  function appendPinned(container, node) {
    const atBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 40;
    container.append(node);
    if (atBottom) container.scrollTop = container.scrollHeight;
  }

  const wsUrl = (path) =>
    (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  const callPath = (sid) => `/monitor/ws/calls/${encodeURIComponent(sid)}`;

  // ---------------------------------------------------------------------------------------
  // Notices, sign-out, REST
  // ---------------------------------------------------------------------------------------

  function showNotice(text) {
    const notice = $("notice");
    notice.textContent = text;
    notice.hidden = !text;
  }

  class SignedOut extends Error {}
  let signingOut = false;

  /** The login expired: say so, stop everything and go back to the login page. */
  function signedOut() {
    if (signingOut) return;
    signingOut = true;
    showNotice("You are signed out (your login expired). Reloading…");
    listSocket.stop();
    setConnState("closed", null);
    closeDetailState();
    setTimeout(() => location.assign("/monitor"), 1500);
  }

  /** GET a JSON resource of the monitor API; 401 signs out, other errors throw. */
  async function api(path) {
    const resp = await fetch(path, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (resp.status === 401) {
      signedOut();
      throw new SignedOut("signed out");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    if (!resp.ok) {
      const error = new Error(body?.error?.message || `HTTP ${resp.status}`);
      error.status = resp.status;
      throw error;
    }
    return body;
  }

  // ---------------------------------------------------------------------------------------
  // A JSON WebSocket that reconnects with backoff (1 s, 2 s, 4 s … 10 s)
  // ---------------------------------------------------------------------------------------

  class ReconnectingSocket {
    /**
     * handlers: onMessage(msg), onState("connecting"|"open"|"closed", retryMs|null),
     * onRefused(code) for 44xx closes, shouldReconnect() -> bool (default: always).
     */
    constructor(path, handlers) {
      this.path = path;
      this.handlers = handlers;
      this.ws = null;
      this.timer = null;
      this.delay = RECONNECT_FIRST_MS;
      this.stopped = true;
    }

    start() {
      this.stopped = false;
      this.connect();
    }

    connect() {
      if (this.stopped) return;
      this.handlers.onState?.("connecting", null);
      const ws = new WebSocket(wsUrl(this.path));
      this.ws = ws;
      ws.onopen = () => {
        if (this.ws !== ws) return;
        this.delay = RECONNECT_FIRST_MS;
        this.handlers.onState?.("open", null);
      };
      ws.onmessage = (event) => {
        if (this.ws !== ws || typeof event.data !== "string") return;
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return; // not ours to show; the protocol is JSON only
        }
        this.handlers.onMessage(msg);
      };
      ws.onclose = (event) => {
        if (this.ws !== ws) return; // replaced or stopped on purpose
        this.ws = null;
        if (this.stopped) return;
        if (REFUSALS[event.code]) {
          this.stopped = true;
          this.handlers.onState?.("closed", null);
          this.handlers.onRefused?.(event.code);
          return;
        }
        if (this.handlers.shouldReconnect && !this.handlers.shouldReconnect()) {
          this.stopped = true;
          this.handlers.onState?.("closed", null);
          return;
        }
        const wait = this.delay;
        this.delay = Math.min(this.delay * 2, RECONNECT_MAX_MS);
        this.handlers.onState?.("closed", wait);
        this.timer = setTimeout(() => this.connect(), wait);
      };
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      const ws = this.ws;
      this.ws = null;
      if (ws) ws.close(1000);
    }
  }

  // ---------------------------------------------------------------------------------------
  // 1. Calls lists
  // ---------------------------------------------------------------------------------------

  const LIVE_CELLS = [
    ["candidate", "Candidate"],
    ["job", "Job"],
    ["duration", "Duration"],
    ["position", "Position"],
    ["state", "State"],
  ];
  const RECENT_CELLS = [
    ["candidate", "Candidate"],
    ["job", "Job"],
    ["when", "When"],
    ["duration", "Duration"],
    ["status", "Outcome"],
  ];

  const liveCalls = new Map(); // sid -> LiveCall
  const liveRows = new Map(); // sid -> <tr>
  const recentRows = new Map(); // sid -> <tr>
  const endedSids = new Set(); // ended since the last full list: a late update must not revive one

  /** A focusable table row with one (labelled, for the phone card layout) cell per column. */
  function makeRow(className, sid, cells) {
    const row = el("tr", className);
    row.dataset.callSid = sid;
    row.tabIndex = 0;
    for (const [name, label] of cells) {
      const cell = el("td", name);
      cell.dataset.label = label;
      row.append(cell);
    }
    if (sid === detail.sid) row.classList.add("selected");
    return row;
  }

  const cell = (row, name) => row.querySelector(`td.${name}`);

  /** A row's cells about the call are in the call's language (the column labels are not). */
  function setRowLanguage(row, lang) {
    row.dataset.language = lang;
    for (const name of ["position", "state", "status", "when"]) {
      const node = cell(row, name);
      if (node) node.lang = LOCALES[lang] || lang;
    }
  }

  function fillLiveRow(row, call) {
    const lang = langOf(call);
    setRowLanguage(row, lang);
    row.dataset.startedAt = String(call.started_at ?? "");
    row.dataset.state = classToken(call.state);
    cell(row, "candidate").textContent = candidateName(call);
    cell(row, "job").textContent = call.job_title || call.job_id || "";
    cell(row, "duration").textContent = fmtDuration(elapsedSince(call.started_at));
    cell(row, "position").textContent = positionText(call);
    cell(row, "state").textContent = codeLabel(lang, call.state);
  }

  /** Adds or updates a live call's row; new rows go in started_at order (oldest first). */
  function upsertLive(call) {
    if (!call || !call.call_sid) return;
    liveCalls.set(call.call_sid, call);
    let row = liveRows.get(call.call_sid);
    if (!row) {
      row = makeRow("call-row", call.call_sid, LIVE_CELLS);
      liveRows.set(call.call_sid, row);
      const body = $("live-calls").tBodies[0];
      const later = [...body.rows].find((r) => Number(r.dataset.startedAt) > call.started_at);
      body.insertBefore(row, later || null);
    }
    fillLiveRow(row, call);
    updateListChrome();
  }

  function removeLive(sid) {
    liveCalls.delete(sid);
    liveRows.get(sid)?.remove();
    liveRows.delete(sid);
  }

  function replaceLive(calls) {
    const keep = new Set(calls.map((c) => c.call_sid));
    for (const sid of [...liveRows.keys()]) if (!keep.has(sid)) removeLive(sid);
    for (const call of calls) upsertLive(call);
    updateListChrome();
  }

  function makeRecentRow(call) {
    const lang = langOf(call);
    const row = makeRow("recent-row", call.call_sid, RECENT_CELLS);
    setRowLanguage(row, lang);
    row.dataset.status = classToken(call.status);
    cell(row, "candidate").textContent = candidateName(call);
    cell(row, "job").textContent = call.job_title || call.job_id || "";
    cell(row, "when").textContent = fmtWhen(call.ended_at ?? call.started_at, lang);
    cell(row, "duration").textContent = fmtDuration(call.duration_secs);
    const status = cell(row, "status");
    const badgeClass = `badge status-${classToken(call.status)}`;
    status.append(el("span", badgeClass, codeLabel(lang, call.status)));
    if (call.end_reason && call.end_reason !== call.status) {
      status.append(" ", el("span", "reason", codeLabel(lang, call.end_reason)));
    }
    return row;
  }

  /** A finished call goes on top of the recent list (replacing an older row of it). */
  function prependRecent(call) {
    if (!call || !call.call_sid) return;
    recentRows.get(call.call_sid)?.remove();
    const row = makeRecentRow(call);
    recentRows.set(call.call_sid, row);
    const body = $("recent-calls").tBodies[0];
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > RECENT_LIMIT) {
      const last = body.rows[body.rows.length - 1];
      recentRows.delete(last.dataset.callSid);
      last.remove();
    }
  }

  function replaceRecent(calls) {
    $("recent-calls").tBodies[0].replaceChildren();
    recentRows.clear();
    // The server sends newest first; prepending in reverse keeps that order.
    for (const call of [...calls].slice(0, RECENT_LIMIT).reverse()) prependRecent(call);
  }

  function updateListChrome() {
    const live = liveRows.size;
    $("live-calls").hidden = live === 0;
    $("live-empty").hidden = live > 0;
    $("live-count").textContent = String(live);
    const recent = recentRows.size;
    $("recent-calls").hidden = recent === 0;
    $("recent-empty").hidden = recent > 0;
  }

  function onListMessage(msg) {
    switch (msg.type) {
      case "calls": // first message, also after every reconnect: replaces both lists
        endedSids.clear();
        replaceLive(msg.live || []);
        replaceRecent(msg.recent || []);
        break;
      case "call.updated":
        if (msg.call && !endedSids.has(msg.call.call_sid)) upsertLive(msg.call);
        break;
      case "call.ended":
        if (msg.call) {
          endedSids.add(msg.call.call_sid);
          removeLive(msg.call.call_sid);
          prependRecent(msg.call);
        }
        break;
      default:
        return;
    }
    updateListChrome();
  }

  function setConnState(state, retryMs) {
    const conn = $("conn");
    conn.dataset.state = state;
    if (state === "open") conn.textContent = "live";
    else if (state === "connecting") conn.textContent = "connecting…";
    else
      conn.textContent = retryMs
        ? `offline · retrying in ${Math.round(retryMs / 1000)} s`
        : "offline";
  }

  const listSocket = new ReconnectingSocket("/monitor/ws", {
    onMessage: onListMessage,
    onState: setConnState,
    onRefused: (code) => (code === 4401 ? signedOut() : showNotice(REFUSALS[code])),
  });

  /** Opens the call of a clicked / Enter-ed row (event delegation on both tables). */
  function wireRowActivation(table) {
    const activate = (event) => {
      const row = event.target.closest("tr[data-call-sid]");
      if (row) openCall(row.dataset.callSid);
    };
    table.addEventListener("click", activate);
    table.addEventListener("keydown", (event) => {
      if (
        (event.key === "Enter" || event.key === " ") &&
        event.target.matches("tr[data-call-sid]")
      ) {
        event.preventDefault();
        activate(event);
      }
    });
  }

  function markSelectedRows() {
    for (const row of document.querySelectorAll("tr[data-call-sid]")) {
      row.classList.toggle("selected", row.dataset.callSid === detail.sid);
    }
  }

  // ---------------------------------------------------------------------------------------
  // 2. Call detail: shared state and parts
  // ---------------------------------------------------------------------------------------

  const detail = {
    sid: null,
    mode: null, // "live" | "finished"
    gen: 0, // bumped on every open/close so late async results for another call are ignored
    call: null, // the LiveCall / FinishedCall fields known so far
    socket: null,
    ended: false,
    endTimer: null,
    partial: null, // the in-progress candidate line
    turns: [], // finished view: [{node, start, end}] for the recording sync
    currentTurn: null,
    opener: null, // the row that opened the detail, to give focus back on close
    rateUnit: null, // "wpm" or "cpm" (Chinese), from the live samples
    lang: "en", // the open call's language: everything the detail says about it
    questions: new Map(), // question id -> its number in the script (1-based)
  };

  /** `key` in the open call's language. */
  const L = (key, fields) => msg(detail.lang, key, fields);

  /** The speech-rate unit's label: words a minute, or characters a minute for Chinese. */
  const defaultRateUnit = () => (detail.lang === "zh" ? "cpm" : "wpm");
  const rateUnitLabel = () => L(`unit_${detail.rateUnit || defaultRateUnit()}`);

  /** The detail speaks the call's language: its headings, labels and notes (data-msg keys). */
  function setDetailLanguage(lang) {
    detail.lang = lang;
    const box = $("call-detail");
    box.lang = LOCALES[lang] || lang;
    box.dataset.language = lang;
    for (const node of box.querySelectorAll("[data-msg]")) node.textContent = L(node.dataset.msg);
    for (const node of box.querySelectorAll("[data-msg-label]")) {
      node.setAttribute("aria-label", L(node.dataset.msgLabel));
    }
    $("meter-rate").querySelector(".unit").textContent = rateUnitLabel();
  }

  /** A question as the timeline names it: its number in the script when known, else its id. */
  function questionName(id) {
    const n = detail.questions.get(id);
    return n ? L("monitor_question_n", { n }) : (id ?? "");
  }

  function rememberQuestions(questions) {
    detail.questions = new Map((questions || []).map((q, i) => [q.id, i + 1]));
  }

  function setStatus(text) {
    $("detail-status").textContent = text || "";
  }

  function setHeader(call) {
    detail.call = { ...(detail.call || {}), ...call };
    const c = detail.call;
    const lang = langOf(c);
    if (lang !== detail.lang) setDetailLanguage(lang);
    $("call-title").textContent = callTitle(c);
    if (detail.mode === "live") {
      $("call-position").textContent = positionText(c);
      $("call-duration").textContent = fmtDuration(elapsedSince(c.started_at));
      $("call-when").textContent = "";
    } else {
      const outcome = [codeLabel(lang, c.status), codeLabel(lang, c.end_reason)].filter(Boolean);
      $("call-position").textContent = [...new Set(outcome)].join(" · ");
      $("call-duration").textContent = fmtDuration(c.duration_secs);
      $("call-when").textContent = fmtWhen(c.started_at, lang);
    }
  }

  // --- transcript ---

  /** One transcript line: `.utt.bot` or `.utt.candidate`, with its times as data attributes. */
  function uttLine(speaker, text, { start, end, questionId } = {}) {
    const who = speaker === "bot" ? "bot" : "candidate";
    const line = el("p", `utt ${who}`);
    if (isNum(start)) line.dataset.start = String(start);
    if (isNum(end)) line.dataset.end = String(end);
    if (questionId) line.dataset.questionId = questionId;
    line.append(
      el("span", "who", L(who === "bot" ? "transcript_bot" : "transcript_candidate")),
      el("span", "utt-time", isNum(start) ? fmtClock(start) : ""),
      el("span", "text", text ?? ""),
    );
    return line;
  }

  function appendUtt(line) {
    appendPinned($("transcript"), line);
  }

  /** The one in-progress candidate line: stable words plain, unstable ones greyed. */
  function showPartial(data) {
    let line = detail.partial;
    if (!line || !line.isConnected) {
      line = uttLine("candidate", "", { start: data.t, questionId: data.question_id });
      line.classList.add("partial");
      detail.partial = line;
      appendUtt(line);
    }
    let stable = data.stable;
    let unstable = data.unstable;
    if (stable === undefined && unstable === undefined) stable = data.text;
    const text = line.querySelector(".text");
    const unstableSpan = el("span", "unstable", unstable || "");
    text.replaceChildren(el("span", "stable", stable || ""), unstable ? " " : "", unstableSpan);
    if (data.question_id) line.dataset.questionId = data.question_id;
  }

  /** The final words of an utterance: the partial line becomes final (or a new line). */
  function showFinal(data) {
    let line = detail.partial;
    detail.partial = null;
    if (line && line.isConnected) {
      line.classList.remove("partial");
      line.classList.add("final");
      line.querySelector(".text").textContent = data.text || "";
      if (isNum(data.start)) {
        line.dataset.start = String(data.start);
        line.querySelector(".utt-time").textContent = fmtClock(data.start);
      }
      if (isNum(data.end)) line.dataset.end = String(data.end);
      if (data.question_id) line.dataset.questionId = data.question_id;
    } else {
      line = uttLine("candidate", data.text, {
        start: data.start,
        end: data.end,
        questionId: data.question_id,
      });
      line.classList.add("final");
      appendUtt(line);
    }
  }

  // --- timeline ---

  function timelineAdd(t, kind, text) {
    const list = $("timeline");
    const item = el("li", `tl-item tl-${classToken(kind)}`);
    if (isNum(t)) item.dataset.t = String(t);
    item.append(el("span", "tl-time", fmtClock(t)), el("span", "tl-text", text));
    if (detail.mode === "finished" && isNum(t)) item.tabIndex = 0; // seeks the recording
    appendPinned(list, item);
    while (list.children.length > TIMELINE_LIMIT) list.firstElementChild.remove();
  }

  /** A short "key value, …" summary of an event's primitive data fields. */
  function summarise(data) {
    return Object.entries(data || {})
      .filter(([, v]) => v !== null && v !== undefined && typeof v !== "object")
      .map(([k, v]) => `${humanize(k)} ${typeof v === "number" ? +v.toFixed(3) : v}`)
      .join(", ");
  }

  // --- scores ---

  function scoreRow(id, name) {
    const box = $("scores");
    let row = [...box.children].find((r) => r.dataset.competency === id);
    if (!row) {
      row = el("div", "score-row");
      row.dataset.competency = id;
      const bar = el("span", "bar");
      bar.setAttribute("aria-hidden", "true");
      bar.append(el("span", "fill"));
      row.append(el("span", "name", name || id), bar, el("span", "value", "–"));
      box.append(row);
    } else if (name) {
      row.querySelector(".name").textContent = name;
    }
    return row;
  }

  function setScore(row, score) {
    const fill = row.querySelector(".fill");
    if (isNum(score)) {
      fill.style.width = `${clamp(score, 0, 100)}%`;
      row.querySelector(".value").textContent = String(Math.round(score));
      row.classList.remove("unscored");
    } else {
      fill.style.width = "0%";
      row.querySelector(".value").textContent = "–";
      row.classList.add("unscored");
    }
  }

  function renderScores(scores) {
    if (!scores) return;
    for (const comp of scores.competencies || []) {
      setScore(scoreRow(comp.id, comp.name), comp.score);
    }
    const parts = [];
    // Mid-call the server leaves the suggestion out and averages only what was answered.
    const overall = scores.recommendation ? "monitor_overall" : "monitor_so_far";
    if (isNum(scores.overall)) parts.push(L(overall, { score: Math.round(scores.overall) }));
    if (scores.recommendation) {
      const key = `recommendation_${scores.recommendation}`;
      const label = MESSAGES[detail.lang]?.[key] ? L(key) : humanize(scores.recommendation);
      parts.push(L("monitor_suggestion", { label }));
    }
    $("score-overall").textContent = parts.join(" · ");
  }

  // --- questions (live view) ---

  function renderQuestions(questions) {
    rememberQuestions(questions);
    const list = $("questions");
    list.replaceChildren();
    for (const q of questions || []) {
      const item = el("li", "question", q.prompt || q.id);
      item.dataset.questionId = q.id;
      if (q.competency) item.title = L("monitor_competency", { name: q.competency });
      list.append(item);
    }
    $("questions-box").hidden = list.children.length === 0;
  }

  function updatePosition(pos) {
    detail.call = { ...(detail.call || {}), ...pos };
    $("call-position").textContent = positionText(detail.call);
    for (const item of $("questions").children) {
      const current = pos.question_id != null && item.dataset.questionId === pos.question_id;
      item.classList.toggle("current", current);
      if (current) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
  }

  // --- prosody meters and chart (live view) ---

  /** A labelled bar meter: value placed between min and max, text in `.value`. */
  function setMeter(id, value, min, max, text) {
    const meter = $(id);
    const fill = meter.querySelector(".fill");
    const shown = meter.querySelector(".value");
    if (!isNum(value)) {
      fill.style.width = "0%";
      shown.textContent = "–";
      meter.classList.add("idle");
      return;
    }
    fill.style.width = `${(clamp((value - min) / (max - min), 0, 1) * 100).toFixed(1)}%`;
    shown.textContent = text;
    meter.classList.remove("idle");
  }

  function resetMeters() {
    for (const id of ["meter-rate", "meter-pitch", "meter-loudness", "meter-pauses"]) {
      setMeter(id, null, 0, 1, "");
    }
    $("meter-rate").querySelector(".unit").textContent = rateUnitLabel();
    chart.samples = [];
    drawChart();
    $("speaking").hidden = true;
  }

  const chart = { samples: [], drawPending: false };

  function chartPush(t, loudness, pitch) {
    const samples = chart.samples;
    // A clock going backwards means a new stream (reconnect): start the chart over.
    if (samples.length && t < samples[samples.length - 1].t) samples.length = 0;
    samples.push({ t, loudness, pitch });
    while (samples.length && samples[0].t < t - CHART_WINDOW_S) samples.shift();
    if (!chart.drawPending) {
      chart.drawPending = true;
      requestAnimationFrame(() => {
        chart.drawPending = false;
        drawChart();
      });
    }
  }

  /** Loudness (-60..0 dBFS) and pitch (50..400 Hz) of the last minute, two lines. */
  function drawChart() {
    const canvas = $("prosody-chart");
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return; // hidden
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;

    g.strokeStyle = color("--chart-grid", "#d0d5dd");
    g.lineWidth = 1;
    for (const frac of [0.25, 0.5, 0.75]) {
      g.beginPath();
      g.moveTo(0, Math.round(height * frac) + 0.5);
      g.lineTo(width, Math.round(height * frac) + 0.5);
      g.stroke();
    }
    const samples = chart.samples;
    if (!samples.length) return;
    const tEnd = samples[samples.length - 1].t;
    const x = (t) => ((t - (tEnd - CHART_WINDOW_S)) / CHART_WINDOW_S) * width;
    const line = (pick, lo, hi, stroke) => {
      g.strokeStyle = stroke;
      g.lineWidth = 2;
      g.beginPath();
      let drawing = false;
      for (const s of samples) {
        const v = pick(s);
        if (!isNum(v)) {
          drawing = false; // a gap (no pitch in a pause) breaks the line
          continue;
        }
        const y = height - clamp((v - lo) / (hi - lo), 0, 1) * (height - 4) - 2;
        if (drawing) g.lineTo(x(s.t), y);
        else g.moveTo(x(s.t), y);
        drawing = true;
      }
      g.stroke();
    };
    line((s) => s.loudness, -60, 0, color("--chart-loudness", "#2e90fa"));
    line((s) => s.pitch, 50, 400, color("--chart-pitch", "#f79009"));
  }

  // Speech rate comes in words per minute, or characters per minute for Chinese
  // (speech_rate_wpm is then null and speech_rate / rate_unit say "cpm").
  const RATE_MAX = { wpm: 250, cpm: 400 };

  function showRate(d) {
    if (d.rate_unit) detail.rateUnit = d.rate_unit;
    let value = d.speech_rate_wpm;
    if (!isNum(value) && isNum(d.speech_rate)) value = d.speech_rate;
    // No rate between utterances: the unit stays the call's (characters a minute in Chinese).
    const unit = isNum(d.speech_rate_wpm) ? "wpm" : detail.rateUnit || defaultRateUnit();
    $("meter-rate").querySelector(".unit").textContent = L(`unit_${unit}`);
    const max = RATE_MAX[unit] || 250;
    setMeter("meter-rate", value, 0, max, isNum(value) ? String(Math.round(value)) : "");
  }

  function onProsodySample(msg) {
    const d = msg.data || {};
    showRate(d); // null between utterances: shown as "–"
    setMeter(
      "meter-pitch",
      d.pitch_hz,
      50,
      400,
      isNum(d.pitch_hz) ? String(Math.round(d.pitch_hz)) : "",
    );
    setMeter(
      "meter-loudness",
      d.loudness_dbfs,
      -60,
      0,
      isNum(d.loudness_dbfs) ? d.loudness_dbfs.toFixed(1) : "",
    );
    const pauses = isNum(d.pause_ratio) ? d.pause_ratio * 100 : null;
    setMeter("meter-pauses", pauses, 0, 100, isNum(pauses) ? String(Math.round(pauses)) : "");
    if (typeof d.speaking === "boolean") $("speaking").hidden = !d.speaking;
    const t = isNum(msg.t) ? msg.t : elapsedSince(detail.call?.started_at);
    chartPush(t, d.loudness_dbfs, d.pitch_hz);
  }

  // Labels for a finished answer's descriptive prosody, in the call's language (a Chinese
  // answer's rate is in characters a minute, its fillers are 嗯/那个/就是); other numeric
  // fields show as "key v".
  const PROSODY_FIELDS = {
    speech_rate_wpm: (v) => L("monitor_rate", { value: Math.round(v), unit: L("unit_wpm") }),
    speech_rate: (v) => L("monitor_rate", { value: Math.round(v), unit: rateUnitLabel() }),
    articulation_rate: (v) =>
      L("monitor_articulation", { value: Math.round(v), unit: rateUnitLabel() }),
    pause_ratio: (v) => L("monitor_pause_ratio", { value: Math.round(v * 100) }),
    pause_count: (v) => L("monitor_pause_count", { value: v }),
    mean_pause_secs: (v) => L("monitor_mean_pause", { value: v.toFixed(2) }),
    pitch_median_hz: (v) => L("monitor_pitch", { value: Math.round(v) }),
    pitch_range_semitones: (v) => L("monitor_pitch_range", { value: v.toFixed(1) }),
    loudness_dbfs: (v) => L("monitor_loudness", { value: v.toFixed(1) }),
    filler_count: (v) => L("monitor_fillers", { value: v }),
    word_count: (v) => L("monitor_words", { value: v }),
    duration_secs: (v) => L("monitor_seconds", { value: v.toFixed(1) }),
  };
  const PROSODY_SKIP = new Set(["t", "speech_secs", "filler_rate"]);

  function prosodySummary(data) {
    return Object.entries(data || {})
      .filter(([k, v]) => isNum(v) && !PROSODY_SKIP.has(k))
      .map(([k, v]) =>
        PROSODY_FIELDS[k] ? PROSODY_FIELDS[k](v) : `${humanize(k)} ${+v.toFixed(2)}`,
      )
      .join(" · ");
  }

  /** Descriptive figures of a finished answer, under that answer's line (or in the timeline). */
  function onProsodyAnswer(msg) {
    const d = msg.data || {};
    const text = prosodySummary(d);
    if (!text) return;
    const lines = [...$("transcript").querySelectorAll(".utt.candidate.final")];
    const answer = lines
      .reverse()
      .find((l) => !d.question_id || l.dataset.questionId === d.question_id);
    if (answer) {
      answer.querySelector(".utt-prosody")?.remove();
      answer.append(el("span", "utt-prosody", text));
    } else {
      timelineAdd(msg.t, "prosody.answer", L("monitor_answer_voice", { text }));
    }
  }

  // ---------------------------------------------------------------------------------------
  // 2a. Live view: /monitor/ws/calls/{sid}
  // ---------------------------------------------------------------------------------------

  function onSnapshot(msg) {
    const d = msg.data || {};
    setHeader(d);
    renderQuestions(d.questions);
    for (const comp of d.competencies || []) scoreRow(comp.id, comp.name);
    renderScores(d.scores);
    // The snapshot is the whole transcript so far (also after a reconnect): redraw it.
    const transcript = $("transcript");
    transcript.replaceChildren();
    detail.partial = null;
    for (const turn of d.transcript || []) {
      const line = uttLine(turn.speaker, turn.text, {
        start: turn.start,
        end: turn.end,
        questionId: turn.question_id,
      });
      if (turn.speaker !== "bot") line.classList.add("final");
      transcript.append(line);
    }
    transcript.scrollTop = transcript.scrollHeight;
    // Response times of what was said before we joined (not again after a reconnect).
    if (!$("timeline").children.length) {
      for (const turn of d.transcript || []) {
        if (turn.speaker === "bot" && isNum(turn.response_latency)) {
          timelineAdd(turn.start, "response", responseText(turn.response_latency));
        }
      }
    }
    updatePosition(d);
    setStatus("");
  }

  function onBotSpeaking(msg) {
    const d = msg.data || {};
    appendUtt(uttLine("bot", d.text || (d.prompt_id ? `(${d.prompt_id})` : ""), { start: msg.t }));
    if (isNum(d.response_latency)) {
      timelineAdd(msg.t, "response", responseText(d.response_latency));
    }
  }

  const responseText = (secs) => L("monitor_response", { secs: secs.toFixed(2) });

  /** "barge-in at 12.3 s", in the call's language. */
  const bargeInText = (at) =>
    isNum(at) ? L("monitor_barge_in_at", { secs: at.toFixed(1) }) : L("monitor_barge_in");

  function onBargeIn(msg) {
    const d = msg.data || {};
    const cut = (Array.isArray(d.cut) ? d.cut : [])
      .map((c) =>
        isNum(c.heard_secs)
          ? L("monitor_cut_after", { prompt: c.prompt_id, secs: c.heard_secs.toFixed(1) })
          : c.prompt_id,
      )
      .filter(Boolean);
    const text = bargeInText(msg.t);
    timelineAdd(
      msg.t,
      "barge_in",
      cut.length ? L("monitor_barge_in_cut", { text, prompts: cut.join(", ") }) : text,
    );
  }

  function onCallEnded(msg) {
    const reason = msg.data?.reason;
    detail.ended = true;
    const text = reason
      ? L("monitor_call_ended_reason", { reason: codeLabel(detail.lang, reason) })
      : L("monitor_call_ended");
    timelineAdd(msg.t, "call.ended", text);
    setStatus(text);
    stopListening("call ended");
    $("speaking").hidden = true;
    detail.socket?.stop();
    const sid = detail.sid;
    const gen = detail.gen;
    detail.endTimer = setTimeout(() => {
      if (detail.gen === gen) loadFinished(sid);
    }, FINISHED_VIEW_DELAY_MS);
  }

  /** How an answer or a consent was given ("keypad", "voice"), in the call's language. */
  const viaName = (via) =>
    MESSAGES[detail.lang]?.[`monitor_via_${via}`] ? L(`monitor_via_${via}`) : String(via);

  /** A knock-out's answer code (yes / no / unclear) as the call's language reads it. */
  const answerName = (answer) => MESSAGES[detail.lang]?.[`code_${answer}`] ?? String(answer);

  // Events that become timeline entries, with their text (in the call's language).
  const TIMELINE_EVENTS = {
    "consent.recorded": (d) =>
      L(d.granted ? "monitor_consent_granted" : "monitor_consent_declined") +
      (d.via ? L("monitor_via", { via: viaName(d.via) }) : ""),
    "knockout.recorded": (d) =>
      L("monitor_knockout", {
        question: questionName(d.question_id),
        result: L(d.passed ? "monitor_knockout_passed" : "monitor_knockout_not_passed"),
      }) +
      (d.answer !== undefined && d.answer !== null
        ? L("monitor_knockout_answer", { answer: answerName(d.answer) })
        : ""),
    "opt_out.recorded": (d) =>
      d.via ? L("monitor_opt_out_via", { via: viaName(d.via) }) : L("monitor_opt_out"),
    "question.skipped": (d) => L("monitor_skipped", { question: questionName(d.question_id) }),
    "repeat.requested": (d) => L("monitor_repeat", { question: questionName(d.question_id) }),
    "question.answered": (d) =>
      L("monitor_answered", { question: questionName(d.question_id) }) +
      (d.follow_up ? L("monitor_answered_follow_up") : "") +
      (d.via === "dtmf" ? L("monitor_answered_keypad") : ""),
    "call.started": () => L("monitor_call_started"),
  };

  // Events with their own handling; anything else is summarised into the timeline.
  const CALL_EVENTS = {
    snapshot: onSnapshot,
    "script.position": (msg) => updatePosition(msg.data || {}),
    "bot.speaking": onBotSpeaking,
    "speech.started": () => ($("speaking").hidden = false),
    "speech.ended": () => ($("speaking").hidden = true),
    "transcript.partial": (msg) => {
      const d = msg.data || {};
      showPartial({ ...d, t: isNum(d.t) ? d.t : msg.t });
      if (isNum(d.speech_rate_wpm) || isNum(d.speech_rate)) showRate(d);
    },
    "transcript.final": (msg) => showFinal(msg.data || {}),
    "prosody.sample": onProsodySample,
    "prosody.answer": onProsodyAnswer,
    "scores.updated": (msg) => renderScores(msg.data),
    barge_in: onBargeIn,
    "call.ended": onCallEnded,
    "audio.chunk": () => {}, // listen-in audio has its own socket
  };

  function onCallMessage(msg) {
    if (!msg || typeof msg.type !== "string") return;
    if (msg.call_sid && msg.call_sid !== detail.sid) return;
    const handler = CALL_EVENTS[msg.type];
    if (handler) {
      handler(msg);
    } else if (TIMELINE_EVENTS[msg.type]) {
      timelineAdd(msg.t, msg.type, TIMELINE_EVENTS[msg.type](msg.data || {}));
    } else {
      const summary = summarise(msg.data);
      timelineAdd(
        msg.t,
        msg.type,
        summary ? `${humanize(msg.type)}: ${summary}` : humanize(msg.type),
      );
    }
  }

  function startLiveView(sid, call) {
    detail.mode = "live";
    $("live-panel").hidden = false;
    $("finished-panel").hidden = true;
    setHeader(call || {});
    $("scores-note").textContent = L("monitor_scores_running");
    setStatus(L("monitor_connecting"));
    const gen = detail.gen;
    detail.socket = new ReconnectingSocket(callPath(sid), {
      onMessage: onCallMessage,
      onState: (state, retryMs) => {
        if (detail.gen !== gen || detail.ended) return;
        if (state === "closed" && retryMs) {
          setStatus(L("monitor_retrying", { secs: Math.round(retryMs / 1000) }));
        } else if (state === "open") {
          setStatus("");
        }
      },
      onRefused: (code) => {
        if (detail.gen !== gen) return;
        if (code === 4401) {
          signedOut();
        } else if (code === 4404) {
          // Not live (any more): it may just have ended. ended=true keeps the REST answer
          // from sending us back here even if it still says live.
          detail.ended = true;
          loadFinished(sid);
        } else {
          setStatus(REFUSALS[code]);
        }
      },
      shouldReconnect: () => detail.gen === gen && !detail.ended,
    });
    detail.socket.start();
    requestAnimationFrame(drawChart); // size the canvas now that it is visible
  }

  // ---------------------------------------------------------------------------------------
  // 2b. Listen-in: /monitor/ws/calls/{sid}/audio (mu-law 8 kHz, jitter buffer)
  // ---------------------------------------------------------------------------------------

  // G.711 mu-law byte -> float sample in [-1, 1].
  const MULAW = (() => {
    const table = new Float32Array(256);
    for (let i = 0; i < 256; i++) {
      const u = ~i & 0xff;
      let magnitude = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
      magnitude -= 0x84;
      table[i] = (u & 0x80 ? -magnitude : magnitude) / 32768;
    }
    return table;
  })();

  /** Playback state and counters of one listen-in session (reset at each start). */
  const freshPlayback = () => ({
    sampleRate: 8000,
    playhead: 0, // context time where the next chunk starts
    dropping: false,
    lastSeq: null,
    frames: 0,
    underruns: 0,
    gaps: 0,
    dropped: 0,
  });

  const listen = { ws: null, ctx: null, gain: null, sources: new Set(), ...freshPlayback() };

  function volumeValue() {
    return clamp(Number($("volume").value) / 100, 0, 1);
  }

  function updateListenStats(text) {
    const stats = $("listen-stats");
    const lead = listen.ctx ? Math.max(0, listen.playhead - listen.ctx.currentTime) : 0;
    const bufferMs = Math.round(lead * 1000);
    stats.dataset.frames = String(listen.frames);
    stats.dataset.bufferMs = String(bufferMs);
    stats.dataset.underruns = String(listen.underruns);
    stats.dataset.gaps = String(listen.gaps);
    if (text !== undefined) {
      stats.textContent = text;
      return;
    }
    const extras = [];
    if (listen.underruns) extras.push(`${listen.underruns} underruns`);
    if (listen.gaps) extras.push(`${listen.gaps} gaps`);
    if (listen.dropped) extras.push(`${listen.dropped} dropped`);
    stats.textContent = [`listening · ${bufferMs} ms buffer`, ...extras].join(" · ");
  }

  function setListenButton(on) {
    const button = $("listen");
    button.textContent = on ? "Stop listening" : "Listen in";
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }

  function startListening() {
    if (!detail.sid || detail.mode !== "live" || detail.ended || listen.ws) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) {
      updateListenStats("audio playback is not supported by this browser");
      return;
    }
    let ctx;
    try {
      ctx = new Ctx({ sampleRate: 8000 }); // no resampling needed where supported
    } catch {
      ctx = new Ctx(); // 8 kHz AudioBuffers still play; the browser resamples them
    }
    ctx.resume?.().catch(() => {}); // we are inside the click: allowed to start audio
    const gain = ctx.createGain();
    gain.gain.value = volumeValue();
    gain.connect(ctx.destination);
    Object.assign(listen, { ctx, gain, ...freshPlayback() });
    listen.sources.clear();

    const ws = new WebSocket(wsUrl(`${callPath(detail.sid)}/audio`));
    ws.binaryType = "arraybuffer";
    listen.ws = ws;
    ws.onmessage = (event) => {
      if (listen.ws !== ws) return;
      if (typeof event.data === "string") onAudioText(event.data);
      else onAudioFrame(event.data);
    };
    ws.onclose = (event) => {
      if (listen.ws !== ws) return;
      if (event.code === 4401) signedOut();
      stopListening(REFUSALS[event.code] || "listen-in disconnected");
    };
    setListenButton(true);
    updateListenStats("connecting audio…");
  }

  function onAudioText(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.type === "audio.format") {
      if (msg.encoding && msg.encoding !== "mulaw") {
        stopListening(`unsupported audio encoding: ${msg.encoding}`);
        return;
      }
      if (isNum(msg.sample_rate) && msg.sample_rate >= 3000) listen.sampleRate = msg.sample_rate;
      updateListenStats();
    } else if (msg.type === "call.ended") {
      stopListening("call ended");
    }
  }

  /** One binary frame: uint32 BE sequence, uint32 BE call-clock ms, then mu-law bytes. */
  function onAudioFrame(buffer) {
    if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 8 || !listen.ctx) return;
    const view = new DataView(buffer);
    const seq = view.getUint32(0);
    listen.frames += 1;
    if (listen.lastSeq !== null) {
      if (seq <= listen.lastSeq) {
        updateListenStats(); // duplicate or out of order: too late to play
        return;
      }
      if (seq !== listen.lastSeq + 1) listen.gaps += 1;
    }
    listen.lastSeq = seq;
    const bytes = new Uint8Array(buffer, 8);
    if (bytes.length) schedule(bytes);
    updateListenStats();
  }

  /**
   * Jitter buffer. Chunks are scheduled back to back at `playhead`, which starts
   * AUDIO_TARGET_LEAD_S ahead of the audio clock. Back to back rather than re-anchoring every
   * chunk at currentTime + target: re-anchoring would insert a little silence whenever a chunk
   * arrives slightly late. If the playhead falls behind the clock (underrun) we count it and
   * restart at currentTime + target; if bursts pile up more than AUDIO_MAX_LEAD_S of audio we
   * drop chunks until the lead is back under the target, so the delay stays well under 2 s.
   */
  function schedule(bytes) {
    const ctx = listen.ctx;
    const now = ctx.currentTime;
    if (listen.playhead === 0) {
      listen.playhead = now + AUDIO_TARGET_LEAD_S;
    } else if (listen.playhead < now) {
      listen.underruns += 1;
      listen.playhead = now + AUDIO_TARGET_LEAD_S;
    }
    const lead = listen.playhead - now;
    if (lead > AUDIO_MAX_LEAD_S) listen.dropping = true;
    if (listen.dropping) {
      if (lead > AUDIO_TARGET_LEAD_S) {
        listen.dropped += 1;
        return;
      }
      listen.dropping = false;
    }
    const audio = ctx.createBuffer(1, bytes.length, listen.sampleRate);
    const samples = audio.getChannelData(0);
    for (let i = 0; i < bytes.length; i++) samples[i] = MULAW[bytes[i]];
    const source = ctx.createBufferSource();
    source.buffer = audio;
    source.connect(listen.gain);
    source.onended = () => listen.sources.delete(source);
    source.start(listen.playhead);
    listen.sources.add(source);
    listen.playhead += audio.duration;
  }

  function stopListening(reason) {
    const { ws, ctx } = listen;
    listen.ws = null;
    listen.ctx = null;
    listen.gain = null;
    if (ws) {
      ws.onmessage = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    for (const source of listen.sources) {
      try {
        source.stop();
      } catch {
        // never started or already stopped
      }
    }
    listen.sources.clear();
    listen.playhead = 0;
    if (ctx) ctx.close().catch(() => {});
    setListenButton(false);
    if (ws || reason) updateListenStats(reason || "not listening");
  }

  // ---------------------------------------------------------------------------------------
  // 2c. Finished view: GET /monitor/api/calls/{sid}, recording synced with the transcript
  // ---------------------------------------------------------------------------------------

  async function loadFinished(sid, attempt = 0) {
    const gen = detail.gen;
    if (attempt === 0) setStatus(L("monitor_loading"));
    let data;
    try {
      data = await api(`/monitor/api/calls/${encodeURIComponent(sid)}`);
    } catch (error) {
      if (detail.gen === gen && !(error instanceof SignedOut)) {
        setStatus(
          error.status === 404
            ? "This call was not found."
            : `Could not load the call: ${error.message}`,
        );
      }
      return;
    }
    if (detail.gen !== gen) return; // another call was opened meanwhile
    if (data.live && !detail.ended) {
      startLiveView(sid, data); // e.g. opened from a link before the list arrived
      return;
    }
    renderFinished(data);
    // Just after a watched call ends, its recording and scores may still be in the making and
    // nothing pushes them: look again a few times, unless the recruiter is already listening.
    const pending = data.status === "scoring" || !data.recording_url;
    if (detail.ended && pending && attempt < FINISHED_REFRESHES) {
      detail.endTimer = setTimeout(() => {
        const audio = $("recording");
        if (detail.gen === gen && audio.paused && audio.currentTime === 0) {
          loadFinished(sid, attempt + 1);
        }
      }, FINISHED_REFRESH_MS);
    }
  }

  function renderFinished(data) {
    clearDetailContent();
    detail.mode = "finished";
    detail.socket?.stop();
    detail.socket = null;
    $("live-panel").hidden = true;
    $("finished-panel").hidden = false;
    setHeader(data);
    rememberQuestions(data.questions);
    setStatus("");

    const audio = $("recording");
    if (data.recording_url) {
      if (audio.getAttribute("src") !== data.recording_url) audio.src = data.recording_url;
      audio.hidden = false;
      $("no-recording").hidden = true;
    } else {
      resetAudio();
      $("no-recording").hidden = false;
    }
    const report = $("report-link");
    if (data.report_url) {
      report.href = data.report_url;
      report.hidden = false;
    } else {
      report.removeAttribute("href");
      report.hidden = true;
    }

    if (data.scores) {
      $("scores-note").textContent = L("monitor_scores_final");
      renderScores(data.scores);
    } else {
      $("scores-note").textContent = L(
        data.status === "scoring" ? "monitor_scoring" : "monitor_no_scores",
      );
    }

    const transcript = $("transcript");
    const turns = [...(data.turns || [])].sort((a, b) => (a.start ?? 0) - (b.start ?? 0));
    detail.turns = turns.map((turn, i) => {
      const node = uttLine(turn.speaker, turn.text, {
        start: turn.start,
        end: turn.end,
        questionId: turn.question_id,
      });
      if (turn.speaker !== "bot") node.classList.add("final");
      if (turn.interrupted) {
        node.classList.add("interrupted");
        node.append(el("span", "tag", L("monitor_cut_off")));
      }
      if (isNum(turn.start)) node.tabIndex = 0; // click / Enter seeks the recording
      transcript.append(node);
      // A turn stays current until the next one starts (through the pause after it, so the
      // highlight never blinks off between lines), or to its end when it is the last.
      const next = turns.slice(i + 1).find((t) => isNum(t.start));
      let until = isNum(turn.end) ? turn.end : Infinity;
      if (next) until = isNum(turn.end) ? Math.max(turn.end, next.start) : next.start;
      return { node, start: isNum(turn.start) ? turn.start : null, end: until };
    });
    if (!turns.length) transcript.append(el("p", "empty", L("monitor_no_transcript")));

    for (const turn of turns) {
      if (turn.speaker !== "bot") continue;
      if (isNum(turn.response_latency)) {
        timelineAdd(turn.start, "response", responseText(turn.response_latency));
      }
      if (turn.interrupted) {
        const at = isNum(turn.end) ? turn.end : turn.start;
        timelineAdd(at, "barge_in", bargeInText(at));
      }
    }
    // Consent, knock-outs, opt-outs, skips and repeats, from the call's recorded timeline.
    for (const event of Array.isArray(data.events) ? data.events : []) {
      const describe = TIMELINE_EVENTS[event.type];
      if (describe) timelineAdd(event.t, event.type, describe(event.data || {}));
    }
    const entries = [...$("timeline").children];
    entries.sort((a, b) => (Number(a.dataset.t) || 0) - (Number(b.dataset.t) || 0));
    $("timeline").append(...entries); // in call order
    if (!$("timeline").children.length) $("timeline-box").hidden = true;
  }

  /** Highlights (and scrolls to) the turn being heard in the recording. */
  function syncTranscript() {
    if (detail.mode !== "finished") return;
    const t = $("recording").currentTime;
    let current = null;
    for (const turn of detail.turns) {
      if (turn.start === null) continue;
      if (turn.start > t) break;
      if (t < turn.end) current = turn; // the latest-started turn wins when turns overlap
    }
    if (current === detail.currentTurn) return;
    detail.currentTurn?.node.classList.remove("current");
    detail.currentTurn = current;
    if (!current) return;
    current.node.classList.add("current");
    scrollWithin($("transcript"), current.node);
  }

  /** Scrolls a container (not the page) so that a child is visible. */
  function scrollWithin(container, child) {
    const top = child.offsetTop;
    const bottom = top + child.offsetHeight;
    if (top < container.scrollTop || bottom > container.scrollTop + container.clientHeight) {
      container.scrollTop = Math.max(0, top - container.clientHeight / 3);
    }
  }

  function seekTo(t) {
    const audio = $("recording");
    if (detail.mode !== "finished" || audio.hidden || !isNum(t)) return;
    audio.currentTime = t;
    if (audio.paused) audio.play().catch(() => {});
  }

  function resetAudio() {
    const audio = $("recording");
    audio.pause();
    audio.removeAttribute("src");
    audio.load(); // drops the old media
    audio.hidden = true;
  }

  // ---------------------------------------------------------------------------------------
  // 2d. Opening and closing the detail
  // ---------------------------------------------------------------------------------------

  /** Empties everything the detail shows (both views). */
  function clearDetailContent() {
    $("transcript").replaceChildren();
    $("timeline").replaceChildren();
    $("timeline-box").hidden = false;
    $("scores").replaceChildren();
    $("score-overall").textContent = "";
    $("questions").replaceChildren();
    detail.partial = null;
    detail.turns = [];
    detail.currentTurn = null;
    resetMeters();
  }

  /** Stops sockets, audio and timers of the open call and clears the detail. */
  function closeDetailState() {
    detail.gen += 1;
    detail.socket?.stop();
    stopListening();
    clearTimeout(detail.endTimer);
    resetAudio();
    clearDetailContent();
    Object.assign(detail, {
      sid: null,
      mode: null,
      call: null,
      socket: null,
      ended: false,
      endTimer: null,
      rateUnit: null,
      questions: new Map(),
    });
    setDetailLanguage("en");
    $("report-link").hidden = true;
    $("no-recording").hidden = true;
    $("live-panel").hidden = true;
    $("finished-panel").hidden = true;
    Object.assign(listen, { frames: 0, underruns: 0, gaps: 0, dropped: 0 });
    updateListenStats("not listening");
    setStatus("");
    for (const id of ["call-title", "call-position", "call-duration", "call-when"]) {
      $(id).textContent = "";
    }
  }

  function openCall(sid, { fromHistory = false } = {}) {
    if (!sid || signingOut) return;
    if (detail.sid === sid) {
      $("call-title").focus();
      return;
    }
    const wasOpen = detail.sid !== null;
    closeDetailState();
    detail.sid = sid;
    // Focus goes back to the row on close when a row (keyboard or click) opened the call.
    detail.opener = document.activeElement?.closest?.("tr[data-call-sid]") ? sid : null;
    $("call-detail").hidden = false;
    document.body.classList.add("detail-open");
    markSelectedRows();

    const live = liveCalls.get(sid);
    setDetailLanguage(live ? langOf(live) : recentRows.get(sid)?.dataset.language || "en");
    if (live) {
      startLiveView(sid, live);
    } else {
      detail.mode = "finished";
      $("call-title").textContent = "…";
      loadFinished(sid);
    }
    // One history entry per detail visit, so the phone's back button returns to the lists.
    if (!fromHistory) {
      const url = `#call=${encodeURIComponent(sid)}`;
      if (wasOpen) history.replaceState({ call: sid }, "", url);
      else history.pushState({ call: sid }, "", url);
    }
    $("call-title").focus({ preventScroll: false });
  }

  function closeCall({ fromHistory = false } = {}) {
    if (detail.sid === null) return;
    const opener = detail.opener;
    closeDetailState();
    $("call-detail").hidden = true;
    document.body.classList.remove("detail-open");
    markSelectedRows();
    if (!fromHistory) {
      if (history.state && history.state.call) history.back();
      else history.replaceState(null, "", location.pathname + location.search);
    }
    const row = opener && (liveRows.get(opener) || recentRows.get(opener));
    if (row) row.focus();
  }

  function sidFromHash() {
    const match = /^#call=(.+)$/.exec(location.hash);
    if (!match) return null;
    try {
      return decodeURIComponent(match[1]);
    } catch {
      return null;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Start-up
  // ---------------------------------------------------------------------------------------

  /** Once a second: the live durations (client-side from started_at). */
  function tick() {
    for (const row of liveRows.values()) {
      cell(row, "duration").textContent = fmtDuration(elapsedSince(Number(row.dataset.startedAt)));
    }
    if (detail.mode === "live" && !detail.ended && detail.call) {
      $("call-duration").textContent = fmtDuration(elapsedSince(detail.call.started_at));
    }
  }

  function restoreVolume() {
    try {
      const saved = localStorage.getItem("monitor.volume");
      if (saved !== null) $("volume").value = saved;
    } catch {
      // storage may be disabled; the default volume is fine
    }
  }

  function init() {
    wireRowActivation($("live-calls"));
    wireRowActivation($("recent-calls"));
    $("close-detail").addEventListener("click", () => closeCall());
    $("listen").addEventListener("click", () => (listen.ws ? stopListening() : startListening()));
    restoreVolume();
    $("volume").addEventListener("input", () => {
      if (listen.gain) listen.gain.gain.value = volumeValue();
      try {
        localStorage.setItem("monitor.volume", $("volume").value);
      } catch {
        // ignore
      }
    });

    const audio = $("recording");
    audio.addEventListener("timeupdate", syncTranscript);
    audio.addEventListener("seeked", syncTranscript);
    audio.addEventListener("error", () => {
      if (detail.mode === "finished" && audio.getAttribute("src")) {
        setStatus("The recording could not be loaded.");
      }
    });

    // Clicking / Enter on a transcript line or a timeline entry seeks the recording.
    const seekFrom = (selector) => (event) => {
      if (event.type === "keydown" && event.key !== "Enter") return;
      if (event.type === "click" && String(window.getSelection?.() ?? "")) return; // selecting text
      const node = event.target.closest(selector);
      if (!node) return;
      const t = Number(node.dataset.start ?? node.dataset.t);
      if (Number.isFinite(t)) {
        event.preventDefault();
        seekTo(t);
      }
    };
    for (const [id, selector] of [
      ["transcript", ".utt"],
      ["timeline", ".tl-item"],
    ]) {
      $(id).addEventListener("click", seekFrom(selector));
      $(id).addEventListener("keydown", seekFrom(selector));
    }

    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && detail.sid && !event.target.matches("input, audio")) {
        closeCall();
      }
    });
    window.addEventListener("popstate", () => {
      const sid = sidFromHash();
      if (sid) openCall(sid, { fromHistory: true });
      else closeCall({ fromHistory: true });
    });
    window.addEventListener("resize", () => requestAnimationFrame(drawChart));
    window.addEventListener("pagehide", () => {
      stopListening();
      listSocket.stop();
      detail.socket?.stop();
    });
    // Back from the back/forward cache the sockets are gone: start over.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) location.reload();
    });

    updateListChrome();
    setInterval(tick, 1000);
    listSocket.start();
    const sid = sidFromHash();
    if (sid) openCall(sid, { fromHistory: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
