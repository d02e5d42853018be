// The kiosk clears itself after inactivity, so the next visitor never sees someone else's complaint.
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
