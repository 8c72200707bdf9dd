// Field mappings: each field's access on both sides (read live when the view opens), its
// collision winner (the entity's rule or an override), enable/disable, and back-fill progress.
import { action, canOperate, escape, gql, html, raw, render, runAction, side, table, when } from '../lib.js';

const FIELDS = `id entity canonicalField marketoField dynamicsAttribute direction collisionWinner effectiveWinner effectiveRule enabled accessCheckedAt
  valueMap { dynamicsValue marketoValue }
  access { marketo { exists updateable dataType } dynamics { exists canRead canUpdate canCreate } }
  backfill { requestedAt running linksDone linksTotal }`;
const QUERY = `query Mappings($checkNow: Boolean) { fieldMappings(checkNow: $checkNow) { ${FIELDS} } }`;
const UPSERT = `mutation($input: FieldMappingInput!) { upsertFieldMapping(input: $input) { ok error backfillScheduled fieldMapping { ${FIELDS} } } }`;
const DISABLE = `mutation($entity: DynamicsEntity!, $field: String!) { disableFieldMapping(entity: $entity, canonicalField: $field) { ok error } }`;

const yesNo = (ok, yes, no) => (ok ? html`<span class="ok">${yes}</span>` : html`<span class="bad">${no}</span>`);

function access(m) {
  const a = m.access;
  if (!a) return [html`<span class="muted">not checked yet</span>`, ''];
  return [
    a.marketo.exists ? html`${yesNo(a.marketo.updateable, 'updatable', 'read-only')} <span class="muted">${a.marketo.dataType ?? ''}</span>` : html`<span class="bad">missing</span>`,
    a.dynamics.exists
      ? html`${yesNo(a.dynamics.canRead, 'read', 'no read')} · ${yesNo(a.dynamics.canUpdate, 'update', 'no update')} · ${yesNo(a.dynamics.canCreate, 'create', 'no create')}`
      : html`<span class="bad">missing</span>`,
  ];
}

function winnerSelect(m) {
  const id = `winner-${m.entity}-${m.canonicalField}`;
  const rule = m.entity === 'LEAD' ? 'Marketo' : 'Dynamics';
  const options = [
    ['', `entity rule (${rule})`],
    ['MARKETO', 'Marketo'],
    ['DYNAMICS', 'Dynamics'],
  ];
  return raw(`<label class="sr-only" for="${escape(id)}">Collision winner for ${escape(m.entity.toLowerCase())} ${escape(m.canonicalField)}</label>
<select id="${escape(id)}" data-winner="${escape(m.id)}"${canOperate() ? '' : ' disabled title="your token is read-only"'}>${options
    .map(([v, label]) => `<option value="${v}"${(m.collisionWinner ?? '') === v ? ' selected' : ''}>${escape(label)}</option>`)
    .join('')}</select>`);
}

function backfill(m) {
  if (!m.backfill) return html`<span class="muted">—</span>`;
  const b = m.backfill;
  if (!b.running) return html`requested ${when(b.requestedAt)}<br><span class="muted">waits for the next sweep</span>`;
  return html`<progress max="${b.linksTotal}" value="${b.linksDone}">${b.linksDone} of ${b.linksTotal}</progress> ${b.linksDone} / ${b.linksTotal} links`;
}

export async function mount(main) {
  render(main, html`<h2 class="view-title">Field mappings</h2><p class="muted" id="checked">Reading both systems' field metadata…</p><div id="tables"></div>`);
  let mappings = [];
  async function load(checkNow) {
    mappings = (await gql(QUERY, { checkNow })).fieldMappings;
    render(main.querySelector('#checked'), html`Access as both systems reported it ${checkNow ? 'just now' : 'when last checked'}. Changing a winner applies to the next collision; enabling a field back-fills it on the next sweep.`);
    render(
      main.querySelector('#tables'),
      ['LEAD', 'CONTACT'].map((entity) => {
        const rows = mappings.filter((m) => m.entity === entity);
        return html`<section aria-labelledby="h-${entity}"><h3 id="h-${entity}">${entity === 'LEAD' ? 'Leads' : 'Contacts'}</h3>${table(
          ['Field', 'Marketo field', 'Dynamics column', 'Direction', 'Marketo access', 'Dynamics access', 'Collision winner', 'Enabled', 'Back-fill'],
          rows.map((m) => ({
            className: m.enabled ? '' : 'disabled',
            cells: [
              html`<b>${m.canonicalField}</b>`,
              m.marketoField,
              m.dynamicsAttribute,
              m.direction.replaceAll('_', ' ').toLowerCase(),
              ...access(m),
              html`${winnerSelect(m)}<br><span class="muted">wins: ${side(m.effectiveWinner)}</span>`,
              html`${m.enabled ? 'yes' : 'no'} ${action(m.enabled ? 'Disable' : 'Enable', { 'data-toggle': m.id })}`,
              backfill(m),
            ],
          })),
          'No mappings.',
        )}</section>`;
      }),
    );
  }
  const inputOf = (m, changes) => ({
    entity: m.entity,
    canonicalField: m.canonicalField,
    marketoField: m.marketoField,
    dynamicsAttribute: m.dynamicsAttribute,
    direction: m.direction,
    collisionWinner: m.collisionWinner,
    enabled: m.enabled,
    valueMap: m.valueMap,
    ...changes,
  });
  main.addEventListener('change', (event) => {
    const select = event.target.closest('select[data-winner]');
    if (!select) return;
    const m = mappings.find((x) => x.id === select.dataset.winner);
    runAction(
      select,
      async () => {
        const { upsertFieldMapping: r } = await gql(UPSERT, { input: inputOf(m, { collisionWinner: select.value || null }) });
        if (!r.ok) throw new Error(r.error);
        return `${m.entity.toLowerCase()} ${m.canonicalField}: collisions are now won by ${side(r.fieldMapping.effectiveWinner)}.`;
      },
      () => load(false),
    );
  });
  main.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-toggle]');
    if (!button) return;
    const m = mappings.find((x) => x.id === button.dataset.toggle);
    runAction(
      button,
      async () => {
        if (m.enabled) {
          const { disableFieldMapping: r } = await gql(DISABLE, { entity: m.entity, field: m.canonicalField });
          if (!r.ok) throw new Error(r.error);
          return `${m.canonicalField} no longer syncs for ${m.entity.toLowerCase()}s.`;
        }
        const { upsertFieldMapping: r } = await gql(UPSERT, { input: inputOf(m, { enabled: true }) });
        if (!r.ok) throw new Error(r.error);
        return `${m.canonicalField} syncs again${r.backfillScheduled ? '; the next sweep back-fills it' : ''}.`;
      },
      () => load(false),
    );
  });
  await load(true);
  const timer = setInterval(() => {
    if (mappings.some((m) => m.backfill) && !main.contains(document.activeElement)) load(false).catch(() => undefined);
  }, 3000);
  return () => clearInterval(timer);
}
