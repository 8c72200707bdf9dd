// Find a person: by email, Marketo id or Dynamics id. Both records side by side, field by field,
// with the agreed value, who set it last, when and through which event; why a field does not
// sync; the link's status and history.
import { action, gql, html, personLink, raw, render, runAction, side, table, value, when } from '../lib.js';

const HISTORY_TYPES = ['LINKED', 'LINK_MOVED', 'MERGE_CONFLICT', 'CREATED_IN_DYNAMICS', 'CREATED_IN_MARKETO', 'DELETED_IN_DYNAMICS', 'DELETED_IN_MARKETO', 'SYNC_FILTERED'];

const QUERY = `query Person($q: String!, $history: [ActivityType!]) {
  findPeople(query: $q) {
    id marketoId dynamicsEntity dynamicsId status lastSyncedAt createdAt liveErrors
    fieldLineage {
      field marketoField dynamicsAttribute direction marketoValue dynamicsValue liveRead agreedValue inAgreement
      lastSetBy lastSetAt state reason heldBackValue
      lastChange { id type occurredAt }
      lastChangeEvent { id source origin operation receivedAt }
    }
    history: activities(types: $history, first: 20) { edges { node { id type occurredAt message dynamicsEntity dynamicsId } } }
    openChangeEvents { id status source operation attempts reason nextAttemptAt }
  }
}`;

const through = (f) => {
  if (!f.lastChange) return f.agreedValue === null ? html`<span class="muted">—</span>` : html`<span class="muted">not in the person's last 200 writes</span>`;
  const e = f.lastChangeEvent;
  return html`<a href="#/timeline?m=${encodeURIComponent(f.marketoId ?? '')}&focus=${f.lastChange.id}">${f.lastChange.type}</a>${
    e ? html`<br><span class="muted">${e.origin.toLowerCase()} from ${side(e.source) || e.source} · event <code>${e.id.slice(0, 8)}</code></span>` : ''
  }`;
};

function lineageTable(link) {
  const rows = link.fieldLineage.map((f) => {
    f.marketoId = link.marketoId;
    const agree = f.inAgreement === false ? html` <span class="pill warn" title="a side differs from the agreed value: a change is on its way, or held back">differs</span>` : '';
    return {
      className: f.state === 'SYNCED' ? '' : 'not-synced',
      cells: [
        html`<b>${f.field}</b><br><span class="muted">${f.marketoField} ↔ ${f.dynamicsAttribute}</span>`,
        value(f.marketoValue),
        value(f.dynamicsValue),
        html`${value(f.agreedValue)}${agree}`,
        f.lastSetBy ? html`${side(f.lastSetBy)}<br><span class="muted">${when(f.lastSetAt)}</span>` : html`<span class="muted">—</span>`,
        through(f),
        f.state === 'SYNCED'
          ? html`<span class="ok">syncs</span>${f.direction !== 'BOTH' ? html`<br><span class="muted">${f.direction === 'MARKETO_TO_DYNAMICS' ? 'Marketo → Dynamics only' : 'Dynamics → Marketo only'}</span>` : ''}`
          : html`<span class="bad">${f.state.replaceAll('_', ' ').toLowerCase()}</span><br>${f.reason}${f.heldBackValue !== null ? html`<br>held back: ${value(f.heldBackValue)}` : ''}`,
      ],
    };
  });
  return table(['Field', 'Marketo now', 'Dynamics now', 'Last agreed', 'Set last by', 'Through', 'Syncs?'], rows, 'No mapped fields.');
}

function personCard(link) {
  const history = link.history.edges.map(({ node: a }) => [when(a.occurredAt), a.type, a.message ?? '', a.dynamicsId ? html`${(a.dynamicsEntity ?? '').toLowerCase()} <code>${a.dynamicsId}</code>` : '']);
  const open = link.openChangeEvents.map((e) => [html`<code>${e.id.slice(0, 8)}</code>`, e.status, `${e.source} ${e.operation}`, String(e.attempts), e.reason ?? '', when(e.nextAttemptAt)]);
  return html`<article class="person" aria-labelledby="p-${link.id}">
<h2 id="p-${link.id}">Marketo person ${link.marketoId} ↔ Dynamics ${link.dynamicsEntity.toLowerCase()} <code>${link.dynamicsId}</code></h2>
<p><span class="pill ${link.status === 'ACTIVE' ? 'ok' : 'warn'}" id="link-status">${link.status.replaceAll('_', ' ').toLowerCase()}</span>
linked ${when(link.createdAt)} · last synced ${link.lastSyncedAt ? when(link.lastSyncedAt) : 'never'}
${action('Re-sync this person now', { 'data-resync': link.marketoId })}
<a class="button" href="#/timeline?m=${link.marketoId}">Timeline</a></p>
${link.liveErrors.length ? html`<p class="bad" role="alert">Live values could not be read: ${link.liveErrors.join('; ')}</p>` : ''}
<h3>Fields, side by side</h3>
${lineageTable(link)}
<h3>Link history</h3>
${table(['When', 'What', 'Details', 'Dynamics record'], history, 'No link events yet.')}
${open.length ? html`<h3>Open change events</h3>${table(['Event', 'Status', 'What', 'Attempts', 'Last error', 'Next attempt'], open, '')}` : ''}
</article>`;
}

export async function mount(main, params) {
  const q = params.get('q') ?? '';
  render(
    main,
    html`<h2 class="view-title">Find a person</h2>
<form id="find" class="bar" role="search"><label for="q">Email, Marketo id or Dynamics id</label>
<input id="q" name="q" type="search" value="${q}" required size="40" autocomplete="off"><button type="submit">Find</button></form>
<div id="result" aria-live="polite">${q ? raw('<p class="muted">Looking…</p>') : raw('<p class="muted">Type an email address, a Marketo person id (digits) or a Dynamics record id (GUID).</p>')}</div>`,
  );
  main.querySelector('#find').addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/person?q=${encodeURIComponent(main.querySelector('#q').value.trim())}`;
  });
  const result = main.querySelector('#result');
  async function load() {
    const data = await gql(QUERY, { q, history: HISTORY_TYPES });
    const people = data.findPeople;
    if (!people.length) render(result, html`<p>No linked person matches <b>${q}</b>. A person the sync has not linked yet is not here: see the Work queue for its events.</p>`);
    else
      render(
        result,
        html`${people.length > 1 ? html`<p>${people.length} people match: ${people.map((p) => html`${personLink(p.marketoId)} `)}</p>` : ''}${people.map(personCard)}`,
      );
  }
  result.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-resync]');
    if (!button) return;
    runAction(
      button,
      async () => {
        const { requestPersonSync: r } = await gql('mutation($id: ID!) { requestPersonSync(marketoId: $id) { ok error eventId } }', { id: button.dataset.resync });
        if (!r.ok) throw new Error(r.error);
        return `Re-sync queued (event ${r.eventId.slice(0, 8)}); reload the person in a moment.`;
      },
      null,
    );
  });
  if (q) {
    try {
      await load();
    } catch (error) {
      render(result, html`<p class="bad" role="alert">${error.message}</p>`);
    }
  } else main.querySelector('#q').focus();
  return undefined;
}
