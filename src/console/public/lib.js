// Shared helpers of the console's views: the GraphQL client (session cookie + CSRF header),
// escaping HTML templates, formatting, and the read-only switch. Plain ES modules, no build step.

const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';

/** true when the signed-in token may run actions (scope operate, or admin which includes it) */
export const canOperate = () => document.body.dataset.scope === 'operate' || document.body.dataset.scope === 'admin';
/** true when the signed-in token may manage tokens and erasures (scope admin) */
export const canAdminister = () => document.body.dataset.scope === 'admin';

export class ApiError extends Error {}

/** POST /graphql with the session cookie and the session's CSRF token. */
export async function gql(query, variables = {}) {
  const response = await fetch('/graphql', {
    method: 'POST',
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
    body: JSON.stringify({ query, variables }),
  });
  if (response.status === 401) {
    location.reload();
    throw new ApiError('signed out');
  }
  const body = await response.json().catch(() => ({}));
  if (body.errors?.length) throw new ApiError(body.errors.map((e) => e.message).join('; '));
  if (!response.ok) throw new ApiError(`HTTP ${response.status}`);
  return body.data;
}

class Safe {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}
/** markup that is already safe (built by `html`) */
export const raw = (text) => new Safe(String(text));

export function escape(value) {
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(escape).join('');
  if (value === null || value === undefined || value === false) return '';
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

/** A template literal tag: every interpolated value is escaped unless it came from `html` or `raw`. */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    out += escape(value) + strings[i + 1];
  });
  return new Safe(out);
}

export function render(element, content) {
  element.innerHTML = escape(content);
}

export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return date.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** a field value as shown in tables: (empty) for null, JSON for the rest */
export function value(v) {
  if (v === null || v === undefined) return html`<span class="muted">(empty)</span>`;
  return html`<code>${typeof v === 'string' ? v : JSON.stringify(v)}</code>`;
}

export const side = (s) => (s === 'MARKETO' ? 'Marketo' : s === 'DYNAMICS' ? 'Dynamics' : s ?? '');

/** a link to the person view; every id shown anywhere goes there */
export function personLink(id, label) {
  if (id === null || id === undefined) return '';
  return html`<a href="#/person?q=${encodeURIComponent(id)}">${label ?? id}</a>`;
}

/** an action button: disabled, with the reason, for a read-only token */
export function action(label, attributes) {
  const attrs = Object.entries(attributes)
    .map(([k, v]) => ` ${k}="${escape(v)}"`)
    .join('');
  return canOperate()
    ? raw(`<button type="button" class="action"${attrs}>${escape(label)}</button>`)
    : raw(`<button type="button" class="action" disabled title="your token is read-only"${attrs}>${escape(label)}</button>`);
}

export function notice(message, kind = 'ok') {
  const box = document.getElementById('notice');
  if (!box) return;
  box.className = kind;
  box.textContent = message;
}

export function table(headers, rows, empty) {
  if (!rows.length) return html`<p class="muted">${empty}</p>`;
  return html`<div class="scroll"><table><thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${rows.map(
    (r) => html`<tr${r.className ? raw(` class="${escape(r.className)}"`) : ''}>${(r.cells ?? r).map((c) => html`<td>${c}</td>`)}</tr>`,
  )}</tbody></table></div>`;
}

/** runs an action button's mutation, shows its answer, then calls `after` */
export async function runAction(button, work, after) {
  button.disabled = true;
  try {
    const message = await work();
    notice(message, 'ok');
    if (after) await after();
  } catch (error) {
    notice(error.message, 'bad');
  } finally {
    if (button.isConnected) button.disabled = !canOperate();
  }
}
