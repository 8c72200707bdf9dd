import { describe, expect, it } from 'vitest';
import type { FieldRule } from '../../src/sync/merge.ts';
import { overwrittenIn, recoverOverwritten, type MarketoWriteRecord } from '../../src/sync/overwritten.ts';
import { collisionWinner } from '../../src/sync/policy.ts';

// A marketer's edit that the sync's write overwrote before any sync read it (Marketo has no
// conditional write) is recovered only when the journal shows the write was planned without it and
// nothing has changed since; anything else was seen, superseded, or is being carried already.

const rules: FieldRule[] = [{ field: 'title', type: 'string', direction: 'BOTH', ...collisionWinner('LEAD', null), writable: { MARKETO: true, DYNAMICS: true } }];
const write = (over: Partial<MarketoWriteRecord> = {}): Map<string, MarketoWriteRecord> => new Map([['title', { oldValue: 'Base', newValue: 'From CRM', baseValue: 'Base', ...over }]]);
const evidence = [{ field: 'title', value: 'Marketer edit', by: 'From CRM' }];
const both = { marketo: { title: 'From CRM' }, dynamics: { title: 'From CRM' }, snapshot: { title: 'From CRM' } };

describe('recovering a Marketo edit a sync write overwrote unseen', () => {
  it.each([
    ['the write was planned from the value before the edit, and nothing changed since', write(), both, 1],
    ['the write was planned having seen the edit (a collision already resolved)', write({ oldValue: 'Marketer edit' }), both, 0],
    ['the last write to Marketo carried another value', write({ newValue: 'Other' }), both, 0],
    ['no write of the field is journaled', new Map<string, MarketoWriteRecord>(), both, 0],
    ['the person has changed the field again since', write(), { ...both, marketo: { title: 'Later' } }, 0],
    ['Dynamics has changed the field since', write(), { ...both, dynamics: { title: 'Later CRM' } }, 0],
    ['the overwriting value was never agreed (its commit is still to come)', write(), { ...both, snapshot: { title: 'Base' } }, 0],
  ])('%s', (_what, lastWrites, holds, recovered) => {
    expect(recoverOverwritten({ evidence, lastWrites, ...holds, rules })).toHaveLength(recovered);
  });

  it('meets the edit against the base the overwriting write was planned from', () => {
    expect(recoverOverwritten({ evidence, lastWrites: write(), ...both, rules })).toEqual([{ field: 'title', value: 'Marketer edit', base: 'Base', holds: 'From CRM' }]);
  });

  it('reads only well-formed evidence from an event payload', () => {
    expect(overwrittenIn({ overwritten: [...evidence, { field: 3 }, null, 'x'] })).toEqual(evidence);
    expect(overwrittenIn({ fields: ['title'] })).toEqual([]);
    expect(overwrittenIn(null)).toEqual([]);
  });
});
