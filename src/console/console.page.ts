import { canOperate, type Caller } from '../auth/caller.ts';

// The two HTML documents the server renders: the sign-in form, and the console's shell (the
// navigation and an empty <main>; the views are ES modules that ask /graphql). The shell carries
// the session's CSRF token and the caller's scope, never a token secret.

export function escapeHtml(value: string | number | null | undefined): string {
  const text = value === null || value === undefined ? '' : String(value);
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export const VIEWS = [
  { id: 'person', label: 'Find a person' },
  { id: 'timeline', label: 'Timeline' },
  { id: 'queue', label: 'Work queue' },
  { id: 'sweeps', label: 'Sweeps' },
  { id: 'batches', label: 'Batch sync' },
  { id: 'mappings', label: 'Field mappings' },
  { id: 'throughput', label: 'Throughput' },
  { id: 'erasures', label: 'Erasures' },
] as const;

const head = (title: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)} · marketo-dynamics-sync</title><link rel="stylesheet" href="/console/assets/console.css">`;

export function renderLogin(message?: string): string {
  return `${head('Sign in')}</head>
<body class="login"><main>
<h1>Marketo ↔ Dynamics sync</h1>
<p>The operator console shows person data: sign in with an API token (<code>GRAPHQL_API_TOKEN</code>, or the one printed at first start).</p>
${message ? `<p class="bad" role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/login"><label for="token">API token</label>
<input id="token" type="password" name="token" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>`;
}

export function renderShell(options: { caller: Caller; csrfToken: string; sandbox: boolean }): string {
  const readOnly = !canOperate(options.caller);
  return `${head('Console')}
<meta name="csrf-token" content="${escapeHtml(options.csrfToken)}">
<script type="module" src="/console/assets/app.js"></script></head>
<body data-scope="${escapeHtml(options.caller.scope)}">
<a class="skip" href="#view">Skip to the view</a>
<header>
<h1>Marketo ↔ Dynamics sync</h1>
${options.sandbox ? '<span class="pill warn">SANDBOX: simulated Marketo and Dynamics</span>' : ''}
<span class="who">Signed in as <b>${escapeHtml(options.caller.name)}</b>${readOnly ? ' <span class="pill">read-only</span>' : ''}</span>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="${escapeHtml(options.csrfToken)}"><button type="submit" class="link">Sign out</button></form>
</header>
<nav aria-label="Views"><ul>
${VIEWS.map((v) => `<li><a href="#/${v.id}" data-view="${v.id}">${escapeHtml(v.label)}</a></li>`).join('\n')}
</ul></nav>
<div id="notice" role="status" aria-live="polite"></div>
<main id="view" tabindex="-1"><noscript>The console needs JavaScript (ES modules); the API is at /graphql.</noscript></main>
</body></html>`;
}
