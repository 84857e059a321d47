// The page's only script: show each frame the server pushes (server-sent events).
// EventSource reconnects by itself when the view's server comes back.
"use strict";

const $ = (id) => document.getElementById(id);

function show(frame) {
  $("clock").textContent = frame.clock;
  $("run").textContent = frame.run ? `run ${frame.run}` : "";
  $("verdict").textContent = frame.verdict;
  $("verdict").classList.toggle("settled", frame.settled);
  $("queue").textContent = frame.queue.line;
  $("broker").textContent = `broker: ${frame.broker}`;
  $("alarm").textContent = frame.alarm;
  $("alarm").hidden = !frame.alarm;
  const dropped = frame.feed.dropped ? `; ${frame.feed.dropped} malformed events dropped` : "";
  setFeed(frame.feed.live, frame.feed.live ? `live${dropped}` : frame.feed.note);
  // The SVG is made by workqueue/report/timeline.py, which escapes every text it draws.
  $("timeline").innerHTML = frame.svg;
}

function setFeed(live, text) {
  const badge = $("feed");
  badge.textContent = text;
  badge.classList.toggle("live", live);
  badge.classList.toggle("lost", !live);
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try { localStorage.setItem("workqueue-theme", theme); } catch (e) { /* private mode: not kept */ }
}

function start() {
  let saved = null;
  try { saved = localStorage.getItem("workqueue-theme"); } catch (e) { /* not kept */ }
  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  setTheme(saved || (dark ? "dark" : "light"));
  $("theme").addEventListener("click", () => {
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
  });

  const events = new EventSource("/events");
  events.onmessage = (message) => show(JSON.parse(message.data));
  events.onerror = () => setFeed(false, "lost the view's server: reconnecting…");
}

start();
