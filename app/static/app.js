"use strict";
/* The officer's app. Every string comes from CATALOGS (app/messages/*.json); every write carries
   the session token; drafts are saved in the node as the officer types. */
let lang = localStorage.getItem("estafet-lang") || "id";
const S = {state: null, fields: {}, draft: null, check: null, res: null, warnPhoto: {}, timer: 0, poll: 0, el: ""};
const $ = (id) => document.getElementById(id);

function t(k, v) {
  let s = CATALOGS[lang][k] ?? CATALOGS.id[k] ?? k;
  for (const [a, b] of Object.entries(v || {})) s = s.split("{" + a + "}").join(String(b));
  return s;
}
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of kids.flat()) if (c != null && c !== false) e.append(c.nodeType ? c : String(c));
  return e;
}
function toast(msg) {
  const el = $("toast"); el.textContent = msg; el.hidden = false;
  clearTimeout(toast.t); toast.t = setTimeout(() => { el.hidden = true; }, 5000);
}
class ApiError extends Error { constructor(code, detail, body) { super(code); this.code = code; this.detail = detail; this.body = body; } }

async function api(method, path, body, raw) {
  const headers = {"X-Estafet-Token": TOKEN};
  let data = body;
  if (body !== undefined && !raw) { headers["Content-Type"] = "application/json"; data = JSON.stringify(body); }
  let r;
  try { r = await fetch(path, {method, headers, body: data, credentials: "same-origin"}); }
  catch (e) { throw new ApiError("offline", ""); }
  const ct = r.headers.get("Content-Type") || "";
  const out = ct.includes("json") ? await r.json() : await r.text();
  if (r.status === 423) { S.state.locked = true; render(); throw new ApiError("locked", ""); }
  if (!r.ok) throw new ApiError(out.error || "other", out.detail || r.status, out);
  return out;
}
function explain(e) {
  const key = "err." + e.code;
  return CATALOGS.id[key] ? t(key, {detail: e.detail}) : t("err.other", {detail: e.code + " " + (e.detail || "")});
}
function ago(ts) {
  if (!ts) return t("card.never");
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  if (s < 120) return t("time.ago_s", {n: s});
  if (s < 7200) return t("time.ago_m", {n: Math.round(s / 60)});
  return t("time.ago_h", {n: Math.round(s / 3600)});
}
const elName = (k) => t("election." + k);
const isChair = () => S.state.identity.role === "kpps-chair";
const isKeeper = () => ["relay", "gateway"].includes(S.state.identity.role);

/* ---------- lock ---------- */
function lockScreen() {
  const inp = h("input", {type: "password", id: "secret", autocomplete: "current-password", inputmode: "text", "aria-label": t("lock.secret")});
  const msg = h("p", {class: "bad", id: "lockmsg"});
  if (S.state.retry_after) msg.textContent = t("lock.wait", {n: S.state.retry_after});
  const go = async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/api/unlock", {secret: inp.value}); inp.value = ""; S.state.locked = false; route(); }
    catch (e) { msg.textContent = e.code === "wait" ? t("lock.wait", {n: e.detail}) : e.code === "wrong-secret" ? t("lock.wrong") : explain(e); }
  };
  return h("form", {class: "card", onsubmit: go},
    h("h1", {}, t("lock.title")), h("p", {}, t("lock.help")), inp, msg,
    h("button", {class: "big", type: "submit", id: "unlock"}, t("lock.open")),
    h("p", {class: "note"}, t("lock.idle", {n: Math.round(S.state.idle / 60)})));
}

/* ---------- enrollment (before the node runs) ---------- */
function enrollScreen() {
  const st = S.state, p = st.provision;
  if (!p) return h("div", {class: "card"}, h("h1", {}, t("enroll.title")), h("p", {class: "bad"}, t("enroll.problem", {detail: st.problem})));
  const fp = p.root_id.match(/.{4}/g).join(" ");
  const secret = h("input", {type: "password", id: "secret", autocomplete: "current-password", "aria-label": t("lock.secret")});
  const code = h("input", {type: "text", id: "code", autocomplete: "off", autocapitalize: "characters", "aria-label": t("enroll.code")});
  const msg = h("p", {id: "enrollmsg"});
  const btn = h("button", {class: "big", type: "submit", id: "enroll"}, t("enroll.go"));
  const go = async (ev) => {
    ev.preventDefault(); btn.disabled = true; msg.className = "note"; msg.textContent = t("enroll.working");
    try {
      const c = await api("POST", "/api/enroll", {secret: secret.value, code: code.value});
      msg.textContent = t("enroll.done", {role: t("role." + c.role)});
      setTimeout(waitForApp, 1500);
    } catch (e) {
      btn.disabled = false; msg.className = "bad";
      msg.textContent = e.code === "wrong-secret" ? t("lock.wrong") : e.code === "wait" ? t("lock.wait", {n: e.detail}) : explain(e);
    }
  };
  return h("form", {class: "card", onsubmit: go}, h("h1", {}, t("enroll.title")), h("p", {}, t("enroll.help")),
    h("table", {}, h("tr", {}, h("td", {}, t("enroll.central")), h("td", {id: "prov-central"}, h("b", {}, p.central))),
      h("tr", {}, h("td", {}, t("enroll.root")), h("td", {id: "prov-root"}, h("b", {}, fp)))),
    h("label", {for: "secret"}, t("lock.secret")), secret, h("label", {for: "code"}, t("enroll.code")), code, msg, btn);
}
async function waitForApp() {
  try {  // the node's own app: a new page with a new token
    const r = await fetch("/", {cache: "no-store"});
    if (r.ok && !(await r.text()).includes(TOKEN)) { location.replace("/"); return; }
  } catch (e) { /* restarting */ }
  setTimeout(waitForApp, 700);
}

/* ---------- home ---------- */
async function home() {
  const st = S.state, box = h("div", {});
  if (isKeeper()) return keeper();
  if (isChair()) {
    for (const el of st.elections) {
      const d = await api("GET", "/api/draft/" + el.kind);
      const started = Object.keys(d.fields).length || d.photos.length;
      box.append(h("a", {class: "big" + (started ? "" : " alt"), href: "#/form/" + el.kind + "/numbers", id: "enter-" + el.kind},
        t(started ? "home.continue" : "home.enter", {election: elName(el.kind)})));
    }
    box.append(admitBox());
  } else box.append(h("p", {class: "note"}, t("home.witness_help")), await keyCodeBox());
  const data = await api("GET", "/api/results");
  S.res = data;
  box.append(h("h2", {}, t("home.results")));
  if (!data.results.length) box.append(h("p", {class: "note"}, t("home.none")));
  for (const r of data.results) box.append(statusCard(r, data.status, true));
  return box;
}

function step(done, label, extra) {
  return h("div", {class: "st" + (done ? " done" : "")}, h("i", {}, done ? "✓" : "…"),
    h("span", {}, label, " — ", done ? t("card.done") : t("card.waiting"), extra ? h("div", {class: "note"}, extra) : null));
}
function statusCard(r, status, link) {
  const rc = r.receipt;
  const accepted = rc && ["accepted", "superseded"].includes(rc.status);
  const photos = r.receipts.some((x) => x.photos_complete);
  const handed = r.handed_on > 0 || !!rc;
  const card = h("div", {class: "card status", "data-id": r.id},
    h("b", {}, t("card.title", {election: elName(r.election), tps: r.tps})),
    r.form.revision ? h("span", {class: "note"}, " (" + t("card.rev", {n: r.form.revision}) + ")") : null,
    step(handed, t("card.step1")),
    step(accepted, t("card.step2"), rc ? t("card.receipt", {n: rc.log_index}) : null),
    step(photos, t("card.step3")));
  if (rc && rc.status === "rejected") card.append(h("p", {class: "bad"}, t("card.rejected", {reason: rc.reason})));
  if (rc && rc.status === "conflict") card.append(h("p", {class: "bad"}, t("card.conflict")));
  if (rc && rc.status === "superseded") card.append(h("p", {class: "note"}, t("card.superseded")));
  if (!handed && status && !status.nearby.length) card.append(h("p", {class: "warntxt"}, t("card.alone")));
  if (handed && !rc) card.append(h("p", {class: "note"}, t("card.handed_waiting")));
  if (accepted && !photos) card.append(h("p", {class: "note"}, t("card.photos_travel")));
  const near = status ? status.nearby.map((d) => (d.role ? t("role." + d.role) : "?")).join(", ") : "";
  if (status) card.append(h("p", {class: "note"}, t("card.last_contact", {when: ago(status.last_contact)}), " · ",
    t("card.nearby", {n: status.nearby.length}), near ? " (" + near + ")" : ""));
  const agreed = r.endorsements.filter((e) => e.statement === "agree");
  card.append(h("p", {class: "note endorsed"}, agreed.length
    ? t("card.endorsed") + ": " + agreed.map((e) => t("role." + e.role) + (e.label ? " " + e.label : "")).join(", ")
    : t("card.nobody")));
  const objected = [...(r.objections || []), ...r.endorsements.filter((e) => e.statement === "object").map((e) => ({...e, reason: ""}))];
  if (objected.length) card.append(h("div", {class: "note objected"}, h("b", {class: "bad"}, t("card.objected", {n: objected.length})),
    objected.map((o) => h("div", {}, t("role." + o.role) + (o.label ? " " + o.label : "") + (o.reason ? " — " + o.reason : "")))));
  if (link) card.append(h("a", {class: "big alt", href: "#/result/" + r.id}, t("card.open")));
  return card;
}

/* ---------- the number form ---------- */
function fieldNames(el) {
  const f = ["voters.dpt.m", "voters.dpt.f", "turnout.dpt.m", "turnout.dpt.f", "turnout.dptb.m", "turnout.dptb.f",
    "turnout.dpk.m", "turnout.dpk.f", "ballots.received", "ballots.used", "ballots.damaged", "ballots.unused", "disabled.m", "disabled.f"];
  return f.concat(el.ballot_numbers.map((n) => "votes." + n), ["valid", "invalid"]);
}
const SECTIONS = [["sec.voters", "voters."], ["sec.turnout", "turnout."], ["sec.ballots", "ballots."], ["sec.disabled", "disabled."], ["sec.votes", "votes."], ["sec.total", ""]];
function label(name, e) {
  if (!name.startsWith("votes.")) return t("f." + name);
  const n = name.slice(6), pair = ((e && e.pairs) || {})[n];
  return t("f.votes", {n}) + (pair ? " \u00b7 " + pair : "");
}
function steps(el, cur) {
  return h("nav", {class: "steps"}, ["numbers", "photos", "review"].map((s) =>
    h("a", {href: "#/form/" + el + "/" + s, class: s === cur ? "on" : ""}, t("step." + s))));
}
async function loadDraft(el) {
  if (S.el !== el) S.warnPhoto = {};
  if (S.el !== el || !S.draft) { S.draft = await api("GET", "/api/draft/" + el); S.fields = S.draft.fields; S.el = el; }
  return S.draft;
}
async function numbers(el) {
  const e = S.state.elections.find((x) => x.kind === el);
  await loadDraft(el);
  const form = h("div", {id: "numbers"});
  const names = fieldNames(e);
  for (const [sec, pre] of SECTIONS) {
    const mine = names.filter((n) => (pre ? n.startsWith(pre) : !n.includes(".")));
    form.append(h("h2", {}, t(sec)));
    for (const n of mine) {
      const inp = h("input", {id: "f-" + n, name: n, inputmode: "numeric", pattern: "[0-9]*", maxlength: "3", autocomplete: "off", value: S.fields[n] ?? "",
        oninput: (ev) => { S.fields[n] = ev.target.value.replace(/[^0-9]/g, ""); ev.target.value = S.fields[n]; schedule(el); }});
      form.append(h("div", {class: "row"}, h("label", {for: "f-" + n}, label(n, e)), inp));
    }
  }
  const panel = h("div", {class: "rules", id: "rules"});
  const box = h("div", {}, steps(el, "numbers"), h("h1", {}, elName(el)), correctionNote(), form,
    h("a", {class: "big", href: "#/form/" + el + "/photos", id: "to-photos"}, t("next")), panel, h("p", {class: "note", id: "saved"}));
  setTimeout(() => runCheck(el), 0);
  return box;
}
function correctionNote() {
  const d = S.draft;
  return d && d.revision ? h("p", {class: "warntxt"}, t("review.correction", {n: d.revision, reason: d.reason})) : null;
}
function schedule(el) {
  const s = $("saved"); if (s) s.textContent = t("saving");
  clearTimeout(S.timer); S.timer = setTimeout(() => saveAndCheck(el), 350);
}
async function saveAndCheck(el) {
  try { await api("PUT", "/api/draft/" + el, {fields: S.fields}); const s = $("saved"); if (s) s.textContent = t("saved"); }
  catch (e) { const s = $("saved"); if (s) s.textContent = e.code === "offline" ? t("save.failed") : explain(e); return; }
  await runCheck(el);
}
async function runCheck(el) {
  const c = await api("POST", "/api/check/" + el, {fields: S.fields});
  S.check = c;
  const panel = $("rules"); if (!panel) return c;
  panel.replaceChildren(rulesView(c));
  document.querySelectorAll("#numbers input").forEach((i) => i.classList.remove("bad", "warn"));
  for (const [list, cls] of [[c.warn, "warn"], [c.hard, "bad"]])
    for (const r of list) for (const f of r.fields) { const i = $("f-" + f); if (i) { i.classList.remove("warn"); i.classList.add(cls); } }
  return c;
}
function rulesView(c) {
  const out = h("div", {});
  for (const r of c.hard) out.append(h("div", {class: "rule hard", "data-rule": r.rule}, t("rule." + r.rule), h("small", {}, r.detail)));
  for (const r of c.warn) out.append(h("div", {class: "rule warn", "data-rule": r.rule}, t("rule." + r.rule), h("small", {}, r.detail)));
  if (c.blank.length) out.append(h("div", {class: "rule", id: "blank"}, t("check.blank", {n: c.blank.length})));
  else if (!c.hard.length && !c.warn.length) out.append(h("div", {class: "rule ok"}, t("check.ok")));
  return out;
}

/* ---------- photos ---------- */
async function shrink(file) {
  const bmp = await createImageBitmap(file, {imageOrientation: "from-image"});
  const long = Math.max(bmp.width, bmp.height), scale = Math.min(1, 2000 / long);
  const c = document.createElement("canvas");
  c.width = Math.round(bmp.width * scale); c.height = Math.round(bmp.height * scale);
  c.getContext("2d").drawImage(bmp, 0, 0, c.width, c.height);
  const blob = await new Promise((ok) => c.toBlob(ok, "image/jpeg", 0.85));
  const s = document.createElement("canvas"); s.width = s.height = 24;
  const g = s.getContext("2d"); g.drawImage(bmp, 0, 0, 24, 24);
  const d = g.getImageData(0, 0, 24, 24).data; let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
  bmp.close && bmp.close();
  return {blob, dark: sum / (d.length / 4) < 60, small: long < 1000};
}
async function photos(el) {
  await loadDraft(el);
  const have = new Set(S.draft.photos.map((p) => p.sheet));
  const box = h("div", {}, steps(el, "photos"), h("h1", {}, elName(el)));
  for (const n of [1, 2, 3]) {
    const img = have.has(n) ? h("img", {src: "", alt: t("photo.sheet", {n}), id: "img-" + n}) : h("div", {class: "ph", id: "img-" + n}, t("photo.missing"));
    if (have.has(n)) thumb(el, n, img);
    const msg = h("div", {class: "note", id: "pmsg-" + n});
    const w = S.warnPhoto[n]; if (w) msg.append(...w.map((k) => h("div", {class: "warntxt"}, t(k))));
    const pick = (capture) => h("label", {class: "big" + (capture ? "" : " alt")}, capture ? t(have.has(n) ? "photo.retake" : "photo.take") : t("photo.gallery"),
      h("input", {type: "file", accept: "image/*", capture: capture ? "environment" : false, hidden: true, id: (capture ? "cam-" : "gal-") + n,
        onchange: (ev) => takePhoto(el, n, ev.target.files[0])}));
    box.append(h("div", {class: "card"}, h("b", {}, t("photo.sheet", {n})), h("div", {class: "photo"}, img, h("div", {style: "flex:1"}, pick(true), pick(false))), msg));
  }
  box.append(h("a", {class: "big", href: "#/form/" + el + "/review", id: "to-review"}, t("next")));
  return box;
}
async function thumb(el, n, img) {
  const r = await fetch("/api/draft/" + el + "/photo/" + n, {headers: {"X-Estafet-Token": TOKEN}});
  if (r.ok) img.src = URL.createObjectURL(await r.blob());
}
async function takePhoto(el, n, file) {
  if (!file) return;
  const msg = $("pmsg-" + n); msg.textContent = t("photo.working");
  try {
    const p = await shrink(file);
    await api("PUT", "/api/draft/" + el + "/photo/" + n, p.blob, true);
    S.warnPhoto[n] = [p.dark && "photo.dark", p.small && "photo.small"].filter(Boolean);
    S.draft = null; await loadDraft(el);
    route();
    toast(t("photo.saved", {kb: Math.round(p.blob.size / 1024)}));
  } catch (e) { msg.textContent = e instanceof ApiError ? explain(e) : t("err.photo-type"); }
}

/* ---------- review & sign ---------- */
async function review(el) {
  S.draft = null; await loadDraft(el);
  const e = S.state.elections.find((x) => x.kind === el);
  const c = await api("POST", "/api/check/" + el, {fields: S.fields});
  const tbl = h("table", {id: "review"}, fieldNames(e).map((n) => h("tr", {}, h("td", {}, label(n)), h("td", {class: "n"}, S.fields[n] ?? "—"))));
  const ok = c.ok && S.draft.photos.length === 3;
  const btn = h("button", {class: "big", id: "sign", type: "button", disabled: !ok, onclick: () => sign(el, btn)}, t("review.sign"));
  return h("div", {}, steps(el, "review"), h("h1", {}, t("review.title")), correctionNote(), h("p", {class: "note"}, t("review.help")),
    h("div", {class: "rules", style: "position:static"}, rulesView(c)),
    S.draft.photos.length < 3 ? h("p", {class: "bad"}, t("photo.need3")) : null,
    tbl, h("div", {class: "thumbs"}, S.draft.photos.map((p) => { const i = h("img", {alt: t("photo.sheet", {n: p.sheet})}); thumb(el, p.sheet, i); return i; })),
    ok ? null : h("p", {class: "bad", id: "blocked"}, t("review.blocked")), btn,
    h("button", {class: "big alt", type: "button", onclick: () => discard(el)}, t("discard")));
}
async function sign(el, btn) {
  btn.disabled = true; btn.textContent = t("review.signing");
  try { const r = await api("POST", "/api/sign/" + el); S.draft = null; S.el = ""; location.hash = "#/result/" + r.id; }
  catch (e) { toast(explain(e)); btn.disabled = false; btn.textContent = t("review.sign"); }
}
async function discard(el) {
  if (!confirm(t("discard.confirm"))) return;
  await api("DELETE", "/api/draft/" + el); S.draft = null; S.el = ""; location.hash = "#/";
}

/* ---------- one result ---------- */
async function result(id) {
  const data = await api("GET", "/api/results"); S.res = data;
  const r = data.results.find((x) => x.id === id);
  if (!r) return h("p", {}, t("home.none"));
  const e = S.state.elections.find((x) => x.kind === r.election) || {ballot_numbers: Object.keys(r.form.votes)};
  const flat = (n) => n.split(".").reduce((o, k) => (o == null ? o : o[k]), r.form);
  const box = h("div", {}, statusCard(r, data.status, false));
  if (r.warnings.length) box.append(h("div", {class: "card"}, h("b", {}, t("card.warnings")), r.warnings.map((w) => h("div", {class: "rule warn"}, t("rule." + w)))));
  if (isChair() && r.origin === "local") box.append(h("div", {class: "card qr"}, h("b", {}, t("result.qr")), h("div", {id: "qr"})));
  box.append(h("div", {class: "card"}, h("b", {}, t("result.numbers")), h("p", {class: "note"}, t("result.signed_by", {who: t("role." + r.signer.role) + " " + r.signer.label})),
    h("table", {}, fieldNames(e).map((n) => h("tr", {}, h("td", {}, label(n)), h("td", {class: "n"}, flat(n)))))));
  box.append(h("div", {class: "card"}, h("b", {}, t("result.photos")), h("div", {class: "thumbs"}, r.photos.map((p) => p.held
    ? h("img", {alt: t("photo.sheet", {n: p.sheet}), "data-sha": p.sha256})
    : h("span", {class: "note"}, t("result.photo_missing", {n: p.sheet}))))));
  if (!isChair() && !isKeeper()) box.append(agreeBox(r), objectBox(r));
  if (isChair() && r.origin === "local") box.append(correctBox(r));
  setTimeout(async () => {
    for (const img of document.querySelectorAll("img[data-sha]")) {
      const resp = await fetch("/api/photo/" + img.dataset.sha, {headers: {"X-Estafet-Token": TOKEN}});
      if (resp.ok) img.src = URL.createObjectURL(await resp.blob());
    }
    const q = $("qr"); if (q) q.innerHTML = await api("GET", "/api/qr/" + r.id);
  }, 0);
  return box;
}
function agreeBox(r) {
  const mine = r.endorsements.some((e) => e.key === S.state.identity.key && e.statement === "agree");
  if (mine) return h("p", {class: "card", id: "agreed"}, "✓ " + t("agree.done"));
  const btn = h("button", {class: "big", id: "agree", type: "button", onclick: async () => {
    btn.disabled = true;
    try { await api("POST", "/api/endorse/" + r.id); route(); } catch (e) { toast(explain(e)); btn.disabled = false; }
  }}, t("agree.button"));
  return h("div", {class: "card"}, h("p", {class: "note"}, t("agree.help")), btn);
}
/* ---------- the paper trail: objections, admissions (issue 13) ---------- */
function readPhoto(input) {
  const f = input.files && input.files[0];
  if (!f) return Promise.resolve(null);
  return new Promise((ok, bad) => {
    const rd = new FileReader();
    rd.onload = () => ok(String(rd.result).split(",")[1]); rd.onerror = () => bad(rd.error);
    rd.readAsDataURL(f);
  });
}
function objectBox(r) {
  const mine = (r.objections || []).some((o) => o.key === S.state.identity.key);
  if (mine) return h("p", {class: "card", id: "objected"}, "✓ " + t("object.done"));
  const reason = h("textarea", {id: "objection", rows: "3", maxlength: "1000", "aria-label": t("object.reason"), placeholder: t("object.reason")});
  const photo = h("input", {type: "file", id: "objection-photo", accept: "image/*", capture: "environment", "aria-label": t("object.photo")});
  const btn = h("button", {class: "big alt", id: "object", type: "button", onclick: async () => {
    if (!reason.value.trim()) return toast(t("object.reason_needed"));
    btn.disabled = true;
    try { await api("POST", "/api/object/" + r.id, {reason: reason.value, photo: await readPhoto(photo)}); route(); }
    catch (e) { toast(explain(e)); btn.disabled = false; }
  }}, t("object.button"));
  return h("div", {class: "card"}, h("b", {}, t("object.title")), h("p", {class: "note"}, t("object.help")), reason,
    h("label", {for: "objection-photo"}, t("object.photo")), photo, btn);
}
async function keyCodeBox() {
  const c = await api("GET", "/api/keycode");
  return h("div", {class: "card"}, h("b", {}, t("keycode.title")), h("p", {class: "note"}, t("keycode.help")),
    h("p", {class: "keycode", id: "keycode"}, c.code));
}
function admitBox() {
  const code = h("input", {type: "text", id: "admit-code", autocomplete: "off", autocapitalize: "characters", "aria-label": t("admit.code")});
  const role = h("select", {id: "admit-role", "aria-label": t("admit.role")},
    h("option", {value: "witness"}, t("role.witness")), h("option", {value: "ptps"}, t("role.ptps")));
  const el = h("select", {id: "admit-election", "aria-label": t("admit.election")}, S.state.elections.map((e) => h("option", {value: e.kind}, elName(e.kind))));
  const pair = h("input", {type: "number", id: "admit-pair", min: "1", max: "99", inputmode: "numeric", "aria-label": t("admit.pair")});
  const seat = h("select", {id: "admit-seat", "aria-label": t("admit.seat")}, h("option", {value: "1"}, "1"), h("option", {value: "2"}, "2"));
  const name = h("input", {type: "text", id: "admit-name", "aria-label": t("admit.name")});
  const letter = h("input", {type: "file", id: "admit-mandate", accept: "image/*", capture: "environment", "aria-label": t("admit.mandate")});
  const msg = h("p", {id: "admitmsg", class: "note"});
  const btn = h("button", {class: "big alt", id: "admit", type: "button", onclick: async () => {
    btn.disabled = true;
    const ptps = role.value === "ptps";
    try {
      await api("POST", "/api/admit", {code: code.value, role: role.value, election: el.value, pair: ptps ? 0 : Number(pair.value),
        seat: ptps ? 1 : Number(seat.value), name: name.value, mandate: await readPhoto(letter)});
      msg.className = "note"; msg.textContent = t("admit.done", {name: name.value || role.value}); code.value = ""; name.value = "";
    } catch (e) { msg.className = "bad"; msg.textContent = explain(e); }
    btn.disabled = false;
  }}, t("admit.button"));
  return h("details", {class: "card", id: "admit-box"}, h("summary", {}, h("b", {}, t("admit.title"))), h("p", {class: "note"}, t("admit.help")),
    h("label", {for: "admit-code"}, t("admit.code")), code, h("label", {for: "admit-role"}, t("admit.role")), role,
    h("label", {for: "admit-election"}, t("admit.election")), el, h("label", {for: "admit-pair"}, t("admit.pair")), pair,
    h("label", {for: "admit-seat"}, t("admit.seat")), seat, h("label", {for: "admit-name"}, t("admit.name")), name,
    h("label", {for: "admit-mandate"}, t("admit.mandate")), letter, msg, btn);
}
function correctBox(r) {
  const reason = h("textarea", {id: "reason", rows: "2", "aria-label": t("result.reason"), placeholder: t("result.reason")});
  return h("div", {class: "card"}, h("b", {}, t("result.correct")), reason,
    h("button", {class: "big alt", type: "button", id: "correct", onclick: async () => {
      if (!reason.value.trim()) return toast(t("result.reason_needed"));
      try { const c = await api("POST", "/api/correct/" + r.id, {reason: reason.value}); S.draft = null; S.el = ""; location.hash = "#/form/" + c.election + "/numbers"; }
      catch (e) { toast(explain(e)); }
    }}, t("result.correct")));
}

/* ---------- relay keeper ---------- */
async function keeper() {
  const data = await api("GET", "/api/results"); const st = data.status;
  const by = {};
  for (const r of data.results) { const b = by[r.tps] ||= {n: 0, done: 0}; b.n++; if (r.state === "delivered") b.done++; }
  const up = st.uplink.last;
  return h("div", {}, h("h1", {}, t("keeper.title")),
    h("div", {class: "card"}, h("p", {class: up ? "" : "warntxt"}, up ? t("keeper.uplink", {when: ago(up)}) : t("keeper.walk")),
      h("p", {class: "note"}, t("card.nearby", {n: st.nearby.length}), " · ", t("keeper.disk", {used: (st.storage.used / 1e6).toFixed(1), quota: Math.round(st.storage.quota / 1e6)}))),
    h("table", {class: "card", id: "keeper"}, h("tr", {}, h("th", {}, t("keeper.tps")), h("th", {}, t("keeper.held")), h("th", {}, t("keeper.delivered")), h("th", {}, t("keeper.pending"))),
      Object.entries(by).sort().map(([tps, b]) => h("tr", {}, h("td", {}, tps), h("td", {class: "n"}, b.n), h("td", {class: "n"}, b.done), h("td", {class: "n" + (b.n - b.done ? " bad" : "")}, b.n - b.done)))));
}

/* ---------- routing ---------- */
async function route() {
  clearInterval(S.poll);
  const main = $("app");
  try {
    if (!S.state) S.state = await api("GET", "/api/state");
    header();
    if (S.state.enrolled === false) { main.replaceChildren(enrollScreen()); return; }
    if (S.state.locked) { main.replaceChildren(lockScreen()); $("secret").focus(); return; }
    const [, what, a, b] = (location.hash || "#/").split("/");
    let view;
    if (what === "form" && isChair()) view = await ({numbers, photos, review}[b] || numbers)(a);
    else if (what === "result") view = await result(a);
    else view = await home();
    main.replaceChildren(view);
    if (what !== "form") S.poll = setInterval(refresh, 3000);
  } catch (e) { if (e.code !== "locked") main.replaceChildren(h("p", {class: "card bad"}, explain(e))); }
}
async function refresh() {
  if (document.activeElement && document.activeElement.tagName === "TEXTAREA") return;
  const [, what, a] = (location.hash || "#/").split("/");
  try {
    const view = what === "result" ? await result(a) : await home();
    $("app").replaceChildren(view);
  } catch (e) { /* shown on the next navigation */ }
}
function header() {
  const id = S.state.identity;
  document.title = t("app.title");
  document.documentElement.lang = lang;
  $("who").textContent = id.role ? t("home.you", {role: t("role." + id.role), tps: S.state.tps || id.scope.join(", ")}) : "";
  $("lang").textContent = t("lang.switch");
  $("lockbtn").hidden = S.state.locked || S.state.enrolled === false; $("lockbtn").textContent = t("lock.lock");
  $("title").onclick = () => { location.hash = "#/"; };
}
$("lang").onclick = () => { lang = lang === "id" ? "en" : "id"; localStorage.setItem("estafet-lang", lang); route(); };
$("lockbtn").onclick = async () => { await api("POST", "/api/lock"); S.state.locked = true; route(); };
window.addEventListener("hashchange", route);
route();
