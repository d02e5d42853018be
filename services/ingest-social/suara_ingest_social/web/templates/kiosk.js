// The kiosk clears itself after inactivity, so the next visitor never sees someone else's complaint; its thank-you
// screen shows the complaint's reference as soon as ticketing has given it one.
"use strict";
(function () {
  const form = document.querySelector("form[data-idle]");
  if (!form) return;
  const seconds = Number(form.dataset.idle) || 120;
  let timer = null;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => { window.location.replace(form.getAttribute("action")); }, seconds * 1000);
  };
  for (const kind of ["input", "pointerdown", "keydown", "touchstart"]) document.addEventListener(kind, arm, { passive: true });
  arm();
})();

(function () {
  const shown = document.querySelector("[data-submission]");
  if (!shown) return;
  const ask = async () => {
    try {
      const answer = await fetch(`/api/v1/web/status/${encodeURIComponent(shown.dataset.submission)}`);
      if (answer.ok) {
        const reference = (await answer.json()).reference;
        for (const node of document.querySelectorAll("[data-reference]")) node.textContent = reference;
        document.querySelector("#reference-known").hidden = false;
        document.querySelector("#reference-awaited").hidden = true;
        return;
      }
    } catch (e) { /* the network blinked: ask again */ }
    setTimeout(ask, 1500);
  };
  ask();
})();
