import type { StatusActivity, StatusData } from './status.data.ts';

// Server-rendered HTML, no build step and no external assets. One renderer: the first load and
// every refresh (the inline script swaps in /status/fragment) use the same function.

export function escapeHtml(value: unknown): string {
  const text = value === null || value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const shown = (value: unknown) => (value === null || value === undefined ? '<span class="muted">(empty)</span>' : `<code>${escapeHtml(value)}</code>`);

function age(seconds: number | null): string {
  if (seconds === null) return 'nothing waiting';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function who(a: StatusActivity): string {
  const parts = [a.marketoId !== null ? `person ${a.marketoId}` : null, a.dynamicsId ? `${(a.dynamicsEntity ?? 'record').toLowerCase()} ${a.dynamicsId}` : null];
  return escapeHtml(parts.filter(Boolean).join(' ↔ ') || '—');
}

function table(headers: string[], rows: string[][], empty: string): string {
  if (rows.length === 0) return `<p class="muted">${escapeHtml(empty)}</p>`;
  return `<table><thead><tr>${headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

export function renderFragment(data: StatusData): string {
  const r = data.readiness;
  const connectors = Object.entries(r.connectors).map(([name, c]) => [
    escapeHtml(name),
    `<span class="${c.ok ? 'ok' : 'bad'}">${c.ok ? 'OK' : 'DOWN'}</span>`,
    escapeHtml(c.mode),
    escapeHtml(c.detail ?? ''),
  ]);
  connectors.unshift([
    'database',
    `<span class="${r.database.ok ? 'ok' : 'bad'}">${r.database.ok ? 'OK' : 'DOWN'}</span>`,
    escapeHtml(r.database.engine),
    escapeHtml(r.database.error ?? (r.migrations.current ? 'schema current' : `pending migrations: ${r.migrations.pending.join(', ')}`)),
  ]);
  const b = data.backlog;
  const linkSummary = Object.entries(data.links).map(([status, n]) => `${escapeHtml(status)}: <b>${n}</b>`).join(' · ') || 'none yet';
  const sweeps = data.sweeps.map((s) => [
    escapeHtml(s.startedAt),
    escapeHtml(s.trigger),
    `<span class="${s.status === 'SUCCEEDED' ? 'ok' : s.status === 'RUNNING' ? '' : 'bad'}">${escapeHtml(s.status)}</span>`,
    s.durationSeconds === null ? 'running' : `${s.durationSeconds.toFixed(1)} s`,
    `<code>${escapeHtml(s.counts)}</code>${s.error ? `<br><span class="bad">${escapeHtml(s.error)}</span>` : ''}`,
  ]);
  const collisions = data.collisions.flatMap((a) =>
    (a.fields.length ? a.fields : [{ field: '?' }]).map((f) => [
      escapeHtml(a.occurredAt),
      who(a),
      `<b>${escapeHtml(f.field)}</b>`,
      shown(f.marketoValue),
      shown(f.dynamicsValue),
      `${escapeHtml(f.winner ?? '')} <span class="muted">${escapeHtml(f.rule ?? '')}</span>`,
      shown(f.losingValue),
    ]),
  );
  const failures = data.failures.map((a) => [escapeHtml(a.occurredAt), `<span class="bad">${escapeHtml(a.type)}</span>`, who(a), escapeHtml(a.message ?? '')]);
  const stuck = data.stuckEvents.map((e) => [
    `<code>${escapeHtml(e.id)}</code>`,
    `<span class="bad">${escapeHtml(e.status)}</span>`,
    escapeHtml(`${e.source} ${e.operation}`),
    escapeHtml(e.marketoId ?? e.dynamicsId ?? ''),
    String(e.attempts),
    escapeHtml(e.reason ?? ''),
  ]);
  return `
<p class="muted">Updated ${escapeHtml(data.generatedAt)} · readiness <b id="readiness">${escapeHtml(r.status)}</b>${r.sandbox ? ' · <span class="warn">SANDBOX MODE (simulated Marketo and Dynamics)</span>' : ''}</p>
<section id="connectors"><h2>Connectors</h2>${table(['system', 'state', 'mode', 'detail'], connectors, '')}</section>
<section id="backlog"><h2>Backlog</h2>
<div class="tiles">
<div><b>${b.pending}</b>pending</div><div><b>${b.processing}</b>processing</div>
<div class="${b.failed ? 'warn' : ''}"><b>${b.failed}</b>failed (retrying)</div><div class="${b.dead ? 'bad' : ''}"><b>${b.dead}</b>dead</div>
<div><b>${escapeHtml(age(data.oldestPendingAgeSeconds))}</b>oldest pending</div><div><b>${data.lastHourThroughput}</b>synced last hour</div>
</div><p>Links: ${linkSummary}</p></section>
<section id="sweeps"><h2>Last sweeps</h2>${table(['started', 'trigger', 'status', 'took', 'counts'], sweeps, 'No sweep has run yet (every 5 minutes by default; mutation requestSweep runs one now).')}</section>
<section id="collisions"><h2>Recent collisions</h2>${table(['when', 'who', 'field', 'Marketo', 'Dynamics', 'winner', 'overwritten (kept here)'], collisions, 'No collisions.')}</section>
<section id="failures"><h2>Recent failures</h2>${table(['when', 'type', 'who', 'message'], failures, 'No failures.')}
${stuck.length ? `<h3>Events waiting for a retry or a replay</h3>${table(['event', 'status', 'what', 'person/record', 'attempts', 'last error'], stuck, '')}` : ''}</section>`;
}

const style = `
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 1.5rem;color:#1d2330}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eef;vertical-align:top}
th{background:#f4f5fa;font-weight:600}code{font-size:12px;word-break:break-all}.muted{color:#778}.ok{color:#17803d;font-weight:600}
.bad{color:#b42318;font-weight:600}.warn{color:#a15c00;font-weight:600}
.tiles{display:flex;gap:.6rem;flex-wrap:wrap}.tiles div{border:1px solid #dde;border-radius:6px;padding:.4rem .8rem;min-width:7rem}
.tiles b{display:block;font-size:1.3rem}form.inline{display:inline}header{display:flex;justify-content:space-between;align-items:center}`;

export function renderPage(data: StatusData, nonce: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sync status · marketo-dynamics-sync</title><style>${style}</style>
<noscript><meta http-equiv="refresh" content="5"></noscript></head>
<body><header><h1>Marketo ↔ Dynamics sync</h1><form class="inline" method="post" action="/logout"><button>Sign out</button></form></header>
<main id="status">${renderFragment(data)}</main>
<script nonce="${nonce}">
(function(){var main=document.getElementById('status');
function tick(){fetch('/status/fragment',{credentials:'same-origin',cache:'no-store'}).then(function(r){
if(r.status===401){location.reload();return null}return r.ok?r.text():null}).then(function(html){if(html!==null&&html!==undefined)main.innerHTML=html}).catch(function(){})}
setInterval(tick,3000);})();
</script></body></html>`;
}

export function renderLogin(message?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in · marketo-dynamics-sync</title><style>${style}</style></head>
<body><h1>Marketo ↔ Dynamics sync</h1>
<p>The status page shows person data: sign in with the GraphQL API token (<code>GRAPHQL_API_TOKEN</code>, or the one printed at first start).</p>
${message ? `<p class="bad">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/login"><label>API token <input type="password" name="token" autocomplete="current-password" size="50" autofocus></label>
<button type="submit">Sign in</button></form></body></html>`;
}
