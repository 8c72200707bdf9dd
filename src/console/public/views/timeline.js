// Timeline: a person's activities (or everyone's), newest first, filterable by type. Collisions
// show both values, the winner, the rule and "re-apply the losing value"; failures show the
// vendor's own message.
import { action, gql, html, personLink, raw, render, runAction, side, table, value, when } from '../lib.js';

const TYPES = [
  'COLLISION_RESOLVED', 'UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'CREATED_IN_DYNAMICS', 'CREATED_IN_MARKETO', 'LINKED', 'LINK_MOVED',
  'VALIDATION_REJECTED', 'SYNC_FAILED', 'EVENT_DEAD', 'FIELD_SKIPPED', 'SYNC_FILTERED', 'DELETED_IN_DYNAMICS', 'DELETED_IN_MARKETO',
  'STALE_WRITE_UNDONE', 'MERGE_CONFLICT',
];
const whose = (s) => (side(s).endsWith('s') ? `${side(s)}'` : `${side(s)}'s`);
const FAILURES = new Set(['VALIDATION_REJECTED', 'SYNC_FAILED', 'EVENT_DEAD', 'FIELD_SKIPPED', 'MERGE_CONFLICT']);
const RULES = {
  LEAD_MARKETO_WINS: 'lead: Marketo wins',
  CONTACT_DYNAMICS_WINS: 'contact: Dynamics wins',
  FIELD_OVERRIDE: "the field's winner override",
  ONE_WAY: 'one-way field',
};

const QUERY = `query Timeline($m: ID, $types: [ActivityType!], $after: String) {
  activities(marketoId: $m, types: $types, first: 30, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node {
      id type occurredAt message marketoId dynamicsEntity dynamicsId changeEventId
      fields { field side oldValue newValue baseValue losingValue marketoValue dynamicsValue winner rule }
    } }
  }
}`;

function collision(a) {
  return a.fields.map((f) => {
    const loser = f.side; // the overwritten side: re-applying its value keeps it
    return html`<div class="collision">
<table class="pair"><tbody>
<tr><th scope="row">Field</th><td><b>${f.field}</b></td></tr>
<tr><th scope="row">Marketo had</th><td>${value(f.marketoValue)}</td></tr>
<tr><th scope="row">Dynamics had</th><td>${value(f.dynamicsValue)}</td></tr>
<tr><th scope="row">Agreed before</th><td>${value(f.baseValue)}</td></tr>
<tr><th scope="row">Winner</th><td><b>${side(f.winner)}</b> <span class="muted">(${RULES[f.rule] ?? f.rule ?? ''})</span></td></tr>
<tr><th scope="row">Overwritten</th><td>${value(f.losingValue)} <span class="muted">on ${side(loser)}</span></td></tr>
</tbody></table>
${loser ? action(`Re-apply the losing value (keep ${whose(loser)} ${f.field})`, { 'data-resolve': a.id, 'data-keep': loser }) : ''}
</div>`;
  });
}

function entry(a, focus) {
  const failure = FAILURES.has(a.type);
  const changes = a.type === 'COLLISION_RESOLVED' ? collision(a) : a.fields.length
    ? table(['Field', 'Written to', 'Was', 'Now'], a.fields.map((f) => [f.field, side(f.side), value(f.oldValue), value(f.newValue)]), '')
    : '';
  return html`<li class="entry${failure ? ' failure' : ''}${focus === a.id ? ' focus' : ''}" id="a-${a.id}">
<p><time datetime="${a.occurredAt}">${when(a.occurredAt)}</time> <span class="pill ${failure ? 'bad' : a.type === 'COLLISION_RESOLVED' ? 'warn' : ''}">${a.type.replaceAll('_', ' ').toLowerCase()}</span>
person ${personLink(a.marketoId)}${a.dynamicsId ? html` ↔ ${(a.dynamicsEntity ?? '').toLowerCase()} ${personLink(a.dynamicsId, raw(`<code>${a.dynamicsId}</code>`))}` : ''}
${a.changeEventId ? html`<span class="muted">· event <code>${a.changeEventId.slice(0, 8)}</code></span>` : ''}</p>
${a.message ? html`<p class="${failure ? 'vendor' : ''}">${failure ? raw('<b>Message:</b> ') : ''}${a.message}</p>` : ''}
${changes}
</li>`;
}

export async function mount(main, params) {
  const m = params.get('m') ?? '';
  const type = params.get('type') ?? '';
  const focus = params.get('focus') ?? '';
  render(
    main,
    html`<h2 class="view-title">Timeline${m ? html` of person ${m}` : ' of every person'}</h2>
<form id="filter" class="bar"><label for="m">Marketo person id</label><input id="m" name="m" inputmode="numeric" value="${m}" size="10" placeholder="everyone">
<label for="type">Type</label><select id="type" name="type"><option value="">all types</option>${TYPES.map(
      (t) => html`<option value="${t}"${t === type ? raw(' selected') : ''}>${t.replaceAll('_', ' ').toLowerCase()}</option>`,
    )}</select><button type="submit">Show</button></form>
<ol id="entries" class="timeline" aria-live="polite"></ol><p><button type="button" id="more" hidden>Older entries</button></p>`,
  );
  const list = main.querySelector('#entries');
  const more = main.querySelector('#more');
  let after = null;
  main.querySelector('#filter').addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    const person = main.querySelector('#m').value.trim();
    if (person) next.set('m', person);
    if (main.querySelector('#type').value) next.set('type', main.querySelector('#type').value);
    location.hash = `#/timeline?${next}`;
  });
  async function load(reset) {
    if (reset) after = null;
    const data = await gql(QUERY, { m: m || null, types: type ? [type] : null, after });
    const page = data.activities;
    const markup = page.edges.map(({ node }) => entry(node, focus));
    if (reset) render(list, markup.length ? markup : html`<li class="muted">Nothing yet.</li>`);
    else list.insertAdjacentHTML('beforeend', markup.map(String).join(''));
    after = page.pageInfo.endCursor;
    more.hidden = !page.pageInfo.hasNextPage;
  }
  more.addEventListener('click', () => load(false));
  list.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-resolve]');
    if (!button) return;
    runAction(
      button,
      async () => {
        const { resolveCollision: r } = await gql('mutation($id: ID!, $keep: SyncSide!) { resolveCollision(activityId: $id, keep: $keep) { ok error } }', {
          id: button.dataset.resolve,
          keep: button.dataset.keep,
        });
        if (!r.ok) throw new Error(r.error);
        return `Re-applying ${whose(button.dataset.keep)} value: the sync writes it to both sides now.`;
      },
      () => load(true),
    );
  });
  await load(true);
  if (focus) main.querySelector(`#a-${CSS.escape(focus)}`)?.scrollIntoView({ block: 'center' });
  return undefined;
}
