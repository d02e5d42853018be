// Suara's response-team console: plain DOM, no framework, no request anywhere but this origin's API.
"use strict";

const I18N = {
  id: {
    console: "Konsol", inbox: "Kotak masuk", figures: "Angka", live: "Langsung", signout: "Keluar", signin: "Masuk",
    token: "Token akses", status: "Status", channel: "Kanal", department: "Dinas", kecamatan: "Kecamatan",
    priority: "Prioritas", overdue: "Lewat tenggat", all: "Semua", yes: "Ya", no: "Tidak", search: "Cari",
    datefrom: "Dari tanggal", dateto: "Sampai tanggal", undelivered: "Balasan gagal",
    searchhint: "Kata keluhan, nama, nomor laporan atau nomor HP",
    undeliveredwarn: "{p} terakhir tidak sampai ke warga ({c}). Kirim lagi, atau hubungi warga lewat jalur lain.",
    outcome_unknown: "tidak diketahui apakah terkirim: pengirim terhenti di tengah pengiriman", code: "kode",
    purposeName: { acknowledgement: "Tanda terima", agent_reply: "Balasan petugas", resolution: "Pemberitahuan selesai" },
    reference: "Nomor", complaint: "Keluhan", updated: "Diperbarui", more: "Muat lebih banyak", back: "← Kotak masuk",
    reply: "Balas warga", canned: "Jawaban siap pakai", message: "Pesan", send: "Kirim", note: "Catatan internal",
    addnote: "Tambah catatan", handling: "Penanganan", assignee: "Petugas", category: "Kategori", save: "Simpan",
    disposition: "Disposisi", action: "Tindakan", accept: "Terima", decline: "Bukan wewenang kami",
    extend: "Perpanjang tenggat", reason: "Alasan", todept: "Ke dinas (bukan wewenang)",
    workdays: "Hari kerja (perpanjangan)", apply: "Terapkan", merge: "Gabungkan laporan",
    mergerefs: "Nomor laporan lain (pisahkan dengan koma)", mergebtn: "Gabungkan ke tiket ini", audit: "Jejak audit",
    private: "Jawab secara pribadi (pesan langsung, bukan komentar publik)",
    "c-volume": "Laporan baru per hari menurut kanal", "c-compliance": "Tepat tenggat per dinas",
    "c-kecamatan": "Tiket terbuka per kecamatan", "c-satisfaction": "Kepuasan warga (1–5)",
    badtoken: "Token tidak dikenal.", shown: "{n} tiket ditampilkan", total: "Semua tiket", none: "—",
    choose: "— Pilih —", anyopt: "Semua", triage: "Triase", unknown: "Tidak diketahui", citizen: "Warga",
    you: "Petugas", notelabel: "Catatan", due: "Tenggat", openmap: "Lihat di peta", download: "Unduh",
    win_wa: "Jendela 24 jam WhatsApp sudah tertutup: balasan akan dikirim sebagai templat “{t}”.",
    win_meta: "Jendela 24 jam sudah tertutup: platform bisa menolak balasan bebas.",
    audit_: {
      created: "Tiket dibuat dari {c}", message_added: "Pesan warga masuk", reply_queued: "Balasan ke warga",
      note_added: "Catatan internal ditambahkan", deadline_breached: "Lewat tenggat", survey_answered: "Warga menilai {s} dari 5",
      merged_into: "Digabungkan ke {r}", merged: "Menggabungkan {r}", followed_by: "Dilanjutkan di {r}",
      reopened_by: "dibuka lagi oleh {r}", updated: "Diperbarui", disposition_accept: "Diterima dinas",
      disposition_decline: "Bukan wewenang kami", disposition_extend: "Tenggat diperpanjang", workdays: " {n} hari kerja",
    },
    fieldName: { status: "Status", assignee: "Petugas", department: "Dinas", category: "Kategori", priority: "Prioritas",
      due_at: "Tenggat", kecamatan: "Kecamatan", desa: "Desa" },
    edited: "Diedit warga", removed: "Dihapus warga", removedwhy: "Warga menghapus pesan ini; isinya tetap tersimpan di sini.",
    comment_removed: "komentar warga sudah dihapus, tidak ada tempat untuk membalas",
    gonewarn: "Warga sudah menghapus komentarnya: balasan tidak bisa dikirim di bawahnya. Hubungi warga lewat jalur lain bila perlu.",
    xlimit: " / 280 (batas X)", chars: " karakter", saved: "Tersimpan.", frt: "Respons pertama (median, jam kerja)",
    within: "Tepat tenggat", avgsat: "Kepuasan rata-rata", nodata: "Belum ada data.", failed: "Gagal", kiosk: "Kios desa",
    ticks: { queued: "Dalam antrean", sent: "Terkirim", delivered: "Diterima", read: "Dibaca", failed: "Gagal" },
    statusName: { new: "Baru", open: "Diproses", pending: "Menunggu warga", resolved: "Selesai", closed: "Ditutup" },
    priorityName: { low: "Rendah", normal: "Normal", high: "Tinggi", urgent: "Darurat" },
    channelName: { whatsapp: "WhatsApp", facebook: "Facebook", instagram: "Instagram", x: "X", web: "Web" },
    closednote: "Tiket ini sudah ditutup: tidak bisa dibalas atau diubah lagi. Pesan baru warga membuka tiket baru.",
    bydisposition: "Pindahkan ke dinas lain lewat Disposisi (“Bukan wewenang kami”), dengan alasan.",
    privatelabel: "pribadi", newmessage: "Pesan baru dari warga", notfound: "Tiket {r} tidak ditemukan, atau bukan untuk dinas Anda.",
    loadfailed: "Tiket {r} gagal dimuat. Coba lagi sebentar lagi.", listfailed: "Daftar gagal dimuat; yang tampil mungkin belum sesuai saringan.",
    confirmclose: "Tutup tiket {r}? Tiket yang ditutup tidak bisa dibuka lagi, dan warga tidak diberi tahu.",
    errors: {
      network: "Tidak tersambung ke server. Periksa jaringan, lalu coba lagi.",
      invalid_transition: "Perubahan status itu tidak diperbolehkan dari status sekarang.",
      validation_error: "Isian belum benar: periksa kembali.",
      ticket_closed: "Tiket ini sudah ditutup: tidak bisa diubah atau dibalas. Pesan baru warga membuka tiket baru.",
      private_reply_refused: "Komentar ini sudah pernah dijawab secara pribadi, atau sudah lebih dari 7 hari.",
      reply_too_long: "Balasan pribadi hanya satu pesan: persingkat (Facebook 2000, Instagram 1000 karakter).",
      forbidden: "Anda tidak berhak melakukan ini. Pindahkan tiket ke dinas lain lewat Disposisi, dengan alasan.",
      invalid_merge: "Laporan itu tidak bisa digabungkan ke tiket ini.",
      invalid_disposition: "Disposisi itu tidak bisa diterapkan pada tiket ini.",
      canned_response_not_found: "Jawaban siap pakai itu sudah dihapus.",
      not_found: "Tidak ditemukan.",
    },
  },
  en: {
    console: "Console", inbox: "Inbox", figures: "Figures", live: "Live", signout: "Sign out", signin: "Sign in",
    token: "Access token", status: "Status", channel: "Channel", department: "Department", kecamatan: "Kecamatan",
    priority: "Priority", overdue: "Overdue", all: "All", yes: "Yes", no: "No", search: "Search",
    datefrom: "Received from", dateto: "Received until", undelivered: "Reply failed",
    searchhint: "Words of the complaint, name, reference or phone number",
    undeliveredwarn: "The last {p} did not reach the citizen ({c}). Send it again, or reach them another way.",
    outcome_unknown: "unknown whether it was sent: the sender stopped mid-send", code: "code",
    purposeName: { acknowledgement: "acknowledgement", agent_reply: "agent's reply", resolution: "resolution notice" },
    reference: "Reference", complaint: "Complaint", updated: "Updated", more: "Load more", back: "← Inbox",
    reply: "Reply to the citizen", canned: "Canned response", message: "Message", send: "Send", note: "Internal note",
    addnote: "Add note", handling: "Handling", assignee: "Assignee", category: "Category", save: "Save",
    disposition: "Disposition", action: "Action", accept: "Accept", decline: "Not our authority",
    extend: "Extend the deadline", reason: "Reason", todept: "To department (not ours)",
    workdays: "Working days (extension)", apply: "Apply", merge: "Merge reports",
    mergerefs: "Other references (comma-separated)", mergebtn: "Merge into this ticket", audit: "Audit trail",
    private: "Answer privately (direct message, not a public comment)",
    "c-volume": "New tickets per day by channel", "c-compliance": "Deadlines kept per department",
    "c-kecamatan": "Open tickets per kecamatan", "c-satisfaction": "Citizen satisfaction (1–5)",
    badtoken: "Unknown token.", shown: "{n} tickets shown", total: "All tickets", none: "—",
    choose: "— Choose —", anyopt: "All", triage: "Triage", unknown: "Unknown", citizen: "Citizen",
    you: "Agent", notelabel: "Note", due: "Due", openmap: "Open map", download: "Download",
    win_wa: "WhatsApp's 24-hour window has closed: the reply will go as the template “{t}”.",
    win_meta: "The 24-hour window has closed: the platform may refuse a free-form reply.",
    audit_: {
      created: "Ticket opened from {c}", message_added: "Citizen's message received", reply_queued: "Reply to the citizen",
      note_added: "Internal note added", deadline_breached: "Deadline passed", survey_answered: "Citizen rated {s} of 5",
      merged_into: "Merged into {r}", merged: "Merged {r} into this one", followed_by: "Followed up in {r}",
      reopened_by: "reopened by {r}", updated: "Updated", disposition_accept: "Accepted by the department",
      disposition_decline: "Not our authority", disposition_extend: "Deadline extended", workdays: " {n} working days",
    },
    fieldName: { status: "Status", assignee: "Assignee", department: "Department", category: "Category", priority: "Priority",
      due_at: "Due", kecamatan: "Kecamatan", desa: "Desa" },
    edited: "Edited by the citizen", removed: "Removed by the citizen", removedwhy: "The citizen removed this message; its words stay recorded here.",
    comment_removed: "the citizen removed their comment: there is nothing left to reply under",
    gonewarn: "The citizen removed their comment: a reply has nothing to go under. Reach them another way if needed.",
    xlimit: " / 280 (X's limit)", chars: " characters", saved: "Saved.", frt: "First response (median, working hours)",
    within: "Within deadline", avgsat: "Average satisfaction", nodata: "No data yet.", failed: "Failed", kiosk: "Village kiosk",
    ticks: { queued: "Queued", sent: "Sent", delivered: "Delivered", read: "Read", failed: "Failed" },
    statusName: { new: "New", open: "Open", pending: "Pending", resolved: "Resolved", closed: "Closed" },
    priorityName: { low: "Low", normal: "Normal", high: "High", urgent: "Urgent" },
    channelName: { whatsapp: "WhatsApp", facebook: "Facebook", instagram: "Instagram", x: "X", web: "Web" },
    closednote: "This ticket is closed: it takes no more replies or changes. The citizen's next message opens a new one.",
    bydisposition: "Hand it to another department by a disposition (“Not our authority”), with a reason.",
    privatelabel: "private", newmessage: "New message from the citizen", notfound: "Ticket {r} was not found, or is not your department's.",
    loadfailed: "Ticket {r} could not be loaded. Try again in a moment.", listfailed: "The list could not be loaded; what shows may not match the filters.",
    confirmclose: "Close ticket {r}? A closed ticket cannot be opened again, and the citizen is not told.",
    errors: {
      network: "No connection to the server. Check the network, then try again.",
      invalid_transition: "That status change is not allowed from the current status.",
      validation_error: "Something in the form is not right: check it.",
      ticket_closed: "This ticket is closed: it cannot be changed or answered. A new message from the citizen opens a new ticket.",
      private_reply_refused: "This comment already had its private reply, or is older than 7 days.",
      reply_too_long: "A private reply is one message: shorten it (Facebook 2000, Instagram 1000 characters).",
      forbidden: "You may not do this. Hand the ticket to another department by a disposition, with a reason.",
      invalid_merge: "That report cannot be merged into this ticket.",
      invalid_disposition: "That disposition cannot be applied to this ticket.",
      canned_response_not_found: "That canned response was deleted.",
      not_found: "Not found.",
    },
  },
};
const TICKS = { queued: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗" };
const CHANNEL_SHORT = { whatsapp: "WA", facebook: "f", instagram: "IG", x: "X", web: "W" };
const CHANNEL_COLOURS = { whatsapp: "#147a3f", facebook: "#1559c4", instagram: "#b8327a", x: "#111111", web: "#5f6b76" };
const WINDOW_MS = 24 * 3600 * 1000;
const PRIVATE_MAX = { facebook: 2000, instagram: 1000 };
const WA_TEMPLATE = "suara_tanggapan_laporan";
const POLL_MS = 2500;
// The counts above the inbox read every ticket (146 ms of the embedded database at 10,000), so every open
// console asking them at each refresh in a busy hour would cost the desk more than anything it shows. They are
// asked when the inbox is shown, and after live changes at most this often, the last change always counted.
const COUNTS_MS = 30000;

const state = {
  lang: localStorage.getItem("suara.lang") || "id",
  token: sessionStorage.getItem("suara.token") || "",
  me: null, options: null, canned: [], since: null, cursor: null, ticket: null, timer: null, media: new Map(),
  counted: 0, countsTimer: null, said: new Map(), listed: 0, loadedControls: null,
};

const $ = (sel) => document.querySelector(sel);
const t = (key) => I18N[state.lang][key] ?? I18N.id[key] ?? key;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A figure as the desk writes numbers: 1,5 in Indonesian, 1.5 in English.
function number(value) {
  if (value == null) return t("none");
  return new Intl.NumberFormat(state.lang === "id" ? "id-ID" : "en-GB", { maximumFractionDigits: 2 }).format(value);
}

function when(iso) {
  if (!iso) return t("none");
  const locale = state.lang === "id" ? "id-ID" : "en-GB";
  return new Intl.DateTimeFormat(locale, {
    timeZone: "Asia/Jakarta", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  }).format(new Date(iso)) + " WIB";
}

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error_code;
  }
}

// What went wrong, in the desk's language; the server's own words stay in the line's tooltip.
function showError(box, e) {
  const known = e instanceof ApiFailure ? t("errors")[e.code] : e instanceof TypeError ? t("errors").network : null;
  box.textContent = known || e.message;
  box.title = known ? e.message : "";
}

// A form sends once at a time: a double click or a second Enter while its request is out does nothing.
async function inFlight(form, action) {
  if (form.dataset.busy) return;
  form.dataset.busy = "1";
  const buttons = [...form.querySelectorAll("button[type=submit]")];
  for (const button of buttons) button.disabled = true;
  try {
    await action();
  } finally {
    delete form.dataset.busy;
    for (const button of buttons) button.disabled = false;
    lockForms();
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    signOut();
    throw new ApiFailure(401, { message: t("badtoken") });
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiFailure(response.status, data);
  return data;
}

function channelIcon(channel) {
  const name = t("channelName")[channel] || channel;
  return el("span", { class: `ch ch-${channel}`, title: name, "aria-label": name, role: "img" }, CHANNEL_SHORT[channel] || "?");
}

function departmentName(code) {
  if (!code) return t("triage");
  const found = state.options?.departments.find((d) => d.code === code);
  return found ? found.code : code;
}

// --- language ------------------------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  const other = state.lang === "id" ? "en" : "id";
  $("#lang").textContent = other === "en" ? "English" : "Bahasa Indonesia";
  $("#lang").lang = other;
  fillSelects();
  fillCanned();
}

function fillCanned() {
  const chosen = $("#canned").value;
  $("#canned").replaceChildren(el("option", { value: "" }, t("choose")),
    ...state.canned.map((c) => el("option", { value: c.id }, c.title)));
  $("#canned").value = chosen;
}

function fillSelects() {
  if (!state.options) return;
  for (const select of document.querySelectorAll("select[data-options]")) {
    const current = select.value;
    const kind = select.dataset.options;
    const labels = select.dataset.label ? t(`${select.dataset.label}Name`) : null;
    const inFilters = select.closest("#filters") !== null;
    const first = inFilters ? t("anyopt") : t("choose");
    const items = state.options[kind].map((item) =>
      typeof item === "string" ? { value: item, text: labels?.[item] || item } : { value: item.code, text: `${item.code} — ${item.name}` });
    select.replaceChildren(
      ...(select.hasAttribute("data-required") ? [] : [el("option", { value: "" }, first)]),
      ...items.map((item) => el("option", { value: item.value }, item.text)),
    );
    select.value = current;
  }
}

// --- sign in -------------------------------------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  state.me = await api("/me");
  sessionStorage.setItem("suara.token", token);
  state.options = await api("/options");
  state.canned = (await api("/canned-responses")).items;
  $("#who").textContent = `${state.me.name} · ${state.me.role}${state.me.department ? ` · ${state.me.department}` : ""}`;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  applyLanguage();
  startLive();
}

function signOut() {
  state.token = "";
  state.me = null;
  sessionStorage.removeItem("suara.token");
  clearTimeout(state.timer);
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#live").hidden = true;
  $("#who").textContent = "";
  show("login");
}

function show(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
}

// --- inbox ---------------------------------------------------------------------------------------------------

function filterParams() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData($("#filters"))) if (String(value).trim()) params.set(key, String(value).trim());
  return params;
}

// The inbox's page, and the most a live refresh asks at once to keep what "load more" showed.
const PAGE = 50;
const PAGE_MAX = 100;

async function loadInbox({ append = false, fresh = new Set(), keep = 0 } = {}) {
  const asked = ++state.listed;  // while typing a search, only the latest request's answer is shown
  const params = filterParams();
  const items = [];
  let cursor = append ? state.cursor : null;
  try {
    do {
      params.set("limit", String(Math.min(PAGE_MAX, Math.max(PAGE, keep - items.length))));
      if (cursor) params.set("cursor", cursor);
      const page = await api(`/tickets?${params}`);
      if (asked !== state.listed) return;
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && items.length < keep);
  } catch (e) {
    if (asked !== state.listed) return;
    $("#rows").classList.add("stale");
    showError($("#inbox-error"), e);
    $("#inbox-error").textContent = `${t("listfailed")} (${$("#inbox-error").textContent})`;
    $("#inbox-error").hidden = false;
    return;
  }
  $("#inbox-error").hidden = true;
  $("#rows").classList.remove("stale");
  state.cursor = cursor;
  const rows = items.map((ticket) => ticketRow(ticket, fresh.has(ticket.reference)));
  if (append) $("#rows").append(...rows);
  else $("#rows").replaceChildren(...rows);
  $("#more").hidden = !state.cursor;
  $("#shown").textContent = t("shown").replace("{n}", $("#rows").children.length);
}

function ticketRow(ticket, fresh) {
  const open = () => { location.hash = `#/ticket/${ticket.reference}`; };
  return el("tr", { class: fresh ? "fresh" : null, "data-reference": ticket.reference, onclick: open },
    el("td", {}, el("a", { href: `#/ticket/${ticket.reference}` }, ticket.reference)),
    el("td", {}, channelIcon(ticket.channel)),
    el("td", { class: "summary" }, ticket.summary || t("none")),
    el("td", {}, el("span", { class: "badge" }, t("statusName")[ticket.status] || ticket.status),
      ticket.overdue ? [" ", el("span", { class: "badge overdue" }, t("overdue"))] : null,
      ticket.undelivered ? [" ", undeliveredBadge(ticket.undelivered)] : null),
    el("td", {}, el("span", { class: `badge ${ticket.priority}` }, t("priorityName")[ticket.priority] || ticket.priority)),
    el("td", {}, departmentName(ticket.department)),
    el("td", {}, ticket.kecamatan || t("none")),
    el("td", {}, when(ticket.updated_at)),
  );
}

async function loadCounts() {
  clearTimeout(state.countsTimer);
  state.countsTimer = null;
  state.counted = Date.now();
  const stats = await api("/stats/counts");
  const boxes = [el("div", { class: "count" }, el("b", {}, stats.total), t("total"))];
  for (const status of state.options.statuses) {
    boxes.push(el("div", { class: "count", "data-status": status }, el("b", {}, stats.by_status[status] || 0), t("statusName")[status]));
  }
  // Answers that never reached their citizen: a click lists them.
  boxes.push(el("button", { type: "button", class: `count${stats.undelivered ? " failed" : ""}`, id: "count-undelivered",
    onclick: () => { $("#filters select[name=undelivered]").value = "true"; loadInbox(); } },
  el("b", {}, stats.undelivered), `✗ ${t("undelivered")}`));
  $("#counts").replaceChildren(...boxes);
}

function undeliveredBadge(undelivered) {
  return el("span", { class: "badge failed", title: undeliveredText(undelivered) }, `✗ ${t("undelivered")}`);
}

function undeliveredText(undelivered) {
  const purpose = t("purposeName")[undelivered.purpose] || undelivered.purpose;
  const code = undelivered.code;
  const why = ["outcome_unknown", "comment_removed"].includes(code) ? t(code) : `${t("code")} ${code || "?"}`;
  return t("undeliveredwarn").replace("{p}", purpose).replace("{c}", why);
}

function countSoon() {
  if (state.countsTimer) return;
  state.countsTimer = setTimeout(() => {
    state.countsTimer = null;
    if (state.me && currentRoute().name === "inbox") loadCounts().catch(() => {});
  }, Math.max(0, state.counted + COUNTS_MS - Date.now()));
}

// --- one ticket ----------------------------------------------------------------------------------------------

async function loadTicket(reference) {
  const [ticket, events] = await Promise.all([api(`/tickets/${reference}`), api(`/tickets/${reference}/events`)]);
  // A refresh that answers after the agent went to another ticket must not show this one under that address.
  const route = currentRoute();
  if (route.name !== "ticket" || route.reference !== reference) return;
  const again = state.ticket?.reference === reference;  // a live refresh, or the agent's own change
  if (!again) leaveTicket();
  const heard = again ? new Set(state.ticket.messages.map((m) => m.id)) : null;
  state.ticket = ticket;
  $("#t-error").hidden = true;
  $("#ticket .ticket-grid").hidden = false;
  $("#t-title").replaceChildren(channelIcon(ticket.channel), " ", ticket.reference, " ",
    el("span", { class: "badge" }, t("statusName")[ticket.status]), ticket.overdue ? el("span", { class: "badge overdue" }, t("overdue")) : "",
    ticket.source === "kiosk" ? el("span", { class: "badge" }, t("kiosk")) : "",
    ticket.undelivered ? undeliveredBadge(ticket.undelivered) : "");
  const undelivered = $("#undelivered-warning");
  undelivered.hidden = !ticket.undelivered;
  undelivered.textContent = ticket.undelivered ? undeliveredText(ticket.undelivered) : "";
  const citizen = ticket.citizen || {};
  $("#t-meta").textContent = [citizen.display_name || citizen.channel_user_id, citizen.phone, citizen.email,
    [ticket.desa, ticket.kecamatan].filter(Boolean).join(", "), `${t("due")}: ${when(ticket.due_at)}`].filter(Boolean).join(" · ");
  renderConversation(ticket);
  renderAudit(events.items);
  const fresh = heard ? ticket.messages.filter((m) => m.direction === "inbound" && !heard.has(m.id)) : [];
  if (fresh.length) $("#t-news").textContent = `${t("newmessage")}: ${fresh.map((m) => m.text || m.kind).join(" · ")}`;
  // What the agent changed and has not saved yet stays when the ticket reloads because something else changed.
  const form = $("#controls");
  const before = again ? state.loadedControls : null;
  state.loadedControls = {};
  for (const name of CONTROLS) {
    const value = ticket[name] || "";
    if (!before || form.elements[name].value === before[name]) form.elements[name].value = value;
    state.loadedControls[name] = value;
  }
  // Only the statuses the lifecycle allows from this one are offered.
  const next = state.options.transitions[ticket.status] || [];
  for (const option of form.elements.status.options) option.disabled = option.value !== ticket.status && !next.includes(option.value);
  lockForms();
  renderReplyLimits();
}

// A closed ticket takes no reply, note or change (the citizen's next message opens a new one): its forms say so.
// An agency's agent hands a ticket to another department by a disposition, with a reason, never by the control.
function lockForms() {
  const closed = state.ticket?.status === "closed";
  const scoped = state.me?.role === "agent" && Boolean(state.me?.department);
  for (const form of ["#reply-form", "#note-form", "#controls", "#disposition", "#merge"]) {
    for (const field of $(form).elements) field.disabled = closed;
  }
  const department = $("#controls").elements.department;
  department.disabled = closed || scoped;
  department.title = scoped ? t("bydisposition") : "";
  $("#closed-note").hidden = !closed;
}

const CONTROLS = ["status", "assignee", "department", "category", "priority"];

// Another ticket: nothing typed for the last one may go to this one's citizen.
function leaveTicket() {
  for (const url of state.media.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
  state.media = new Map();
  state.ticket = null;
  state.loadedControls = null;
  for (const shown of ["#t-title", "#t-meta", "#conversation", "#audit"]) $(shown).replaceChildren();
  for (const form of ["#reply-form", "#note-form", "#disposition", "#merge"]) $(form).reset();
  for (const box of ["#reply-error", "#note-error", "#controls-error", "#disposition-error", "#merge-error", "#t-news"]) $(box).textContent = "";
}

function ticketUnavailable(reference, e) {
  leaveTicket();
  $("#ticket .ticket-grid").hidden = true;
  $("#t-error").textContent = t(e.status === 404 ? "notfound" : "loadfailed").replace("{r}", reference);
  $("#t-error").title = e.message;
  $("#t-error").hidden = false;
}

function renderConversation(ticket) {
  const entries = [
    ...ticket.messages.map((m) => ({ at: m.created_at, node: messageNode(ticket, m) })),
    ...ticket.notes.map((n) => ({ at: n.created_at, node: noteNode(n) })),
  ].sort((a, b) => new Date(a.at) - new Date(b.at));
  $("#conversation").replaceChildren(...entries.map((e) => e.node));
}

function messageNode(ticket, message) {
  const outbound = message.direction === "outbound";
  const who = outbound ? (message.author || t("you")) : (ticket.citizen?.display_name || t("citizen"));
  const head = el("div", { class: "head" }, channelIcon(ticket.channel), who, " · ", when(message.created_at));
  const body = [];
  if (message.text) body.push(el("p", { class: "text" }, message.text));
  // A citizen's edits keep what each replaced; a removal keeps the words, marked.
  const edits = (message.edits || []).filter((e) => !e.removed && e.before != null);
  if (edits.length) {
    body.push(el("details", { class: "edits" }, el("summary", {}, `✎ ${t("edited")} · ${when(edits[edits.length - 1].at)}`),
      ...edits.map((e) => el("p", { class: "text before" }, `${when(e.at)}: `, el("s", {}, e.before || "")))));
  }
  if (message.removed) head.append(el("span", { class: "badge removed", title: t("removedwhy") }, `🗑 ${t("removed")}`));
  if (message.private) head.append(" ", el("span", { class: "badge" }, `🔒 ${t("privatelabel")}`));
  for (const attachment of message.attachments || []) body.push(attachmentNode(ticket, attachment));
  if (message.location && message.location.latitude != null) {
    const { latitude, longitude, name, address } = message.location;
    const href = `https://www.openstreetmap.org/?mlat=${latitude}&mlon=${longitude}#map=17/${latitude}/${longitude}`;
    body.push(el("p", {}, "📍 ", el("a", { href, target: "_blank", rel: "noopener noreferrer" },
      [name, address].filter(Boolean).join(", ") || `${latitude}, ${longitude}`), ` (${t("openmap")})`));
  }
  if (outbound) {
    const status = message.delivery_status || "queued";
    const label = t("ticks")[status] || status;
    const tick = el("span", { class: "tick", "data-status": status, title: label, "aria-label": label }, TICKS[status] || "?");
    const foot = el("div", { class: "head" }, tick, label);
    if (message.template) foot.append(` · template ${message.template}`);
    if (message.delivery_error) foot.append(` · ${message.delivery_error.code} ${message.delivery_error.title || ""}`);
    body.push(foot);
  }
  return el("li", { class: `msg ${message.direction}${message.removed ? " removed" : ""}`, "data-id": message.id,
    "data-kind": message.kind }, head, body);
}

function noteNode(note) {
  return el("li", { class: "msg note" }, el("div", { class: "head" }, "🔒 ", t("notelabel"), " · ", note.author, " · ", when(note.created_at)),
    el("p", { class: "text" }, note.text));
}

function attachmentNode(ticket, attachment) {
  const box = el("div", { class: "attachment" }, attachment.caption ? el("p", { class: "text" }, attachment.caption) : null);
  if (!attachment.media_id) return box;
  const path = `/tickets/${ticket.reference}/media/${encodeURIComponent(attachment.media_id)}`;
  const isImage = (attachment.mime_type || "").startsWith("image/") || ["image", "sticker"].includes(attachment.kind);
  // The media endpoint needs the bearer token, which an <img src> cannot send: fetch it, show it as a blob.
  // Fetched once while the ticket is open, for the picture and its download alike (a photo may be 8 MiB, and the
  // ticket reloads at every delivery tick); a failure is asked again at the next reload.
  const fetchBlob = () => {
    if (!state.media.has(path)) {
      const url = (async () => {
        const response = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${state.token}` } });
        if (!response.ok) throw new ApiFailure(response.status, await response.json().catch(() => null));
        return URL.createObjectURL(await response.blob());
      })();
      url.catch(() => state.media.delete(path));
      state.media.set(path, url);
    }
    return state.media.get(path);
  };
  if (isImage) {
    fetchBlob().then((url) => box.prepend(el("img", { src: url, alt: attachment.caption || attachment.kind })))
      .catch((e) => box.append(el("p", { class: "error" }, `${t("failed")}: ${e.message}`)));
  }
  // A photo too: the desk forwards the citizen's evidence to the agency as the file it was.
  box.append(el("button", { type: "button", class: "secondary", onclick: async () => {
    const url = await fetchBlob();
    const link = el("a", { href: url, download: attachment.filename || attachment.media_id });
    link.click();
  } }, `${t("download")} ${attachment.kind}${attachment.filename ? ` (${attachment.filename})` : ""}`));
  return box;
}

function renderAudit(items) {
  // In words for the desk; the event's exact record stays in the line's tooltip.
  $("#audit").replaceChildren(...items.map((e) => el("li", { "data-type": e.type, title: JSON.stringify(e.data || {}) },
    el("b", {}, auditText(e)), ` · ${e.actor} · ${when(e.at)}`)));
}

function auditValue(field, value) {
  if (value == null || value === "") return t("none");
  const names = { status: t("statusName"), priority: t("priorityName"), channel: t("channelName") }[field];
  if (names && names[value]) return names[value];
  if (field.endsWith("_at")) return when(value);
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function auditChanges(data) {
  return Object.entries(data).filter(([, v]) => Array.isArray(v) && v.length === 2)
    .map(([field, [from, to]]) => `${t("fieldName")[field] || field}: ${auditValue(field, from)} → ${auditValue(field, to)}`);
}

function auditText(e) {
  const d = e.data || {};
  const a = t("audit_");
  switch (e.type) {
    case "created": return a.created.replace("{c}", auditValue("channel", d.channel));
    case "message_added": return a.message_added;
    case "reply_queued": return [a.reply_queued, ...auditChanges(d)].join(" · ");
    case "note_added": return a.note_added;
    case "reply_failed": return undeliveredText(d);
    case "deadline_breached": return a.deadline_breached;
    case "survey_answered": return a.survey_answered.replace("{s}", d.score);
    case "merged": return d.into ? a.merged_into.replace("{r}", d.into) : a.merged.replace("{r}", (d.merged || []).join(", "));
    case "disposition": {
      const head = (a[`disposition_${d.action}`] || d.action) + (typeof d.department === "string" ? ` ${d.department}` : "");
      const extra = d.action === "extend" ? a.workdays.replace("{n}", d.working_days) : "";
      return [head + extra, ...auditChanges(d), d.reason ? `${t("reason")}: ${d.reason}` : ""].filter(Boolean).join(" · ");
    }
    case "updated": {
      const parts = auditChanges(d);
      if (d.followed_by) parts.push(a.followed_by.replace("{r}", d.followed_by));
      if (d.reopened_by) parts.push(a.reopened_by.replace("{r}", d.reopened_by));
      return parts.join(" · ") || a.updated;
    }
    default: return e.type;
  }
}

function commentsOf(ticket) {
  return ticket.messages.filter((m) => m.direction === "inbound" && (m.kind === "comment" || m.reply_context?.comment_id));
}

function renderReplyLimits() {
  const ticket = state.ticket;
  if (!ticket) return;
  const text = $("#reply-text");
  const x = ticket.channel === "x";
  // A private reply is one direct message: Messenger takes 2000 characters, Instagram 1000.
  const privately = !$("#private-box").hidden && $("#reply-private").checked;
  text.maxLength = x ? 280 : privately ? PRIVATE_MAX[ticket.channel] ?? 10000 : 10000;
  $("#reply-limit").textContent = x ? t("xlimit") : privately ? ` / ${text.maxLength}` : t("chars");
  $("#reply-count").textContent = text.value.length;
  const comments = commentsOf(ticket);
  $("#private-box").hidden = !comments.length;
  // The 24-hour window is the direct messages'; a reply under a comment or a mention has none.
  const publicThread = ticket.messages.some((m) => m.direction === "inbound" && ["comment", "mention"].includes(m.kind));
  const windowed = !publicThread && ["whatsapp", "facebook", "instagram"].includes(ticket.channel);
  const lastInbound = ticket.messages.filter((m) => m.direction === "inbound").map((m) => new Date(m.created_at)).sort((a, b) => b - a)[0];
  const closed = windowed && lastInbound && Date.now() - lastInbound.getTime() > WINDOW_MS;
  const gone = comments.length > 0 && comments.every((m) => m.removed);
  const warning = $("#window-warning");
  warning.hidden = !(closed || gone);
  warning.textContent = gone ? t("gonewarn") : ticket.channel === "whatsapp" ? t("win_wa").replace("{t}", WA_TEMPLATE) : t("win_meta");
}

function sendReply(event) {
  event.preventDefault();
  // The server fills in a canned text's placeholders ({reference}, {name}…) for each reporter, edited or not.
  const body = { text: $("#reply-text").value.trim() };
  if (!$("#private-box").hidden && $("#reply-private").checked) body.private = true;
  submitForm(event.target, $("#reply-error"), (reference) => api(`/tickets/${reference}/replies`, { method: "POST", body }));
}

async function submitForm(form, errorBox, action) {
  if (!state.ticket) return;
  const reference = state.ticket.reference;
  errorBox.textContent = "";
  await inFlight(form, async () => {
    try {
      await action(reference);
      form.reset();
      await loadTicket(reference);
    } catch (e) {
      showError(errorBox, e);
    }
  });
}

// --- figures -------------------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children.flat()) if (child != null) node.append(child instanceof Node ? child : String(child));
  return node;
}

function stackedColumns(days, series) {
  const width = 560, height = 220, left = 28, bottom = 30, top = 10;
  const totals = days.map((_, i) => Object.values(series).reduce((s, v) => s + v[i], 0));
  const max = Math.max(1, ...totals);
  const step = (width - left) / days.length;
  const y = (v) => (height - bottom - top) * (v / max);
  const parts = [svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#5f6b76" }),
    svg("text", { x: 0, y: top + 8 }, max)];
  days.forEach((day, i) => {
    let base = height - bottom;
    for (const [channel, values] of Object.entries(series)) {
      if (!values[i]) continue;
      const h = y(values[i]);
      base -= h;
      parts.push(svg("rect", { x: left + i * step + 2, y: base, width: Math.max(2, step - 4), height: h, fill: CHANNEL_COLOURS[channel] || "#999" },
        svg("title", {}, `${day} ${t("channelName")[channel] || channel}: ${values[i]}`)));
    }
    if (days.length <= 16 || i % 2 === 0) parts.push(svg("text", { x: left + i * step + step / 2, y: height - 12, "text-anchor": "middle" }, day.slice(8)));
  });
  const legend = el("div", { class: "legend" }, ...Object.keys(series).map((c) => {
    const swatch = el("i");
    swatch.style.background = CHANNEL_COLOURS[c];
    return el("span", {}, swatch, t("channelName")[c] || c);
  }));
  return [svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": t("c-volume") }, parts), legend];
}

function horizontalBars(rows, { percent = false, colour = "#0b4f8a", label }) {
  if (!rows.length) return el("p", { class: "muted" }, t("nodata"));
  const width = 560, bar = 20, gap = 6, left = 150;
  const height = rows.length * (bar + gap) + 4;
  const max = percent ? 1 : Math.max(1, ...rows.map((r) => r.value));
  const parts = [];
  rows.forEach((row, i) => {
    const y = i * (bar + gap);
    const w = (width - left - 60) * (row.value / max);
    parts.push(svg("text", { x: left - 6, y: y + bar - 6, "text-anchor": "end" }, row.name));
    parts.push(svg("rect", { x: left, y, width: Math.max(1, w), height: bar, fill: colour, rx: 3 }, svg("title", {}, `${row.name}: ${row.text}`)));
    parts.push(svg("text", { x: left + w + 6, y: y + bar - 6 }, row.text));
  });
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label }, parts);
}

async function loadFigures() {
  const [figures, stats] = await Promise.all([api("/figures?days=14"), api("/stats")]);
  const share = stats.within_deadline.share;
  $("#summary").replaceChildren(
    el("div", { class: "count" }, el("b", {}, stats.total), t("total")),
    el("div", { class: "count" }, el("b", {}, number(stats.first_response.median)), t("frt")),
    el("div", { class: "count" }, el("b", {}, share == null ? t("none") : `${Math.round(share * 100)}%`), t("within")),
    el("div", { class: "count" }, el("b", {}, number(stats.satisfaction.average)), t("avgsat")),
  );
  $("#c-volume").replaceChildren(...stackedColumns(figures.days, figures.volume));
  $("#c-compliance").replaceChildren(horizontalBars(figures.compliance.map((c) => ({
    name: c.department === "triage" ? t("triage") : c.department, value: c.count ? c.within / c.count : 0,
    text: `${Math.round((c.count ? c.within / c.count : 0) * 100)}% (${c.within}/${c.count})` })), { percent: true, colour: "#1b7f3b", label: t("c-compliance") }));
  $("#c-kecamatan").replaceChildren(horizontalBars(Object.entries(figures.open_by_kecamatan).map(([name, value]) => ({
    name: name === "unknown" ? t("unknown") : name, value, text: String(value) })), { label: t("c-kecamatan") }));
  $("#c-satisfaction").replaceChildren(horizontalBars(Object.entries(figures.satisfaction).map(([score, value]) => ({
    name: "★".repeat(Number(score)), value, text: String(value) })), { colour: "#e59400", label: t("c-satisfaction") }));
}

// --- live updates: poll what changed, refresh what is on screen ------------------------------------------------

function startLive() {
  clearTimeout(state.timer);
  state.since = null;
  state.said = new Map();
  const tick = async () => {
    try {
      const answer = await api(`/changes${state.since ? `?since=${encodeURIComponent(state.since)}` : ""}`);
      const first = state.since === null;
      state.since = answer.at;
      $("#live").hidden = false;
      // Each answer looks 2 s further back than `since` (a write may commit after the read that missed it), so
      // a change can come twice: what the previous answer already said is not a change.
      const said = new Map(answer.tickets.map((c) => [c.reference, c.updated_at]));
      const changed = new Set([...said.keys()].filter((reference) => state.said.get(reference) !== said.get(reference)));
      state.said = said;
      // `more`: a flood changed more tickets than the answer lists; whatever is on screen may be among them.
      if (!first && (changed.size || answer.more)) {
        const route = currentRoute();
        if (route.name === "inbox") {
          await loadInbox({ fresh: changed, keep: $("#rows").children.length });
          countSoon();
        }
        if (route.name === "ticket" && (answer.more || changed.has(route.reference))) await loadTicket(route.reference);
      }
    } catch (e) {
      $("#live").hidden = true;
    }
    if (state.token) state.timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

// --- routing -------------------------------------------------------------------------------------------------

function currentRoute() {
  const hash = location.hash || "#/inbox";
  const match = hash.match(/^#\/ticket\/([A-Z]{2,10}-\d{4}-\d{6})$/);
  if (match) return { name: "ticket", reference: match[1] };
  if (hash === "#/figures") return { name: "figures" };
  return { name: "inbox" };
}

async function route() {
  if (!state.me) return show("login");
  const where = currentRoute();
  show(where.name);
  try {
    if (where.name === "ticket") {
      if (state.ticket?.reference !== where.reference) {
        leaveTicket();  // nothing of the last ticket shows, or takes a reply, while this one loads
        $("#ticket .ticket-grid").hidden = true;
      }
      await loadTicket(where.reference).catch((e) => ticketUnavailable(where.reference, e));
    }
    else if (where.name === "figures") await loadFigures();
    else await Promise.all([loadInbox(), loadCounts()]);
  } catch (e) {
    if (e.status !== 401) console.warn(e.message);
  }
}

function wire() {
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "id" ? "en" : "id";
    localStorage.setItem("suara.lang", state.lang);
    applyLanguage();
    route();
  });
  $("#signout").addEventListener("click", signOut);
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#login-error").textContent = "";
    try {
      await signIn($("#token").value.trim());
      $("#token").value = "";
      await route();
    } catch (e) {
      $("#login-error").textContent = e.status === 401 ? t("badtoken") : e.message;
    }
  });
  let debounce = null;
  $("#filters").addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(() => loadInbox(), 250); });
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); loadInbox(); });
  $("#more").addEventListener("click", () => loadInbox({ append: true }));
  $("#reply-form").addEventListener("submit", sendReply);
  $("#reply-text").addEventListener("input", () => { $("#reply-count").textContent = $("#reply-text").value.length; });
  $("#reply-private").addEventListener("change", renderReplyLimits);
  $("#reply-form").addEventListener("reset", () => { $("#reply-count").textContent = "0"; });
  $("#canned").addEventListener("change", () => {
    const canned = state.canned.find((c) => c.id === $("#canned").value);
    if (canned) $("#reply-text").value = canned.text;
    $("#reply-count").textContent = $("#reply-text").value.length;
  });
  $("#note-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#note-text").value.trim();
    submitForm(event.target, $("#note-error"), (reference) => api(`/tickets/${reference}/notes`, { method: "POST", body: { text } }));
  });
  $("#controls").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const ticket = state.ticket;
    if (!ticket) return;
    const changes = {};
    for (const name of CONTROLS) {
      const value = form.elements[name].value.trim() || null;
      if (value !== (ticket[name] || null)) changes[name] = value;
    }
    const box = $("#controls-error");
    box.textContent = "";
    box.classList.add("error");
    if (!Object.keys(changes).length) return;
    // Closing is for good, and tells the citizen nothing: the agent says so once more.
    if (changes.status === "closed" && !confirm(t("confirmclose").replace("{r}", ticket.reference))) return;
    inFlight(form, async () => {
      try {
        await api(`/tickets/${ticket.reference}`, { method: "PATCH", body: changes });
        await loadTicket(ticket.reference);
        box.classList.remove("error");
        box.textContent = t("saved");
      } catch (e) {
        showError(box, e);
      }
    });
  });
  $("#disposition").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const body = { action: form.elements.action.value };
    if (form.elements.reason.value.trim()) body.reason = form.elements.reason.value.trim();
    if (body.action === "decline" && form.elements.department.value) body.department = form.elements.department.value;
    if (body.action === "extend") body.working_days = Number(form.elements.working_days.value);
    submitForm(form, $("#disposition-error"), (reference) => api(`/tickets/${reference}/disposition`, { method: "POST", body }));
  });
  $("#merge").addEventListener("submit", (event) => {
    event.preventDefault();
    const references = event.target.elements.references.value.split(/[\s,]+/).map((r) => r.trim().toUpperCase()).filter(Boolean);
    submitForm(event.target, $("#merge-error"), (reference) => api(`/tickets/${reference}/merge`, { method: "POST", body: { references } }));
  });
  window.addEventListener("hashchange", route);
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  applyLanguage();
  if (state.token) {
    try { await signIn(state.token); } catch { signOut(); }
  }
  await route();
});
