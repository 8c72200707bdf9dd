import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Link } from '../../src/sync/links.ts';
import type { FieldRule, Side } from '../../src/sync/merge.ts';
import { planSync, type MergePlan, type PendingEntry } from '../../src/sync/plan.ts';
import { collisionWinner, type LinkedEntity } from '../../src/sync/policy.ts';
import type { PersonFieldChange } from '../../src/sync/ports.ts';
import {
  DYNAMICS_CLOCK_SKEW_MS,
  findStaleWrites,
  MARKETO_CLOCK_SKEW_MS,
  STALE_WRITE_WINDOW_MS,
  unwitnessedDynamicsWrites,
  unwitnessedMarketoWrites,
  witnessedDynamicsWrites,
  witnessedMarketoWrites,
  type DynamicsEcho,
} from '../../src/sync/stale.ts';
import type { CanonicalRecordFields } from '../../src/sync/values.ts';

// A write a fenced-out worker sent can land after newer values were agreed (Marketo has no
// conditional write). The journal recognises it and the plan puts the agreed value back, while a
// real edit on the other side still wins and a value both sides hold is never "undone".

const rule = (field: string, entity: LinkedEntity = 'LEAD'): FieldRule => ({
  field,
  type: 'string',
  direction: 'BOTH',
  ...collisionWinner(entity, null),
  writable: { MARKETO: true, DYNAMICS: true },
});
const rules = [rule('title'), rule('city')];
const subject = { marketoId: 7, entity: 'LEAD' as const, dynamicsId: 'd1', linkId: 'l1', changeEventId: null };
const NOW = 1_000_000_000;

const link = (snapshot: Record<string, string | null>, revision = 5): Link => ({
  id: 'l1',
  marketoId: 7,
  entity: 'LEAD',
  dynamicsId: 'd1',
  status: 'ACTIVE',
  snapshot,
  fieldOrigins: {},
  blocked: {},
  dynamicsEtag: null,
  revision,
  lastSyncedAt: null,
});

const entry = (over: Partial<PendingEntry> & { side?: Side; field?: string; value?: string } = {}): PendingEntry => ({
  id: over.id ?? '1',
  type: over.type ?? ((over.side ?? 'MARKETO') === 'MARKETO' ? 'UPDATED_IN_MARKETO' : 'UPDATED_IN_DYNAMICS'),
  fields: [{ field: over.field ?? 'title', side: over.side ?? 'MARKETO', oldValue: 'D0', newValue: over.value ?? 'D1' }],
  pending: over.pending ?? false,
  plannedRevision: over.plannedRevision === undefined ? 3 : over.plannedRevision,
  at: over.at ?? NOW - 1_000,
  ...(over.dynamicsEchoes ? { dynamicsEchoes: over.dynamicsEchoes } : {}),
});

const find = (e: PendingEntry, snapshot: Record<string, string | null>, marketo: CanonicalRecordFields, dynamics: CanonicalRecordFields, revision = 5) =>
  findStaleWrites({ inDoubt: [e], revision, snapshot, holds: { MARKETO: marketo, DYNAMICS: dynamics }, rules, nowMs: NOW });

describe('recognising a late write of a fenced-out worker', () => {
  const cases = [
    {
      name: 'the side holds what an older plan wrote, neither the agreed value nor the other side: stale',
      entry: entry(),
      holds: { MARKETO: { title: 'D1' }, DYNAMICS: { title: 'M2' } },
      stale: [{ side: 'MARKETO', field: 'title', stale: 'D1', restore: 'M2' }],
      retire: ['1'],
    },
    {
      name: 'both sides hold the written value: they agree, nothing is undone',
      entry: entry(),
      holds: { MARKETO: { title: 'D1' }, DYNAMICS: { title: 'D1' } },
      stale: [],
      retire: [],
    },
    {
      name: 'the side holds the agreed value: the write has not landed (yet); kept in doubt',
      entry: entry(),
      holds: { MARKETO: { title: 'M2' }, DYNAMICS: { title: 'M2' } },
      stale: [],
      retire: [],
    },
    {
      name: 'a write planned from the revision the link is still at is the pending settlement’s case',
      entry: entry({ plannedRevision: 5 }),
      holds: { MARKETO: { title: 'D1' }, DYNAMICS: { title: 'M2' } },
      stale: [],
      retire: [],
    },
    {
      name: 'an entry whose window has passed without landing is retired',
      entry: entry({ at: NOW - STALE_WRITE_WINDOW_MS - 1 }),
      holds: { MARKETO: { title: 'M2' }, DYNAMICS: { title: 'M2' } },
      stale: [],
      retire: ['1'],
    },
    {
      name: 'a Dynamics write is judged the same way',
      entry: entry({ side: 'DYNAMICS' }),
      holds: { MARKETO: { title: 'M2' }, DYNAMICS: { title: 'D1' } },
      stale: [{ side: 'DYNAMICS', field: 'title', stale: 'D1', restore: 'M2' }],
      retire: ['1'],
    },
    {
      name: 'an entry that describes no write is never stale',
      entry: entry({ type: 'COLLISION_RESOLVED' }),
      holds: { MARKETO: { title: 'D1' }, DYNAMICS: { title: 'M2' } },
      stale: [],
      retire: [],
    },
  ] as const;
  it.each(cases)('$name', (c) => {
    const found = find(c.entry, { title: 'M2' }, c.holds.MARKETO, c.holds.DYNAMICS);
    expect(found.stale).toEqual(c.stale);
    expect(found.retire).toEqual(c.retire);
  });
});

/** The plan for a pair whose sides hold these values, with the late writes `stale` found. */
function planWith(l: Link, marketo: CanonicalRecordFields, dynamics: CanonicalRecordFields, planRules: FieldRule[], stale: ReturnType<typeof findStaleWrites>['stale']): MergePlan {
  return planSync({
    link: l,
    person: { id: 7, email: null, fields: marketo, updatedAt: null },
    record: { entity: 'LEAD', id: 'd1', email: null, fields: dynamics, etag: 'W/"1"', version: '1', modifiedOn: '2026-01-01T00:00:00Z', modifiedBy: null, syncFilter: null, originatingLeadId: null },
    rules: planRules,
    deletedFlagField: null,
    dynamicsChangedSinceSync: false,
    subject,
    now: '2026-12-05T10:00:00.000Z',
    stale,
  }) as MergePlan;
}

describe('planning with a late write undone', () => {
  const plan = (marketo: CanonicalRecordFields, dynamics: CanonicalRecordFields) => {
    const l = link({ title: 'M2', city: 'Oslo' });
    const { stale } = find(entry(), l.snapshot as Record<string, string>, marketo, dynamics);
    return planWith(l, marketo, dynamics, rules, stale);
  };

  it('puts the agreed value back on the side the late write reached, and records it', () => {
    const p = plan({ title: 'D1', city: 'Oslo' }, { title: 'M2', city: 'Oslo' });
    expect(p.writes).toEqual({ MARKETO: { title: 'M2' }, DYNAMICS: {} });
    expect(p.next.snapshot).toMatchObject({ title: 'M2' });
    const undone = p.activities.filter((a) => a.type === 'STALE_WRITE_UNDONE');
    expect(undone).toHaveLength(1);
    expect(undone[0]!.fields).toEqual([{ field: 'title', side: 'MARKETO', oldValue: 'D1', newValue: 'M2', baseValue: 'M2' }]);
    // the late value is not carried to the other side as a change made in Marketo
    expect(p.activities.some((a) => a.type === 'UPDATED_IN_DYNAMICS')).toBe(false);
  });

  it('a real edit on the other side since the agreement still wins over the late value', () => {
    const p = plan({ title: 'D1', city: 'Oslo' }, { title: 'D3', city: 'Oslo' });
    expect(p.writes).toEqual({ MARKETO: { title: 'D3' }, DYNAMICS: {} });
    expect(p.next.snapshot).toMatchObject({ title: 'D3' });
    expect(p.activities.map((a) => a.type)).toEqual(['STALE_WRITE_UNDONE', 'UPDATED_IN_MARKETO']);
  });

  it('for any values, a stale side never sends its stale value to the other side', () => {
    const value = fc.constantFrom('a', 'b', 'c', 'D1');
    fc.assert(
      fc.property(value, value, (dynamicsTitle, agreed) => {
        const l = link({ title: agreed });
        const holds = { MARKETO: { title: 'D1' }, DYNAMICS: { title: dynamicsTitle } };
        const { stale } = findStaleWrites({ inDoubt: [entry()], revision: 5, snapshot: l.snapshot, holds, rules: [rule('title')], nowMs: NOW });
        const p = planWith(l, holds.MARKETO, holds.DYNAMICS, [rule('title')], stale);
        if (stale.length > 0) {
          expect(p.writes.DYNAMICS['title']).toBeUndefined();
          expect(p.next.snapshot['title']).toBe(dynamicsTitle);
        }
        // both sides end on the snapshot's value
        const marketoAfter = p.writes.MARKETO['title'] ?? holds.MARKETO.title;
        const dynamicsAfter = p.writes.DYNAMICS['title'] ?? holds.DYNAMICS.title;
        expect(marketoAfter).toBe(dynamicsAfter);
      }),
    );
  });
});

describe("Marketo's activity log as the witness of a write whose answer was lost", () => {
  const at = NOW;
  const change = (over: Partial<PersonFieldChange> = {}): PersonFieldChange => ({ field: 'title', value: 'Late', at: at + 1_000, bySync: true, ...over });
  const pending = (over: Partial<PendingEntry> & { side?: Side; field?: string; value?: string } = {}) => entry({ side: 'MARKETO', value: 'Late', pending: true, plannedRevision: 5, at, ...over });

  it.each([
    ['the sync user set the field to the value written after it was journaled', [change()], ['1']],
    ['the change is a second earlier, within the clock skew allowed', [change({ at: at - 1_000 })], ['1']],
    ['the change is older than the entry by more than the skew: another write', [change({ at: at - MARKETO_CLOCK_SKEW_MS - 1_000 })], []],
    ['a person, not the sync, set that value', [change({ bySync: false })], []],
    ['the sync wrote another value', [change({ value: 'Other' })], []],
    ['the sync wrote that value to another field', [change({ field: 'city' })], []],
    ['no change at all: the write never landed', [], []],
  ])('%s', (_what, changes, witnessed) => {
    expect(witnessedMarketoWrites([pending()], changes, rules)).toEqual(witnessed);
  });

  it('only entries that wrote Marketo and are not seen landed need a witness', () => {
    const toDynamics = pending({ id: '2', side: 'DYNAMICS' });
    const seen = pending({ id: '3' });
    expect(unwitnessedMarketoWrites([pending(), toDynamics, seen], new Set(['3'])).map((e) => e.id)).toEqual(['1']);
  });
});

describe('the echo of the sync user’s own Update as the witness of a Dynamics write whose answer was lost', () => {
  const at = NOW;
  const echo = (over: Partial<DynamicsEcho> = {}): DynamicsEcho => ({ atMs: at + 500, fields: { title: 'Late' }, ...over });
  const pending = (over: Partial<PendingEntry> & { side?: Side; field?: string; value?: string } = {}) =>
    entry({ side: 'DYNAMICS', value: 'Late', pending: true, plannedRevision: 5, at, ...over });

  it.each([
    ['an Update of the sync user after the entry was journaled carried the value written', [echo()], ['1']],
    ['the Update ran half a second earlier by Dataverse’s clock, within the skew allowed', [echo({ atMs: at - 500 })], ['1']],
    ['the Update is older than the entry by more than the skew: an earlier write of the same value', [echo({ atMs: at - DYNAMICS_CLOCK_SKEW_MS - 1 })], []],
    ['the Update carried another value', [echo({ fields: { title: 'Other' } })], []],
    ['the Update carried that value in another field', [echo({ fields: { city: 'Late' } })], []],
    ['the Update did not carry the field at all', [echo({ fields: {} })], []],
    ['no echo: the write never landed, or its webhook is not in yet', [], []],
  ])('%s', (_what, echoes, witnessed) => {
    expect(witnessedDynamicsWrites([pending()], () => echoes, rules)).toEqual(witnessed);
  });

  it('an echo witnesses a write of two fields only when it carries both: one sharing a value is another write', () => {
    const both: PendingEntry = {
      ...pending(),
      fields: [
        { field: 'title', side: 'DYNAMICS', oldValue: 'Early', newValue: 'Late' },
        { field: 'city', side: 'DYNAMICS', oldValue: null, newValue: 'Paris' },
      ],
    };
    expect(witnessedDynamicsWrites([both], () => [echo({ fields: { title: 'Late' } })], rules)).toEqual([]);
    expect(witnessedDynamicsWrites([both], () => [echo({ fields: { title: 'Late', city: 'Paris' } })], rules)).toEqual(['1']);
  });

  it('only entries that wrote Dynamics, are not seen landed and have echoes need a witness', () => {
    const echoes = [{ at: new Date(at).toISOString(), columns: { jobtitle: 'Late' } }];
    const toMarketo = pending({ id: '2', side: 'MARKETO', dynamicsEchoes: echoes });
    const seen = pending({ id: '3', dynamicsEchoes: echoes });
    const silent = pending({ id: '4' });
    expect(unwitnessedDynamicsWrites([pending({ dynamicsEchoes: echoes }), toMarketo, seen, silent], new Set(['3'])).map((e) => e.id)).toEqual(['1']);
  });
});
