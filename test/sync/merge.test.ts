import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { merge, type FieldRule, type MergeInput, type Side } from '../../src/sync/merge.ts';
import { collisionWinner, type LinkedEntity } from '../../src/sync/policy.ts';
import type { CanonicalValue } from '../../src/sync/values.ts';

const rule = (field: string, entity: LinkedEntity = 'LEAD', extra: Partial<FieldRule> = {}): FieldRule => ({
  field,
  type: field === 'email' ? 'email' : field === 'unsubscribed' ? 'boolean' : 'string',
  direction: 'BOTH',
  ...collisionWinner(entity, null),
  writable: { MARKETO: true, DYNAMICS: true },
  ...extra,
});

const input = (over: Partial<MergeInput>): MergeInput => ({
  rules: [rule('title')],
  base: {},
  marketo: {},
  dynamics: {},
  blocked: {},
  ...over,
});

describe('three-way merge, one field at a time', () => {
  const cases: {
    name: string;
    entity: LinkedEntity;
    base: CanonicalValue | undefined;
    m: CanonicalValue;
    d: CanonicalValue;
    expect: { kind: string; to?: Side; value: CanonicalValue; losingValue?: CanonicalValue };
  }[] = [
    { name: 'nothing changed', entity: 'LEAD', base: 'CTO', m: 'CTO', d: 'CTO', expect: { kind: 'in_sync', value: 'CTO' } },
    { name: 'Marketo changed -> written to Dynamics', entity: 'LEAD', base: 'CTO', m: 'CEO', d: 'CTO', expect: { kind: 'update', to: 'DYNAMICS', value: 'CEO' } },
    { name: 'Dynamics changed -> written to Marketo', entity: 'CONTACT', base: 'CTO', m: 'CTO', d: 'VP', expect: { kind: 'update', to: 'MARKETO', value: 'VP' } },
    { name: 'both changed alike -> no write', entity: 'LEAD', base: 'CTO', m: 'CEO', d: 'CEO', expect: { kind: 'in_sync', value: 'CEO' } },
    { name: 'lead collision -> Marketo wins', entity: 'LEAD', base: 'CTO', m: 'CEO', d: 'VP', expect: { kind: 'collision', to: 'DYNAMICS', value: 'CEO', losingValue: 'VP' } },
    { name: 'contact collision -> Dynamics wins', entity: 'CONTACT', base: 'CTO', m: 'CEO', d: 'VP', expect: { kind: 'collision', to: 'MARKETO', value: 'VP', losingValue: 'CEO' } },
    { name: 'Marketo cleared a value -> cleared in Dynamics', entity: 'LEAD', base: 'CTO', m: null, d: 'CTO', expect: { kind: 'update', to: 'DYNAMICS', value: null } },
    { name: 'never synced, Marketo empty -> filled from Dynamics', entity: 'LEAD', base: undefined, m: null, d: 'VP', expect: { kind: 'update', to: 'MARKETO', value: 'VP' } },
    { name: 'never synced, Dynamics empty -> filled from Marketo', entity: 'CONTACT', base: undefined, m: 'CEO', d: '', expect: { kind: 'update', to: 'DYNAMICS', value: 'CEO' } },
    { name: 'never synced, both differ on a contact -> Dynamics wins (back-fill)', entity: 'CONTACT', base: undefined, m: 'CEO', d: 'VP', expect: { kind: 'collision', to: 'MARKETO', value: 'VP', losingValue: 'CEO' } },
    { name: '"" equals null', entity: 'LEAD', base: null, m: '', d: null, expect: { kind: 'in_sync', value: null } },
  ];
  it.each(cases)('$name', (c) => {
    const result = merge(
      input({
        rules: [rule('title', c.entity)],
        base: c.base === undefined ? {} : { title: c.base },
        marketo: { title: c.m },
        dynamics: { title: c.d },
      }),
    );
    const outcome = result.outcomes[0]!;
    expect(outcome.kind).toBe(c.expect.kind);
    if (outcome.kind === 'update' || outcome.kind === 'collision') {
      expect(outcome.to).toBe(c.expect.to);
      expect(outcome.newValue).toBe(c.expect.value);
      expect(result.writes[outcome.to]).toEqual({ title: c.expect.value });
    }
    if (outcome.kind === 'collision') expect(outcome.losingValue).toBe(c.expect.losingValue);
    expect(result.snapshot.title).toBe(c.expect.value);
  });

  it('compares emails case-insensitively and booleans by value', () => {
    const result = merge(
      input({
        rules: [rule('email'), rule('unsubscribed')],
        base: { email: 'ada@example.com', unsubscribed: false },
        marketo: { email: 'Ada@Example.com', unsubscribed: 'false' },
        dynamics: { email: 'ada@example.com', unsubscribed: false },
      }),
    );
    expect(result.outcomes.map((o) => o.kind)).toEqual(['in_sync', 'in_sync']);
  });

  it('a per-field override beats the entity rule', () => {
    const override = rule('title', 'LEAD', collisionWinner('LEAD', 'DYNAMICS'));
    const [outcome] = merge(input({ rules: [override], base: { title: 'a' }, marketo: { title: 'm' }, dynamics: { title: 'd' } })).outcomes;
    expect(outcome).toMatchObject({ kind: 'collision', winner: 'DYNAMICS', rule: 'FIELD_OVERRIDE', newValue: 'd', losingValue: 'm' });
  });

  it('a one-way field makes the target follow the source, even after a target-side edit', () => {
    const oneWay = rule('title', 'CONTACT', { direction: 'MARKETO_TO_DYNAMICS' });
    const [outcome] = merge(input({ rules: [oneWay], base: { title: 'a' }, marketo: { title: 'a' }, dynamics: { title: 'd' } })).outcomes;
    expect(outcome).toMatchObject({ kind: 'update', to: 'DYNAMICS', newValue: 'a', oldValue: 'd' });
  });

  it('never writes a field the side says is read-only, and says so only the first time', () => {
    const readOnly = rule('title', 'LEAD', { writable: { MARKETO: true, DYNAMICS: false } });
    const first = merge(input({ rules: [readOnly], base: { title: 'a' }, marketo: { title: 'b' }, dynamics: { title: 'a' } }));
    expect(first.writes.DYNAMICS).toEqual({});
    expect(first.outcomes[0]).toMatchObject({ kind: 'blocked', reason: 'read_only', firstTime: true });
    expect(first.snapshot.title).toBe('a');
    const again = merge(input({ rules: [readOnly], base: first.snapshot, marketo: { title: 'b' }, dynamics: { title: 'a' }, blocked: first.blocked }));
    expect(again.outcomes[0]).toMatchObject({ kind: 'blocked', firstTime: false });
  });

  it('does not retry a value Dynamics rejected until that value changes', () => {
    const blocked = { title: { side: 'DYNAMICS' as const, value: 'bad', reason: 'validation' as const, message: 'rule' } };
    const same = merge(input({ base: { title: 'a' }, marketo: { title: 'bad' }, dynamics: { title: 'a' }, blocked }));
    expect(same.writes.DYNAMICS).toEqual({});
    expect(same.outcomes[0]).toMatchObject({ kind: 'blocked', reason: 'validation', firstTime: false });
    const changed = merge(input({ base: { title: 'a' }, marketo: { title: 'good' }, dynamics: { title: 'a' }, blocked }));
    expect(changed.writes.DYNAMICS).toEqual({ title: 'good' });
    expect(changed.blocked).toEqual({});
  });

  it.each([
    ['Dynamics refused Marketo’s value, then a Dynamics user edits the field', 'DYNAMICS' as const, { marketo: 'bad', dynamics: 'typed in CRM' }, { MARKETO: { title: 'typed in CRM' }, DYNAMICS: {} }],
    ['Marketo skipped Dynamics’ value, then a marketer edits the field', 'MARKETO' as const, { marketo: 'typed in Marketo', dynamics: 'bad' }, { MARKETO: {}, DYNAMICS: { title: 'typed in Marketo' } }],
  ])('%s: the newer edit goes to the side still holding the refused value, for a lead or a contact', (_name, side, holds, writes) => {
    const blocked = { title: { side, value: 'bad', reason: 'validation' as const, message: 'rule' } };
    for (const entity of ['LEAD', 'CONTACT'] as const) {
      const result = merge(input({ rules: [rule('title', entity)], base: { title: 'a' }, marketo: { title: holds.marketo }, dynamics: { title: holds.dynamics }, blocked }));
      expect(result.writes).toEqual(writes);
      expect(result.outcomes[0]).toMatchObject({ kind: 'update', oldValue: 'bad' });
      expect(result.blocked).toEqual({});
    }
  });

  it('a refusal does not turn a one-way mapping around', () => {
    const oneWay = rule('title', 'LEAD', { direction: 'MARKETO_TO_DYNAMICS' });
    const blocked = { title: { side: 'DYNAMICS' as const, value: 'bad', reason: 'validation' as const, message: 'rule' } };
    const result = merge(input({ rules: [oneWay], base: { title: 'a' }, marketo: { title: 'bad' }, dynamics: { title: 'typed in CRM' }, blocked }));
    expect(result.writes.MARKETO).toEqual({});
  });
});

describe('merge properties', () => {
  const fields = ['firstName', 'lastName', 'title', 'city'];
  const value = fc.oneof(fc.constant(null), fc.constantFrom('a', 'b', 'c', 'd'));
  const record = fc.record(Object.fromEntries(fields.map((f) => [f, value])));
  const entity = fc.constantFrom<LinkedEntity>('LEAD', 'CONTACT');
  const rules = (e: LinkedEntity) => fields.map((f) => rule(f, e));

  it('same-field collisions follow the entity rule', () => {
    fc.assert(
      fc.property(entity, record, record, record, (e, base, m, d) => {
        const result = merge({ rules: rules(e), base, marketo: m, dynamics: d, blocked: {} });
        for (const outcome of result.outcomes) {
          if (outcome.kind !== 'collision') continue;
          expect(outcome.winner).toBe(e === 'LEAD' ? 'MARKETO' : 'DYNAMICS');
          expect(outcome.newValue).toBe(e === 'LEAD' ? m[outcome.field] : d[outcome.field]);
        }
      }),
    );
  });

  it('different-field changes from both sides both survive', () => {
    fc.assert(
      fc.property(entity, record, value, value, (e, base, newFirst, newCity) => {
        fc.pre(newFirst !== base.firstName && newCity !== base.city);
        const m = { ...base, firstName: newFirst };
        const d = { ...base, city: newCity };
        const result = merge({ rules: rules(e), base, marketo: m, dynamics: d, blocked: {} });
        expect(result.snapshot).toEqual({ ...base, firstName: newFirst, city: newCity });
        expect(result.writes.DYNAMICS).toEqual({ firstName: newFirst });
        expect(result.writes.MARKETO).toEqual({ city: newCity });
      }),
    );
  });

  it('merging again after the writes landed (our own echo) is a no-op', () => {
    fc.assert(
      fc.property(entity, record, record, record, (e, base, m, d) => {
        const first = merge({ rules: rules(e), base, marketo: m, dynamics: d, blocked: {} });
        const afterWrites = { MARKETO: { ...m, ...first.writes.MARKETO }, DYNAMICS: { ...d, ...first.writes.DYNAMICS } };
        const second = merge({ rules: rules(e), base: first.snapshot, marketo: afterWrites.MARKETO, dynamics: afterWrites.DYNAMICS, blocked: first.blocked });
        expect(second.writes).toEqual({ MARKETO: {}, DYNAMICS: {} });
        expect(second.outcomes.every((o) => o.kind === 'in_sync')).toBe(true);
        expect(second.snapshot).toEqual(first.snapshot);
      }),
    );
  });

  it('no value ever disappears without an outcome that holds it', () => {
    fc.assert(
      fc.property(entity, record, record, record, (e, base, m, d) => {
        const result = merge({ rules: rules(e), base, marketo: m, dynamics: d, blocked: {} });
        for (const outcome of result.outcomes) {
          if (outcome.kind === 'update') expect(outcome.oldValue).toBe(outcome.to === 'MARKETO' ? m[outcome.field] : d[outcome.field]);
          if (outcome.kind === 'collision') {
            const overwritten = outcome.to === 'MARKETO' ? m[outcome.field] : d[outcome.field];
            expect(outcome.losingValue).toBe(overwritten);
            expect([outcome.marketoValue, outcome.dynamicsValue]).toEqual([m[outcome.field], d[outcome.field]]);
          }
        }
        // every overwritten value is named by exactly one outcome of its field
        for (const side of ['MARKETO', 'DYNAMICS'] as const) {
          for (const field of Object.keys(result.writes[side])) {
            expect(result.outcomes.filter((o) => o.field === field && (o.kind === 'update' || o.kind === 'collision'))).toHaveLength(1);
          }
        }
      }),
    );
  });
});
