/* The review page: one row per reference, keyboard first. Plain JS, no build step.
   Live mode talks to the JSON API of catalogue/review/server.py (the key is in a SameSite=Strict
   cookie the server set); static mode (doit report) reads the embedded data and disables every
   action. */
(function () {
  "use strict";

  const BOOT = window.REVIEW_BOOT || { static: false };
  const STATIC = !!BOOT.static;
  const VIEW_KEYS = { "1": "1_face", "2": "2_back", "3": "3_detail_logo" };
  const VIEW_NUM = { "1_face": "1", "2_back": "2", "3_detail_logo": "3" };
  const FILTERS = ["all", "todo", "held", "approved", "uploaded", "missing"];
  const ACTIVE = ["queued", "waiting", "running"];   // a regeneration not finished yet
  const WAITING = "en attente de l'exécution en cours";

  let data = null;          // the last /api/state answer (or the embedded report data)
  let current = null;       // folder of the current (focused) reference
  let filter = "all";
  let modal = null;         // {onKey(ev) -> bool, close()} while a dialog is open
  let pollTimer = null;
  const knownJobs = {};     // job id -> last seen state

  const $ = (sel) => document.querySelector(sel);

  // --- DOM helper: h("div", {class: "x", onclick: fn}, child, "text", …) -----------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // --- API ------------------------------------------------------------------------------------
  async function api(method, path, body) {
    const opts = { method, headers: {} };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new Error("La page de revue ne répond plus (doit review arrêté ?).");
    }
    let json = null;
    try { json = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok || !json || json.ok === false) {
      throw new Error((json && json.error) || `Erreur ${res.status}`);
    }
    return json;
  }

  function toast(text, isError) {
    const t = h("div", { class: "toast" + (isError ? " error" : ""), role: isError ? "alert" : "status" }, text);
    $("#toasts").append(t);
    setTimeout(() => t.remove(), isError ? 7000 : 3000);
  }

  // --- rows -----------------------------------------------------------------------------------
  function rowsAll() { return data ? data.rows : []; }
  function rowOf(folder) { return rowsAll().find((r) => r.folder === folder); }

  function visible(row) {
    switch (filter) {
      case "todo": return row.needs_decision;
      case "held": return row.state === "held";
      case "approved": return row.state === "approved";
      case "uploaded": return row.state === "uploaded";
      case "missing": return row.state === "missing" || row.state === "problem";
      default: return true;
    }
  }
  function visibleRows() { return rowsAll().filter(visible); }

  function jobFor(folder) {
    return ((data && data.jobs) || []).find((j) => j.folder === folder && ACTIVE.includes(j.state));
  }

  function money(x) { return (x || 0).toFixed(x && x < 0.1 ? 3 : 2) + " $"; }

  function renderCounts() {
    const c = data.counts;
    const box = $("#counts");
    box.replaceChildren(...[
      h("span", { class: "count" }, h("b", {}, c.total), " réf."),
      h("span", { class: "count st-new" }, h("b", {}, c.to_decide), " à décider"),
      h("span", { class: "count st-held" }, h("b", {}, c.held), " retenues"),
      h("span", { class: "count st-approved" }, h("b", {}, c.approved), " approuvées"),
      h("span", { class: "count st-uploaded" }, h("b", {}, c.uploaded), " envoyées"),
      c.missing ? h("span", { class: "count st-missing" }, h("b", {}, c.missing), " à générer") : null,
      c.problem ? h("span", { class: "count st-held" }, h("b", {}, c.problem), " en erreur") : null,
    ].filter(Boolean));
    $("#project").textContent = "· " + data.project + " · " + (data.generator === "gemini" ? "Gemini" : "rendu local") +
      " · " + money(c.cost_usd);
    const notes = [];
    if (STATIC) notes.push("Rapport statique" + (data.generated_at ? " du " + data.generated_at : "") +
      " : consultation seulement. Pour décider, lancez « doit review ».");
    else {
      if (!data.reroll_available && data.reroll_note) notes.push(data.reroll_note);
      if (!data.adjust_available && data.adjust_note) notes.push(data.adjust_note);
    }
    const notice = $("#notice");
    notice.textContent = notes.join(" ");
    notice.hidden = !notes.length;
  }

  function actionButton(label, key, onclick, opts) {
    opts = opts || {};
    const disabled = STATIC || opts.disabled;
    return h("button", {
      type: "button", class: "btn" + (opts.primary ? " primary" : "") + (opts.small ? " small" : ""),
      disabled: disabled, title: STATIC ? "Rapport statique : lancez « doit review » pour agir" : (opts.title || null),
      onclick: (ev) => { ev.stopPropagation(); onclick(); },
    }, label, key ? h("span", { class: "k" }, key) : null);
  }

  function renderView(row, v) {
    const num = VIEW_NUM[v.view];
    const head = h("div", { class: "view-head" },
      h("span", { class: "view-name" }, h("span", { class: "num" }, num), v.label || v.view),
      h("span", { class: "badge st-" + v.state, "data-view-state": v.view }, v.state_label),
      v.style && v.style.url ? h("img", { class: "style-thumb", src: v.style.url, alt: "référence de style",
        title: "Référence de style utilisée : " + v.style.name + (v.style.why ? " — " + v.style.why : ""), loading: "lazy" }) : null);
    if (!v.expected) return h("div", { class: "view", "data-view": v.view }, head,
      h("div", { class: "placeholder" }, v.state_label));
    if (!v.thumb) return h("div", { class: "view", "data-view": v.view }, head,
      h("div", { class: "placeholder" }, "pas encore générée"));

    const frame = h("button", { type: "button", class: "frame" + (v.state === "held" ? " held" : ""),
      title: "Agrandir (" + num + ")", "aria-label": "Agrandir " + v.view + " de " + row.folder,
      onclick: (ev) => { ev.stopPropagation(); setCurrent(row.folder, false); openLightbox(row.folder, v.view); } },
      h("img", { src: v.thumb, alt: v.view + " " + row.folder, loading: "lazy", decoding: "async" }));
    if (v.width && v.height) frame.style.aspectRatio = v.width + " / " + v.height;

    const checks = v.checks || [];
    const fails = checks.filter((c) => !c.passed);
    const passes = checks.filter((c) => c.passed);
    const personHeld = v.state === "held" && v.by === "person";
    const meta = [];
    if (v.generator) meta.push(v.generator + (v.model ? " · " + v.model : ""));
    if (v.seed !== undefined && v.seed !== null && v.generator === "gemini") meta.push("graine " + v.seed);
    if (v.cost_usd) meta.push(money(v.cost_usd));
    if (v.qa_verdict === undefined && checks.length === 0) meta.push("pas de contrôle qualité");

    const canReroll = data.reroll_available;
    return h("div", { class: "view", "data-view": v.view }, head, frame,
      personHeld ? h("p", { class: "reason" }, v.reason) : null,
      fails.length ? h("ul", { class: "fails" }, fails.map((c) =>
        h("li", { title: c.chip || "" }, h("b", {}, c.label + " : "), c.message))) : null,
      passes.length ? h("div", { class: "passes" }, passes.map((c) =>
        h("span", { class: "chk", title: c.message, "data-check": c.name }, c.chip || c.label))) : null,
      (v.notes && v.notes.length) ? h("div", { class: "notes" }, (v.uncertain ? "INCERTAIN : " : "") + v.notes.join(" ; ")) : null,
      (v.retouches && v.retouches.length) ? h("ul", { class: "retouches" }, v.retouches.map((r) =>
        h("li", { class: "rt-" + r.status, title: r.why, "data-retouch": r.status },
          "Retouche " + r.step + " " + r.status_label + " : « " + r.text + " »" + (r.cost_usd ? " · " + money(r.cost_usd) : "")))) : null,
      meta.length ? h("div", { class: "vmeta" }, meta.map((m) => h("span", {}, m))) : null,
      h("div", { class: "view-actions" },
        actionButton("Approuver", null, () => approve(row.folder, v.view), { small: true, disabled: v.state === "approved" || v.state === "uploaded" }),
        actionButton("Retenir", null, () => openHold(row.folder, v.view), { small: true }),
        actionButton("Nouveau tirage", null, () => doReroll(row.folder, v.view), { small: true, disabled: !canReroll, title: canReroll ? null : data.reroll_note }),
        actionButton("Ajuster", null, () => openAdjust(row.folder, v.view), { small: true, disabled: !data.adjust_available, title: data.adjust_available ? null : data.adjust_note }),
      ));
  }

  function renderRow(row) {
    const job = jobFor(row.folder);
    const total = rowsAll().length;
    const head = h("div", { class: "row-head" },
      h("span", { class: "idx" }, (row.index + 1) + "/" + total),
      h("h2", {}, row.folder),
      h("span", { class: "badge st-" + row.state, "data-role": "state" }, row.state_label),
      row.needs_decision ? h("span", { class: "tag" }, "à décider") : null,
      job ? h("span", { class: "tag busy", "data-role": "job" }, h("span", { class: "spinner" }), " ",
        job.state === "running" ? "régénération en cours" : job.state === "waiting" ? WAITING : "en file d'attente") : null,
      h("span", { class: "meta" }, [row.generators.join(", "), row.cost_usd ? money(row.cost_usd) : null,
        row.uploaded_at ? "envoyé le " + row.uploaded_at.slice(0, 10) : null].filter(Boolean).join(" · ")),
      h("span", { class: "spacer" }),
      h("span", { class: "actions" },
        actionButton("Approuver tout", "a", () => approve(row.folder, null), { primary: true, disabled: !!row.problem }),
        actionButton("Retenir", "h", () => openHold(row.folder, null), { disabled: !!row.problem }),
        actionButton("Nouveau tirage", "r", () => openReroll(row.folder), { disabled: !!row.problem || !data.reroll_available, title: data.reroll_note || null }),
        actionButton("Ajuster", "e", () => openAdjust(row.folder, null), { disabled: !!row.problem || !data.adjust_available, title: data.adjust_note || null }),
      ));
    let body;
    if (row.problem) {
      body = h("div", { class: "problem" }, row.problem);
    } else {
      body = h("div", { class: "row-body" },
        h("div", { class: "photos" }, row.photos.map((p) => h("figure", {},
          p.url ? h("img", { src: p.url, alt: p.label + " " + row.folder, loading: "lazy", decoding: "async",
            title: p.name, onerror: (ev) => ev.target.replaceWith(h("div", { class: "broken" }, "photo illisible : " + p.name)) })
            : h("div", { class: "broken" }, "photo illisible : " + p.name),
          h("figcaption", {}, p.label)))),
        row.views.map((v) => renderView(row, v)));
    }
    const el = h("article", { class: "row" + (row.folder === current ? " current" : ""), tabindex: "-1",
      "data-folder": row.folder, "data-state": row.state, "aria-label": row.folder + " : " + row.state_label,
      onclick: () => setCurrent(row.folder, false) }, head, body);
    return el;
  }

  function rowEl(folder) { return document.querySelector(`article.row[data-folder="${CSS.escape(folder)}"]`); }

  function renderAll() {
    renderCounts();
    const rows = visibleRows();
    $("#rows").replaceChildren(...rows.map(renderRow));
    $("#empty").hidden = rows.length > 0;
    if (!current || !rows.some((r) => r.folder === current)) current = rows.length ? rows[0].folder : null;
    markCurrent(false);
  }

  function replaceRow(row) {
    const i = data.rows.findIndex((r) => r.folder === row.folder);
    if (i < 0) return;
    data.rows[i] = row;
    recount();
    const old = rowEl(row.folder);
    if (old) {
      const fresh = renderRow(row);
      old.replaceWith(fresh);
      if (current === row.folder) markCurrent(false);
    }
    renderCounts();
  }

  function recount() {
    const c = { total: data.rows.length, to_decide: 0, cost_usd: 0 };
    for (const k of ["missing", "new", "held", "approved", "uploaded", "problem"]) c[k] = 0;
    for (const r of data.rows) {
      c[r.state] = (c[r.state] || 0) + 1;
      if (r.needs_decision) c.to_decide++;
      c.cost_usd += r.cost_usd || 0;
    }
    data.counts = c;
  }

  // --- focus and navigation -------------------------------------------------------------------
  function markCurrent(scroll) {
    document.querySelectorAll("article.row.current").forEach((el) => el.classList.remove("current"));
    if (!current) return;
    const el = rowEl(current);
    if (!el) return;
    el.classList.add("current");
    if (!modal) el.focus({ preventScroll: true });  // never steal the focus from an open dialog
    if (scroll) el.scrollIntoView({ block: "start", behavior: "auto" });
  }

  function setCurrent(folder, scroll) {
    current = folder;
    markCurrent(scroll !== false);
  }

  function move(delta) {
    const rows = visibleRows();
    if (!rows.length) return;
    let i = rows.findIndex((r) => r.folder === current);
    i = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + delta));
    setCurrent(rows[i].folder, true);
  }

  function nextUndecided(fromFolder) {
    const rows = visibleRows();
    const start = rows.findIndex((r) => r.folder === fromFolder);
    for (let step = 1; step <= rows.length; step++) {
      const r = rows[(start + step) % rows.length];
      if (r.needs_decision && r.folder !== fromFolder) { setCurrent(r.folder, true); return true; }
    }
    toast("Toutes les références affichées sont décidées.");
    return false;
  }

  // --- actions --------------------------------------------------------------------------------
  function staticRefusal() {
    toast("Rapport statique : lancez « doit review » pour approuver, retenir ou régénérer.", true);
  }

  async function approve(folder, view) {
    if (STATIC) return staticRefusal();
    try {
      const res = await api("POST", "/api/approve", { folder, view: view || undefined });
      replaceRow(res.row);
      toast(res.message);
      if (!view && current === folder) nextUndecided(folder);
    } catch (e) { toast(e.message, true); }
  }

  async function hold(folder, view, note) {
    try {
      const res = await api("POST", "/api/hold", { folder, view: view || undefined, note: note || "" });
      replaceRow(res.row);
      toast(res.message);
      if (!view && current === folder) nextUndecided(folder);
    } catch (e) { toast(e.message, true); }
  }

  async function doReroll(folder, view) {
    if (STATIC) return staticRefusal();
    try {
      const res = await api("POST", "/api/reroll", { folder, view });
      noteJob(res.job);
      replaceRow(res.row);
      toast(res.message);
    } catch (e) { toast(e.message, true); }
  }

  async function doAdjust(folder, view, instruction, ref, later) {
    try {
      const res = await api("POST", "/api/adjust", { folder, view, instruction, ref: ref || undefined,
        wait_for_key: later ? true : undefined });
      noteJob(res.job);
      replaceRow(res.row);
      toast(res.message);
    } catch (e) { toast(e.message, true); }
  }

  // --- dialogs --------------------------------------------------------------------------------
  function openModal(content, onKey, focusEl) {
    closeModal();
    const overlay = $("#overlay");
    const previous = document.activeElement;
    overlay.replaceChildren(content);
    overlay.hidden = false;
    overlay.onclick = (ev) => { if (ev.target === overlay) closeModal(); };
    modal = { onKey, previous };
    (focusEl || content).focus();
  }

  function closeModal() {
    if (!modal) return;
    const { previous } = modal;
    modal = null;
    const overlay = $("#overlay");
    overlay.hidden = true;
    overlay.replaceChildren();
    if (current) markCurrent(false); else if (previous) previous.focus();
  }

  function viewsOf(folder) {
    const row = rowOf(folder);
    return row ? row.views.filter((v) => v.expected).map((v) => v.view) : [];
  }

  function openHold(folder, view) {
    if (STATIC) return staticRefusal();
    const input = h("input", { type: "text", placeholder: "Note (facultative) : ex. logo flou, couleur trop claire…",
      "aria-label": "Note", maxlength: "500" });
    const submit = () => { const note = input.value.trim(); closeModal(); hold(folder, view, note); };
    const box = h("div", { class: "dialog", role: "dialog", "aria-modal": "true", tabindex: "-1" },
      h("h3", {}, "Retenir " + (view ? "la vue " + view + " de " : "") + folder),
      h("p", { class: "hint" }, "Pas d'envoi à la boutique tant que ces images ne sont pas approuvées."),
      input,
      h("div", { class: "buttons" },
        h("button", { type: "button", class: "btn", onclick: closeModal }, "Annuler", h("span", { class: "k" }, "Échap")),
        h("button", { type: "button", class: "btn primary", onclick: submit }, "Retenir", h("span", { class: "k" }, "Entrée"))));
    input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); submit(); } });
    openModal(box, () => false, input);
  }

  function viewChoices(folder, onPick) {
    return h("div", { class: "choices" }, viewsOf(folder).map((v) =>
      h("button", { type: "button", class: "btn", onclick: () => onPick(v) }, h("span", { class: "k" }, VIEW_NUM[v]), " ", v)));
  }

  function openReroll(folder) {
    if (STATIC) return staticRefusal();
    if (!data.reroll_available) return toast(data.reroll_note, true);
    const pick = (v) => { closeModal(); doReroll(folder, v); };
    const box = h("div", { class: "dialog", role: "dialog", "aria-modal": "true", tabindex: "-1" },
      h("h3", {}, "Nouveau tirage pour " + folder),
      h("p", {}, "Quelle vue ? Tapez ", h("kbd", {}, "1"), " face, ", h("kbd", {}, "2"), " dos, ", h("kbd", {}, "3"), " détail."),
      h("p", { class: "hint" }, "Une nouvelle graine, donc un nouvel appel Gemini payant ; la référence est régénérée en arrière-plan."),
      viewChoices(folder, pick),
      h("div", { class: "buttons" }, h("button", { type: "button", class: "btn", onclick: closeModal }, "Annuler", h("span", { class: "k" }, "Échap"))));
    openModal(box, (ev) => {
      const v = VIEW_KEYS[ev.key];
      if (v && viewsOf(folder).includes(v)) { pick(v); return true; }
      return false;
    });
  }

  function openAdjust(folder, view) {
    if (STATIC) return staticRefusal();
    if (!data.adjust_available) return toast(data.adjust_note, true);
    const views = viewsOf(folder);
    let chosen = view || views[0];
    const radios = h("div", { class: "choices" }, views.map((v) => h("label", {},
      h("input", { type: "radio", name: "adj-view", value: v, checked: v === chosen, onchange: () => { chosen = v; } }),
      " ", VIEW_NUM[v], " · ", v)));
    const refSelect = h("select", { "aria-label": "Image de référence" },
      h("option", { value: "" }, "aucune"), views.map((v) => h("option", { value: v }, v)));
    const text = h("textarea", { placeholder: "Ex. : rendre le logo plus net, garder exactement la couleur de la photo…",
      "aria-label": "Instruction d'ajustement", maxlength: "2000" });
    const later = !!data.adjust_needs_key;   // no key: the instruction waits for one, said before it is written
    const submit = () => {
      const instruction = text.value.trim();
      if (!instruction) { text.focus(); return; }
      const ref = refSelect.value && refSelect.value !== chosen ? refSelect.value : null;
      closeModal(); doAdjust(folder, chosen, instruction, ref, later);
    };
    const box = h("div", { class: "dialog", role: "dialog", "aria-modal": "true", tabindex: "-1" },
      h("h3", {}, "Ajustement pour " + folder),
      h("p", { class: "hint" }, "Choisissez la vue (Alt+1/2/3), écrivez l'instruction, puis Ctrl+Entrée. La vue est régénérée en arrière-plan."),
      later ? h("p", { class: "warn-key", role: "note" }, data.adjust_note) : null,
      radios, text,
      h("p", { class: "hint" }, h("label", {}, "Image de référence envoyée avec la consigne (facultatif) : ", refSelect)),
      h("div", { class: "buttons" },
        h("button", { type: "button", class: "btn", onclick: closeModal }, "Annuler", h("span", { class: "k" }, "Échap")),
        h("button", { type: "button", class: "btn primary", onclick: submit },
          later ? "Enregistrer (attendra une clé)" : "Enregistrer et régénérer", h("span", { class: "k" }, "Ctrl+Entrée"))));
    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); submit(); }
      if (ev.altKey && VIEW_KEYS[ev.key] && views.includes(VIEW_KEYS[ev.key])) {
        ev.preventDefault(); chosen = VIEW_KEYS[ev.key];
        radios.querySelectorAll("input").forEach((r) => { r.checked = r.value === chosen; });
      }
    });
    openModal(box, () => false, text);
  }

  function openHelp() {
    const rows = [
      ["j  ↓", "référence suivante"], ["k  ↑", "référence précédente"],
      ["n", "prochaine référence à décider"],
      ["a", "approuver la référence (ses vues telles qu'elles sont), puis aller à la suivante à décider"],
      ["h", "retenir la référence (avec une note facultative)"],
      ["r", "nouveau tirage d'une vue (puis 1, 2 ou 3) : un appel Gemini payant"],
      ["e", "instruction d'ajustement pour une vue (Alt+1/2/3 choisit la vue, Ctrl+Entrée enregistre)"],
      ["Entrée  o", "agrandir la vue de face de la référence"],
      ["1  2  3", "agrandir la vue face, dos ou détail ; dans l'agrandissement : a / h pour cette vue seule, ← → pour changer"],
      ["f", "changer le filtre (toutes, à décider, retenues…)"],
      ["Début  Fin", "première, dernière référence"],
      ["?", "cette aide"], ["Échap", "fermer"],
    ];
    const box = h("div", { class: "dialog help", role: "dialog", "aria-modal": "true", tabindex: "-1" },
      h("h3", {}, "Raccourcis clavier"),
      h("table", {}, rows.map(([k, d]) => h("tr", {}, h("td", {}, k.split("  ").map((x) => [h("kbd", {}, x), " "])), h("td", {}, d)))),
      STATIC ? h("p", { class: "static-note" }, "Rapport statique : les actions sont désactivées.") : null,
      h("div", { class: "buttons" }, h("button", { type: "button", class: "btn", onclick: closeModal }, "Fermer", h("span", { class: "k" }, "Échap"))));
    openModal(box, (ev) => { if (ev.key === "?") { closeModal(); return true; } return false; });
  }

  function openLightbox(folder, view) {
    const row = rowOf(folder);
    if (!row) return;
    const shown = row.views.filter((v) => v.expected && v.full);
    let v = shown.find((x) => x.view === view);
    if (!v) { if (!shown.length) return toast(folder + " : aucune vue générée.", true); v = shown[0]; }
    const checks = v.checks || [];
    const box = h("div", { class: "lightbox", role: "dialog", "aria-modal": "true", tabindex: "-1" },
      h("div", { class: "big" }, h("img", { src: v.full, alt: v.view + " " + folder })),
      h("aside", {},
        h("h3", {}, folder),
        h("p", {}, h("b", {}, VIEW_NUM[v.view] + " · " + v.view), " ", h("span", { class: "badge st-" + v.state }, v.state_label)),
        v.reason ? h("p", { class: "reason" }, v.reason) : null,
        v.style && v.style.url ? h("p", {}, "Référence de style : ", v.style.name, v.style.why ? " — " + v.style.why : "") : null,
        h("ul", { class: "all-checks" }, checks.map((c) => h("li", { class: c.passed ? "" : "fail" },
          (c.passed ? "✓ " : "✗ ") + c.message, h("br"), h("span", { class: "v" }, "valeur " + c.value + " · seuil " + c.threshold)))),
        h("div", { class: "view-actions" },
          actionButton("Approuver cette vue", "a", () => { closeModal(); approve(folder, v.view); }, { small: true, primary: true }),
          actionButton("Retenir", "h", () => { closeModal(); openHold(folder, v.view); }, { small: true })),
        h("p", { class: "hint" }, "← → autre vue · Échap fermer")));
    openModal(box, (ev) => {
      const idx = shown.indexOf(v);
      if (VIEW_KEYS[ev.key]) { openLightbox(folder, VIEW_KEYS[ev.key]); return true; }
      if (ev.key === "ArrowRight" || ev.key === "l") { openLightbox(folder, shown[(idx + 1) % shown.length].view); return true; }
      if (ev.key === "ArrowLeft") { openLightbox(folder, shown[(idx + shown.length - 1) % shown.length].view); return true; }
      if (ev.key === "a") { closeModal(); approve(folder, v.view); return true; }
      if (ev.key === "h") { closeModal(); openHold(folder, v.view); return true; }
      return false;
    });
  }

  // --- regenerations --------------------------------------------------------------------------
  function noteJob(job) {
    if (!job) return;
    const jobs = data.jobs || (data.jobs = []);
    const i = jobs.findIndex((j) => j.id === job.id);
    if (i >= 0) jobs[i] = job; else jobs.push(job);
    knownJobs[job.id] = job.state;
    renderJobs();
    schedulePoll();
  }

  function renderJobs() {
    const bar = $("#jobbar");
    const jobs = (data && data.jobs) || [];
    const running = jobs.find((j) => j.state === "running");
    const waiting = jobs.find((j) => j.state === "waiting");
    const queued = jobs.filter((j) => j.state === "queued");
    const lastFailed = [...jobs].reverse().find((j) => j.state === "failed" && j.ended_at && Date.now() / 1000 - j.ended_at < 60);
    if (running || waiting || queued.length) {
      const j = running || waiting || queued[0];
      bar.className = "jobbar" + (j === waiting ? " waiting" : "");
      bar.replaceChildren(...[h("span", { class: "spinner" }),
        h("b", {}, (running ? "Régénération : " : waiting ? "En attente de l'exécution en cours : " : "En file d'attente : ") + j.folder),
        h("span", {}, "(" + j.what + ")"),
        h("span", { class: "log" }, j === waiting ? (j.message || WAITING) : (j.last_line || "démarrage…")),
        queued.length > (running ? 0 : 1) ? h("span", {}, (queued.length - (running ? 0 : 1)) + " en file d'attente") : null,
      ].filter(Boolean));
      bar.hidden = false;
    } else if (lastFailed) {
      bar.className = "jobbar failed";
      bar.replaceChildren(h("b", {}, "Échec de la régénération de " + lastFailed.folder + " : "), h("span", {}, lastFailed.message));
      bar.hidden = false;
    } else {
      bar.hidden = true;
    }
  }

  function schedulePoll() {
    if (STATIC || pollTimer) return;
    pollTimer = setTimeout(poll, 1000);
  }

  async function poll() {
    pollTimer = null;
    let res;
    try { res = await api("GET", "/api/jobs"); } catch (e) { schedulePoll(); return; }
    data.jobs = res.jobs;
    const finished = [], started = [];
    for (const j of res.jobs) {
      const before = knownJobs[j.id];
      if (before && before !== j.state && (j.state === "done" || j.state === "failed")) finished.push(j);
      else if (before !== j.state && (j.state === "running" || j.state === "waiting")) started.push(j);
      knownJobs[j.id] = j.state;
    }
    renderJobs();
    for (const j of finished) {
      try { replaceRow((await api("GET", "/api/ref/" + encodeURIComponent(j.folder))).row); } catch (e) { /* shown below */ }
      if (j.state === "done") toast(j.folder + " : régénération terminée" +
        (j.message && j.message.startsWith("Terminé") ? " — " + j.message : "") + ".");
      else toast(j.folder + " : échec de la régénération — " + j.message, true);
    }
    // rows whose job moved from queued to running: refresh their tag
    for (const j of started) { const row = rowOf(j.folder); if (row) replaceRow(row); }
    if (res.jobs.some((j) => ACTIVE.includes(j.state))) schedulePoll();
  }

  // --- keyboard -------------------------------------------------------------------------------
  function onKey(ev) {
    if (modal) {
      if (ev.key === "Escape") { ev.preventDefault(); closeModal(); return; }
      if (ev.target.matches && ev.target.matches("input, textarea, select")) return;
      if (modal.onKey(ev)) ev.preventDefault();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target.matches && ev.target.matches("input, textarea, select")) {
      if (ev.key === "Escape") { ev.target.blur(); markCurrent(false); }
      return;
    }
    const folder = current;
    const row = folder ? rowOf(folder) : null;
    const actionable = row && !row.problem;
    switch (ev.key) {
      case "j": case "ArrowDown": move(+1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "Home": move(-1e9); break;
      case "End": move(+1e9); break;
      case "n": nextUndecided(folder); break;
      case "a": if (actionable) approve(folder, null); break;
      case "h": if (actionable) openHold(folder, null); break;
      case "r": if (actionable) openReroll(folder); break;
      case "e": if (actionable) openAdjust(folder, null); break;
      case "1": case "2": case "3": if (row) openLightbox(folder, VIEW_KEYS[ev.key]); break;
      case "Enter": case "o": if (row && ev.target.classList && ev.target.classList.contains("row")) openLightbox(folder, "1_face"); else return; break;
      case "f": {
        filter = FILTERS[(FILTERS.indexOf(filter) + 1) % FILTERS.length];
        $("#filter").value = filter; renderAll(); markCurrent(true); break;
      }
      case "?": openHelp(); break;
      default: return;
    }
    ev.preventDefault();
  }

  // --- start ----------------------------------------------------------------------------------
  async function start() {
    document.addEventListener("keydown", onKey);
    $("#help-button").addEventListener("click", openHelp);
    $("#filter").addEventListener("change", (ev) => { filter = ev.target.value; renderAll(); ev.target.blur(); markCurrent(true); });
    try {
      data = STATIC ? BOOT.data : await api("GET", "/api/state");
    } catch (e) {
      $("#rows").replaceChildren(h("p", { class: "problem" }, e.message));
      return;
    }
    for (const j of data.jobs || []) knownJobs[j.id] = j.state;
    renderAll();
    renderJobs();
    if ((data.jobs || []).some((j) => ACTIVE.includes(j.state))) schedulePoll();
    document.body.dataset.ready = "1";
  }

  start();
})();
