// Work queue: the backlog per source and entity with the oldest waiting age, failed events with
// their last error and next attempt, dead events with replay (one, or all matching a filter), and
// a re-sync of one person. Refreshes itself every few seconds.
import { action, age, gql, html, personLink, raw, render, runAction, table, when } from '../lib.js';

// three small queries (each within the API's cost limit), asked in parallel
const STATUS = `{ syncStatus {
  backlog { pending processing failed dead }
  oldestPendingAgeSeconds lastHourThroughput
  backlogBySource { source entity pending processing failed dead oldestPendingAgeSeconds }
  connectors { name ok mode detail }
  intake { queued limit overloaded shed { source count } }
} }`;
const EVENT = 'id source origin operation marketoId dynamicsEntity dynamicsId attempts reason nextAttemptAt receivedAt';
const FAILED = `{ changeEvents(status: [FAILED], first: 50) { edges { node { ${EVENT} } } } }`;
const DEAD = `query Dead($source: ChangeSource, $entity: DynamicsEntity) { changeEvents(status: [DEAD], source: $source, entity: $entity, first: 100) { edges { node { ${EVENT} } } } }`;

const who = (e) => html`${personLink(e.marketoId)}${e.dynamicsId ? html` ${(e.dynamicsEntity ?? '').toLowerCase()} ${personLink(e.dynamicsId, raw(`<code>${e.dynamicsId.slice(0, 8)}…</code>`))}` : ''}`;

export async function mount(main) {
  render(
    main,
    html`<h2 class="view-title">Work queue</h2>
<section aria-labelledby="h-backlog"><h3 id="h-backlog">Backlog</h3><div id="backlog"></div></section>
<section aria-labelledby="h-failed"><h3 id="h-failed">Failed, waiting for a retry</h3><div id="failed"></div></section>
<section aria-labelledby="h-dead"><h3 id="h-dead">Dead (out of retries)</h3>
<form id="dead-filter" class="bar"><label for="source">Source</label><select id="source"><option value="">any</option><option>MARKETO</option><option>DYNAMICS</option><option>OPERATOR</option></select>
<label for="entity">Entity</label><select id="entity"><option value="">any</option><option>LEAD</option><option>CONTACT</option></select>
${action('Replay all matching', { id: 'replay-all' })}</form>
<div id="dead"></div></section>
<section aria-labelledby="h-resync"><h3 id="h-resync">Re-sync a person now</h3>
<form id="resync" class="bar"><label for="resync-id">Marketo person id</label><input id="resync-id" inputmode="numeric" required size="10">
${action('Re-sync this person now', { id: 'resync-button', 'data-submit': '1' })}</form></section>`,
  );
  const filter = () => ({ source: main.querySelector('#source').value || null, entity: main.querySelector('#entity').value || null });

  async function load() {
    const [status, failed, dead] = await Promise.all([gql(STATUS), gql(FAILED), gql(DEAD, filter())]);
    const data = { failed: failed.changeEvents, dead: dead.changeEvents };
    const s = status.syncStatus;
    const b = s.backlog;
    render(
      main.querySelector('#backlog'),
      html`<div class="tiles">
<div><b>${b.pending}</b>pending</div><div><b>${b.processing}</b>processing</div>
<div class="${b.failed ? 'warn' : ''}"><b>${b.failed}</b>failed (retrying)</div><div class="${b.dead ? 'bad' : ''}"><b id="dead-count">${b.dead}</b>dead</div>
<div><b>${age(s.oldestPendingAgeSeconds)}</b>oldest waiting</div><div><b>${s.lastHourThroughput}</b>done last hour</div>
${s.intake ? html`<div class="${s.intake.overloaded ? 'warn' : ''}" title="webhooks waiting to be stored on the replica that answered, of ${s.intake.limit}"><b>${s.intake.queued}</b>intake queue</div>
<div class="${s.intake.shed.some((x) => x.count > 0) ? 'warn' : ''}" title="${s.intake.shed.map((x) => `${x.source}: ${x.count}`).join(', ')} (Dataverse delivers a refused webhook again; a shed Marketo webhook is found by the sweep)"><b>${s.intake.shed.reduce((n, x) => n + x.count, 0)}</b>webhooks refused (full intake)</div>` : ''}</div>
${table(
  ['Source', 'Entity', 'Pending', 'Processing', 'Failed', 'Dead', 'Oldest waiting'],
  s.backlogBySource.map((g) => [g.source, g.entity ?? '—', String(g.pending), String(g.processing), String(g.failed), String(g.dead), age(g.oldestPendingAgeSeconds)]),
  'Nothing waiting: every change event is done.',
)}
<p class="muted">Connectors: ${s.connectors.map((c) => html`${c.name} <span class="${c.ok ? 'ok' : 'bad'}">${c.ok ? 'OK' : 'DOWN'}</span> (${c.mode}${c.detail ? `: ${c.detail}` : ''}) `)}</p>`,
    );
    render(
      main.querySelector('#failed'),
      table(
        ['Received', 'What', 'Who', 'Attempts', 'Last error', 'Next attempt'],
        data.failed.edges.map(({ node: e }) => [when(e.receivedAt), `${e.source} ${e.operation} (${e.origin.toLowerCase()})`, who(e), String(e.attempts), html`<span class="vendor">${e.reason ?? ''}</span>`, when(e.nextAttemptAt)]),
        'No failed events.',
      ),
    );
    render(
      main.querySelector('#dead'),
      table(
        ['Received', 'What', 'Who', 'Attempts', 'Last error', ''],
        data.dead.edges.map(({ node: e }) => [
          when(e.receivedAt),
          `${e.source} ${e.operation} (${e.origin.toLowerCase()})`,
          who(e),
          String(e.attempts),
          html`<span class="vendor">${e.reason ?? ''}</span>`,
          action('Replay', { 'data-replay': e.id }),
        ]),
        'No dead events.',
      ),
    );
  }

  main.addEventListener('click', (event) => {
    const one = event.target.closest('button[data-replay]');
    if (one) {
      runAction(
        one,
        async () => {
          const { replayChangeEvent: r } = await gql('mutation($id: ID!) { replayChangeEvent(id: $id) { ok error replayed } }', { id: one.dataset.replay });
          if (!r.ok) throw new Error(r.error);
          return `Replayed event ${one.dataset.replay.slice(0, 8)}: it is pending again.`;
        },
        load,
      );
      return;
    }
    const all = event.target.closest('#replay-all');
    if (all) {
      runAction(
        all,
        async () => {
          const { replayChangeEvents: r } = await gql('mutation($source: ChangeSource, $entity: DynamicsEntity) { replayChangeEvents(allDead: true, source: $source, entity: $entity) { ok error replayed skipped } }', filter());
          return `Replayed ${r.replayed.length} dead event(s)${r.skipped.length ? `; ${r.skipped.length} skipped (${r.error})` : ''}.`;
        },
        load,
      );
      return;
    }
    const resync = event.target.closest('#resync-button');
    if (resync) main.querySelector('#resync').requestSubmit();
  });
  main.querySelector('#dead-filter').addEventListener('change', () => load());
  main.querySelector('#resync').addEventListener('submit', (event) => {
    event.preventDefault();
    const button = main.querySelector('#resync-button');
    runAction(button, async () => {
      const { requestPersonSync: r } = await gql('mutation($id: ID!) { requestPersonSync(marketoId: $id) { ok error eventId } }', { id: main.querySelector('#resync-id').value.trim() });
      if (!r.ok) throw new Error(r.error);
      return `Re-sync queued (event ${r.eventId.slice(0, 8)}).`;
    }, load);
  });
  await load();
  const timer = setInterval(() => load().catch(() => undefined), 3000);
  return () => clearInterval(timer);
}
