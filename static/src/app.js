// Dashboard behaviour: live agent status over server-sent events, copy
// buttons and confirmations. Pages work without it; it only adds.

function liveAgents() {
  const el = document.getElementById("agents");
  if (!el || !el.dataset.events) return;
  const es = new EventSource(el.dataset.events);
  const key = (d) => (d.closest("[data-agent]")?.dataset.agent || "") + "/" + d.className;
  const next = document.createElement("template");
  es.addEventListener("agents", (ev) => {
    next.innerHTML = ev.data;
    // Keep the disclosures the user opened across the update.
    const open = new Set(Array.from(el.querySelectorAll("details[open]"), key));
    for (const d of next.content.querySelectorAll("details")) {
      if (open.has(key(d))) d.open = true;
    }
    // The stream starts with the state the page already shows: replace
    // nothing that did not change, so that a click, a focus or a text
    // selection in the cards is not lost to a redraw.
    if (next.innerHTML.trim() === el.innerHTML.trim()) return;
    // A form the user is filling in (a port's share level) is not
    // replaced under them: the update waits until focus leaves it.
    if (document.activeElement?.closest("#agents form")) {
      pending = next.content.cloneNode(true);
      el.dataset.pending = "1";
      return;
    }
    pending = null;
    delete el.dataset.pending;
    el.replaceChildren(next.content);
  });
  let pending = null;
  el.addEventListener("focusout", () => {
    requestAnimationFrame(() => {
      if (pending && !document.activeElement?.closest("#agents form")) {
        el.replaceChildren(pending);
        pending = null;
        delete el.dataset.pending;
      }
    });
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
