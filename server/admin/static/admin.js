// Somo console: small progressive enhancements; every page works without them.
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Selects marked data-autosubmit send their form on change (the language switch).
  document.addEventListener("change", (event) => {
    const el = event.target;
    if (el.matches && el.matches("[data-autosubmit]") && el.form) el.form.submit();
  });

  // Forms marked data-confirm ask first (revoking a node, approving a refund).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // data-preview="URL": as the fields of the enclosing form change, POST them to URL and put
  // the returned HTML fragment into the element named by data-preview-target.
  function wirePreview(form) {
    const url = form.getAttribute("data-preview");
    const target = document.getElementById(form.getAttribute("data-preview-target"));
    if (!url || !target) return;
    let timer = null;
    let seq = 0;
    const refresh = () => {
      const mine = ++seq;
      const body = new FormData(form);
      fetch(url, { method: "POST", body, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" })
        .then((r) => {
          // Signed out meanwhile (the session expired): say so instead of showing a login form.
          if (r.status === 401 || r.redirected) { target.textContent = form.getAttribute("data-signed-out") || "Signed out: reload the page."; return Promise.reject(401); }
          return r.ok ? r.text() : Promise.reject(r.status);
        })
        .then((html) => { if (mine === seq) target.innerHTML = html; })
        .catch(() => {});
    };
    form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-preview]").forEach(wirePreview);
  });
})();
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("[data-back]");
  if (link && window.history.length > 1) { event.preventDefault(); window.history.back(); }
});
// On a phone the menu starts folded, so the page itself is on the first screen.
document.addEventListener("DOMContentLoaded", () => {
  const nav = document.querySelector("details.nav");
  if (nav && window.innerWidth < 760) nav.removeAttribute("open");
});
