// The console's app.js in Node, as a desk's browser runs it: a document that accepts whatever the console does to
// it, a virtual clock, and a desk API that answers what the console asks. Prints every API call with its time.
//
//   node console_harness.js app.js <changes from second> <changes until second> <seconds in all>
"use strict";
const fs = require("fs");
const vm = require("vm");

const [appPath, busyFrom, busyUntil, totalSeconds] = process.argv.slice(2);
const start = 1_800_000_000_000;
let now = start;
const timers = [];
let timerIds = 0;
const calls = [];
const handlers = {};

function fake() {
  return new Proxy(function () {}, {
    get(target, key) {
      if (key === Symbol.toPrimitive) return () => "";
      if (key === Symbol.iterator) return function* () {};
      if (key === "then") return undefined;
      if (!(key in target)) target[key] = fake();
      return target[key];
    },
    apply: () => fake(),
  });
}

const document = fake();
document.addEventListener = (type, fn) => { handlers[type] = fn; };
const storage = { getItem: (key) => (key === "suara.token" ? "token" : null), setItem() {}, removeItem() {} };

function answer(path) {
  const busy = now - start >= Number(busyFrom) * 1000 && now - start < Number(busyUntil) * 1000;
  switch (path) {
    case "/me": return { name: "ani", role: "agent", department: null };
    case "/options": return { statuses: ["new", "open", "pending", "resolved", "closed"] };
    case "/canned-responses": return { items: [] };
    case "/changes": return { at: new Date(now).toISOString(), tickets: busy ? [{ reference: "RMB-2026-000001" }] : [], more: false };
    case "/tickets": return { items: [], next_cursor: null };
    case "/stats/counts": return { total: 0, by_status: {} };
    default: throw new Error(`the console asked for ${path}`);
  }
}

Object.assign(globalThis, {
  document,
  window: globalThis,
  addEventListener() {},
  location: { hash: "#/inbox" },
  localStorage: storage,
  sessionStorage: storage,
  FormData: class { *[Symbol.iterator]() {} },
  Node: class {},
  setTimeout: (fn, ms) => { timers.push({ id: ++timerIds, at: now + Math.max(0, Number(ms) || 0), fn }); return timerIds; },
  clearTimeout: (id) => { const i = timers.findIndex((t) => t.id === id); if (i >= 0) timers.splice(i, 1); },
  fetch: async (url) => {
    const path = url.replace(/^\/api\/v1/, "").split("?")[0];
    calls.push({ at: (now - start) / 1000, path });
    const body = answer(path);
    return { status: 200, ok: true, json: async () => body };
  },
});
Date.now = () => now;

const settle = () => new Promise((resolve) => setImmediate(resolve));

(async () => {
  vm.runInThisContext(fs.readFileSync(appPath, "utf8"), { filename: appPath });
  await handlers.DOMContentLoaded();
  const end = start + Number(totalSeconds) * 1000;
  for (;;) {
    for (let i = 0; i < 20; i++) await settle();
    timers.sort((a, b) => a.at - b.at || a.id - b.id);
    const next = timers.shift();
    if (!next || next.at > end) break;
    now = next.at;
    next.fn();
  }
  process.stdout.write(JSON.stringify(calls));
})().catch((error) => { console.error(error); process.exit(1); });
