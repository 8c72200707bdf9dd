// Batch Sync Person: push a Marketo static list to Dynamics (every person created or linked, as
// "Sync Person to Microsoft" does one), and follow each batch's progress and refusals. Refreshes
// itself while a batch runs.
import { action, gql, html, personLink, render, runAction, table, when } from '../lib.js';

const QUERY = `{ batchSyncs(first: 20) { id listId syncAs status pages persons created linked refused error requestedBy createdAt finishedAt
  items(outcome: "refused", first: 20) { marketoId message } } }`;

export async function mount(main) {
  render(
    main,
    html`<h2 class="view-title">Batch Sync Person</h2>
<form id="batch-form" class="bar">
<label>Static list id <input name="listId" inputmode="numeric" pattern="[0-9]+" required size="8" placeholder="1001"></label>
<label>Sync as <select name="syncAs"><option value="LEAD">lead</option><option value="CONTACT">contact</option></select></label>
<label>Assign to <input name="assignTo" size="24" placeholder="owner (optional)"></label>
${action('Push the list to Dynamics', { id: 'start-batch' })}
</form>
<p class="muted">The list id is the number in the list's Marketo URL (#ST1001A1 is 1001). Runs in the background, 300 persons a page; a stopped replica's batch is resumed by another.</p>
<div id="batches" aria-live="polite"></div>`,
  );
  let running = false;
  async function load() {
    const batches = (await gql(QUERY)).batchSyncs;
    running = batches.some((b) => b.status === 'RUNNING');
    render(
      main.querySelector('#batches'),
      table(
        ['Started', 'List', 'As', 'Status', 'Persons', 'Created', 'Linked', 'Refused', 'By'],
        batches.map((b) => ({
          className: `run-${b.status.toLowerCase()}`,
          cells: [
            when(b.createdAt),
            String(b.listId),
            b.syncAs.toLowerCase(),
            html`<span class="${b.status === 'DONE' ? 'ok' : b.status === 'RUNNING' ? '' : 'bad'}">${b.status.toLowerCase()}</span> <span class="muted">${b.pages} page(s)</span>${b.error ? html`<br><span class="vendor">${b.error}</span>` : ''}`,
            String(b.persons),
            String(b.created),
            String(b.linked),
            b.refused
              ? html`<details><summary>${b.refused}</summary>${b.items.map((i) => html`${personLink(i.marketoId)}: <span class="vendor">${i.message ?? ''}</span><br>`)}</details>`
              : '0',
            b.requestedBy,
          ],
        })),
        'No batch has run yet.',
      ),
    );
  }
  main.querySelector('#start-batch').addEventListener('click', (event) =>
    runAction(
      event.currentTarget,
      async () => {
        const field = (name) => main.querySelector(`#batch-form [name="${name}"]`).value;
        const listId = Number(field('listId'));
        if (!Number.isInteger(listId) || listId < 1) throw new Error('enter the static list id (a number)');
        const assignTo = field('assignTo').trim();
        const { startBatchSyncPerson: r } = await gql(
          'mutation($l: Int!, $as: DynamicsEntity, $to: String) { startBatchSyncPerson(listId: $l, syncAs: $as, assignTo: $to) { ok error batch { id } } }',
          { l: listId, as: field('syncAs'), to: assignTo || null },
        );
        if (!r.ok) throw new Error(r.error);
        return `Batch ${r.batch.id} started for list ${listId}`;
      },
      load,
    ),
  );
  await load();
  let ticks = 0;
  const timer = setInterval(() => {
    ticks += 1;
    // while a batch runs every 2 s, otherwise every 10 s
    if (running || ticks % 5 === 0) load().catch(() => undefined);
  }, 2000);
  return () => clearInterval(timer);
}
