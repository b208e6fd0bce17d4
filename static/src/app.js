// Dashboard behaviour: live agent status over server-sent events, copy
// buttons and confirmations. Pages work without it; it only adds.

function liveAgents() {
  const el = document.getElementById("agents");
  if (!el || !el.dataset.events) return;
  const es = new EventSource(el.dataset.events);
  es.addEventListener("agents", (ev) => {
    // Keep the disclosures the user opened across the update.
    const open = new Set(
      Array.from(el.querySelectorAll("details[open]"), (d) => (d.closest("[data-agent]")?.dataset.agent || "") + "/" + d.className),
    );
    el.innerHTML = ev.data;
    for (const d of el.querySelectorAll("details")) {
      if (open.has((d.closest("[data-agent]")?.dataset.agent || "") + "/" + d.className)) d.open = true;
    }
  });
  es.addEventListener("deleted", () => {
    es.close();
    window.location.assign("/workspaces");
  });
  // EventSource reconnects by itself after errors (server restarts).
}

function copyButtons() {
  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("[data-copy]");
    if (!btn) return;
    const src = document.querySelector(btn.dataset.copy);
    if (!src) return;
    try {
      await navigator.clipboard.writeText(src.textContent.trim());
      const label = btn.textContent;
      btn.textContent = "Copied";
      setTimeout(() => (btn.textContent = label), 1500);
    } catch {
      const range = document.createRange();
      range.selectNodeContents(src);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
  });
}

function confirmations() {
  document.addEventListener("submit", (ev) => {
    const msg = ev.target.dataset && ev.target.dataset.confirm;
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
}

liveAgents();
copyButtons();
confirmations();
