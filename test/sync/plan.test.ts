import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Link, LinkStatus } from '../../src/sync/links.ts';
import type { FieldRule } from '../../src/sync/merge.ts';
import { baseAfterCreate, observe, planSync, rewrittenFields, settlePending, withRefusals, type MergePlan, type PlanInput } from '../../src/sync/plan.ts';
import { collisionWinner, type LinkedEntity } from '../../src/sync/policy.ts';
import type { DynamicsRecordView, PersonRecord } from '../../src/sync/ports.ts';
import type { CanonicalRecordFields } from '../../src/sync/values.ts';

const rule = (field: string, entity: LinkedEntity = 'LEAD', extra: Partial<FieldRule> = {}): FieldRule => ({
  field,
  type: 'string',
  direction: 'BOTH',
  ...collisionWinner(entity, null),
  writable: { MARKETO: true, DYNAMICS: true },
  ...extra,
});
const rules = (entity: LinkedEntity = 'LEAD') => [rule('title', entity), rule('city', entity), rule('phone', entity)];

const link = (over: Partial<Link> = {}): Link => ({
  id: 'l1',
  marketoId: 7,
  entity: 'LEAD',
  dynamicsId: 'd1',
  status: 'ACTIVE',
  snapshot: {},
  fieldOrigins: {},
  blocked: {},
  dynamicsEtag: null,
  revision: 3,
  lastSyncedAt: null,
  ...over,
});
const person = (fields: CanonicalRecordFields): PersonRecord => ({ id: 7, email: 'a@example.com', fields, updatedAt: null });
const record = (fields: CanonicalRecordFields, over: Partial<DynamicsRecordView> = {}): DynamicsRecordView => ({
  entity: 'LEAD',
  id: 'd1',
  email: 'a@example.com',
  fields,
  etag: 'W/"1"',
  version: '1',
  modifiedOn: '2026-11-29T10:00:00Z',
  modifiedBy: null,
  syncFilter: null,
  originatingLeadId: null,
  ...over,
});
const subject = { marketoId: 7, entity: 'LEAD' as const, dynamicsId: 'd1', linkId: 'l1', changeEventId: null };
const input = (over: Partial<PlanInput>): PlanInput => ({
  link: link(),
  person: person({}),
  record: record({}),
  rules: rules(),
  deletedFlagField: 'microsoftIsDeleted',
  dynamicsChangedSinceSync: false,
  subject,
  now: '2026-11-29T10:00:00.000Z',
  ...over,
});
const asMerge = (plan: ReturnType<typeof planSync>): MergePlan => {
  if (plan.kind !== 'merge') throw new Error(`expected a merge plan, got ${plan.kind}`);
  return plan;
};

describe('the link status a sync leads to, as a table of what it observed', () => {
  const present = { person: person({}), record: record({}) };
  const cases: { name: string; status: LinkStatus; person: PersonRecord | null; record: DynamicsRecordView | null; changed: boolean; observed: string; plan: string; to?: LinkStatus }[] = [
    { name: 'a deleted Dynamics record marks the link and flags the person', status: 'ACTIVE', ...present, record: null, changed: false, observed: 'record_missing', plan: 'status', to: 'DELETED_IN_DYNAMICS' },
    { name: 'a link already marked deleted in Dynamics is left alone', status: 'DELETED_IN_DYNAMICS', ...present, record: null, changed: false, observed: 'record_missing', plan: 'none' },
    { name: 'a record reappearing on a deleted link does nothing', status: 'DELETED_IN_DYNAMICS', ...present, changed: false, observed: 'link_deleted_in_dynamics', plan: 'none' },
    { name: 'a person deleted in Marketo marks the link', status: 'ACTIVE', ...present, person: null, changed: false, observed: 'person_missing', plan: 'status', to: 'DELETED_IN_MARKETO' },
    { name: 'a person deleted in Marketo is re-created once Dynamics changes', status: 'DELETED_IN_MARKETO', ...present, person: null, changed: true, observed: 'person_missing_record_changed', plan: 'recreate_person' },
    { name: 'new_synctomkto = No filters the link', status: 'ACTIVE', person: person({}), record: record({}, { syncFilter: false }), changed: false, observed: 'filtered', plan: 'status', to: 'FILTERED' },
    { name: 'a filtered link that is still filtered does nothing', status: 'FILTERED', person: person({}), record: record({}, { syncFilter: false }), changed: false, observed: 'filtered', plan: 'none' },
    { name: 'a filtered link whose filter is Yes again syncs and says so', status: 'FILTERED', ...present, changed: false, observed: 'syncs', plan: 'merge', to: 'ACTIVE' },
    { name: 'a person back after a deletion in Marketo syncs again', status: 'DELETED_IN_MARKETO', ...present, changed: false, observed: 'syncs', plan: 'merge', to: 'ACTIVE' },
  ];
  it.each(cases)('$name', (c) => {
    const given = input({ link: link({ status: c.status }), person: c.person, record: c.record, dynamicsChangedSinceSync: c.changed });
    expect(observe(given)).toBe(c.observed);
    const plan = planSync(given);
    expect(plan.kind).toBe(c.plan);
    if (plan.kind === 'status') expect(plan.status).toBe(c.to);
    if (plan.kind === 'merge') expect(plan.next.status).toBe(c.to);
  });

  it('flags the person "Microsoft is Deleted" only when there is a person and a flag field', () => {
    const plan = planSync(input({ record: null }));
    expect(plan).toMatchObject({ kind: 'status', flagPerson: { id: 7, field: 'microsoftIsDeleted' } });
    expect(planSync(input({ record: null, deletedFlagField: null }))).toMatchObject({ flagPerson: null });
  });
});

describe('the base after a create is what was created', () => {
  it('is the values sent, an empty source value, or what the created side holds when the field could not be sent', () => {
    const base = baseAfterCreate(
      [rule('title'), rule('city'), rule('phone'), rule('company')],
      { title: 'CTO', city: null, phone: '+1 555', company: 'Acme' },
      { title: 'CTO', company: 'Acme' },
      { title: 'CTO', city: 'Default City', phone: null, company: 'ACME Inc' },
    );
    // company: sent, so based on what was sent (a rewrite by Dynamics is then its own change)
    // city: the source had none, so Dynamics' default is a change made there
    // phone: not sent (not creatable): based on what Dynamics holds, so Marketo's value is Marketo's change
    expect(base).toEqual({ title: 'CTO', city: null, phone: null, company: 'Acme' });
  });

  it('turns an automation edit right after the create into a one-sided change, never a collision', () => {
    fc.assert(
      fc.property(fc.constantFrom<LinkedEntity>('LEAD', 'CONTACT'), fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (entity, created, edited) => {
        fc.pre(created.trim() !== '' && edited.trim() !== '' && created !== edited);
        const r = [rule('title', entity)];
        const snapshot = baseAfterCreate(r, { title: created }, { title: created }, null);
        // Marketo's "Person is Created -> Change Data Value" ran before the sync read the person again
        const plan = asMerge(planSync(input({ rules: r, link: link({ entity, snapshot }), person: person({ title: edited }), record: record({ title: created }) })));
        expect(plan.outcomes).toEqual([expect.objectContaining({ kind: 'update', to: 'DYNAMICS', newValue: edited })]);
        expect(plan.activities.map((a) => a.type)).toEqual(['UPDATED_IN_DYNAMICS']);
      }),
    );
  });

  it('an empty base (the old behaviour) would have made the same edit a collision the creator wins', () => {
    const plan = asMerge(planSync(input({ rules: [rule('title', 'CONTACT')], link: link({ entity: 'CONTACT', snapshot: {} }), person: person({ title: 'Automation' }), record: record({ title: 'Created' }) })));
    expect(plan.outcomes[0]).toMatchObject({ kind: 'collision', winner: 'DYNAMICS', losingValue: 'Automation' });
  });
});

describe('merge plans', () => {
  it('plans the writes, the next snapshot, the origins and an entry per side written and per collision', () => {
    const plan = asMerge(
      planSync(
        input({
          link: link({ snapshot: { title: 'CTO', city: 'Quito', phone: '1' } }),
          person: person({ title: 'CEO', city: 'Lima', phone: '1' }),
          record: record({ title: 'VP', city: 'Quito', phone: '2' }),
        }),
      ),
    );
    expect(plan.writes).toEqual({ DYNAMICS: { title: 'CEO', city: 'Lima' }, MARKETO: { phone: '2' } });
    expect(plan.next.snapshot).toEqual({ title: 'CEO', city: 'Lima', phone: '2' });
    expect(plan.next.fieldOrigins).toEqual({
      title: { side: 'MARKETO', at: '2026-11-29T10:00:00.000Z' },
      city: { side: 'MARKETO', at: '2026-11-29T10:00:00.000Z' },
      phone: { side: 'DYNAMICS', at: '2026-11-29T10:00:00.000Z' },
    });
    expect(plan.activities.map((a) => a.type)).toEqual(['UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'COLLISION_RESOLVED']);
    expect(plan.activities[2]!.fields[0]).toMatchObject({ field: 'title', losingValue: 'VP', winner: 'MARKETO', baseValue: 'CTO' });
  });

  it('a refusal keeps the old base for the refused field, remembers it as blocked and logs it instead of the write', () => {
    const l = link({ snapshot: { title: 'CTO', city: 'Quito' } });
    const plan = asMerge(planSync(input({ link: l, person: person({ title: 'CEO', city: 'Lima' }), record: record({ title: 'CTO', city: 'Quito' }) })));
    const refused = withRefusals(plan, l, 'DYNAMICS', new Map([['city', 'Lima is not a valid city']]), subject);
    expect(refused.writes.DYNAMICS).toEqual({ title: 'CEO' });
    expect(refused.next.snapshot).toEqual({ title: 'CEO', city: 'Quito', phone: null });
    expect(refused.next.blocked).toEqual({ city: { side: 'DYNAMICS', value: 'Lima', reason: 'validation', message: 'Lima is not a valid city' } });
    expect(refused.activities.map((a) => [a.type, a.fields.map((f) => f.field)])).toEqual([
      ['UPDATED_IN_DYNAMICS', ['title']],
      ['VALIDATION_REJECTED', ['city']],
    ]);
  });

  it('never loses a value: every field either agrees, is written, or is a logged collision or refusal', () => {
    const value = fc.option(fc.constantFrom('a', 'b', 'c'), { nil: null });
    fc.assert(
      fc.property(fc.constantFrom<LinkedEntity>('LEAD', 'CONTACT'), fc.option(value, { nil: undefined }), value, value, (entity, base, m, d) => {
        const plan = asMerge(
          planSync(input({ rules: [rule('title', entity)], link: link({ entity, snapshot: base === undefined ? {} : { title: base } }), person: person({ title: m }), record: record({ title: d }) })),
        );
        const marketoAfter = 'title' in plan.writes.MARKETO ? plan.writes.MARKETO['title'] : m;
        const dynamicsAfter = 'title' in plan.writes.DYNAMICS ? plan.writes.DYNAMICS['title'] : d;
        expect(marketoAfter).toBe(dynamicsAfter);
        for (const [side, before] of [['MARKETO', m], ['DYNAMICS', d]] as const) {
          const overwritten = 'title' in plan.writes[side] && before !== null && before !== plan.writes[side]['title'];
          const changedSinceBase = base === undefined || before !== base;
          if (overwritten && changedSinceBase) {
            // a value someone set is overwritten only as the logged loser of a collision
            const loser = plan.activities.find((a) => a.type === 'COLLISION_RESOLVED');
            expect(loser?.fields[0]?.losingValue).toBe(before);
          }
        }
      }),
    );
  });
});

describe('values a plug-in rewrote during the sync write', () => {
  it('are the written fields whose stored value differs', () => {
    expect(rewrittenFields({ country: 'usa', city: 'Boston' }, { country: 'United States', city: 'Boston', title: 'x' }, [rule('country'), rule('city')])).toEqual(['country']);
  });

  it('plan again as a change made in Dynamics, carried to Marketo', () => {
    const l = link({ snapshot: { country: null } });
    const first = asMerge(planSync(input({ rules: [rule('country')], link: l, person: person({ country: 'usa' }), record: record({ country: null }) })));
    expect(first.writes.DYNAMICS).toEqual({ country: 'usa' });
    const second = asMerge(
      planSync(input({ rules: [rule('country')], link: { ...l, ...first.next }, person: person({ country: 'usa' }), record: record({ country: 'United States' }) })),
    );
    expect(second.writes).toEqual({ MARKETO: { country: 'United States' }, DYNAMICS: {} });
    expect(second.activities.map((a) => a.type)).toEqual(['UPDATED_IN_MARKETO']);
  });
});

describe('settling what an earlier attempt journaled', () => {
  const entry = (id: string, type: 'UPDATED_IN_DYNAMICS' | 'COLLISION_RESOLVED' | 'VALIDATION_REJECTED', newValue: string) => ({
    id,
    type,
    fields: [{ field: 'title', side: 'DYNAMICS' as const, oldValue: 'old', newValue }],
    pending: true,
    plannedRevision: 1,
    at: 0,
  });
  const cases = [
    { name: 'a write the side now holds is final (the collision loser stays on record)', entry: entry('1', 'COLLISION_RESOLVED', 'won'), holds: 'won', final: ['1'] },
    { name: 'a write the side does not hold never happened: superseded', entry: entry('2', 'UPDATED_IN_DYNAMICS', 'planned'), holds: 'old', final: [] },
    { name: 'an entry that describes no write is superseded (the next plan records it again)', entry: entry('3', 'VALIDATION_REJECTED', 'refused'), holds: 'refused', final: [] },
  ];
  it.each(cases)('$name', (c) => {
    const settled = settlePending([c.entry], { MARKETO: null, DYNAMICS: { title: c.holds } }, [rule('title')]);
    expect(settled.final).toEqual(c.final);
    expect(settled.superseded).toEqual(c.final.length ? [] : [c.entry.id]);
  });

  // one write of two fields, as one PATCH: it landed whole or not at all
  const twoFields = {
    id: '9',
    type: 'UPDATED_IN_DYNAMICS' as const,
    fields: [
      { field: 'postalCode', side: 'DYNAMICS' as const, oldValue: '50554', newValue: '85571' },
      { field: 'unsubscribed', side: 'DYNAMICS' as const, oldValue: null, newValue: false },
    ],
    pending: true,
    plannedRevision: 3,
    at: 0,
  };
  const rules = [rule('postalCode'), { ...rule('unsubscribed'), type: 'boolean' as const }];
  const multi = [
    { name: 'every changed field shows its written value: final', holds: { postalCode: '85571', unsubscribed: false }, final: true },
    {
      name: 'a field that merely holds the written value does not outvote one still holding what the plan read: superseded (chaos seed 211)',
      holds: { postalCode: '50554', unsubscribed: false },
      final: false,
    },
    { name: 'one field edited since to a third value, the other written: final', holds: { postalCode: '11111', unsubscribed: false }, final: true },
    { name: 'no field shows the write: superseded', holds: { postalCode: '50554', unsubscribed: null }, final: false },
  ];
  it.each(multi)('$name', (c) => {
    const settled = settlePending([twoFields], { MARKETO: null, DYNAMICS: c.holds }, rules);
    expect(settled.final).toEqual(c.final ? ['9'] : []);
  });
});
