import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  runOracle,
  type Agreement,
  type EditClass,
  type FieldValue,
  type FinalPair,
  type IntentEdit,
  type LoggedActivity,
  type LoggedField,
  type OracleInput,
  type SyncSide,
  type ViolationKind,
} from '../../src/chaos/oracle.ts';

// The intent oracle judged on hand-made histories: each row is what the campaign logged, what both
// sides hold at the end and what the activity log says, and the verdict the oracle must reach.
// Times are seq * 10 ms so that activity entries can be placed between edits.

const P = 1001;
const t = (seq: number) => seq * 10;

function edit(seq: number, side: SyncSide, field: string, value: FieldValue, extra: Partial<IntentEdit> = {}): IntentEdit {
  return { seq, at: t(seq), actor: 'person', side, person: P, field, value, race: null, what: `edit ${seq}`, ...extra };
}
function agreed(seq: number, field: string, value: FieldValue, how = 'settled round'): Agreement {
  return { seq, at: t(seq), person: P, field, value, how };
}
function pair(entity: 'LEAD' | 'CONTACT', marketo: Record<string, FieldValue>, dynamics: Record<string, FieldValue>, extra: Partial<FinalPair> = {}): FinalPair {
  return { person: P, entity, dynamicsId: 'd-1', outOfScope: null, fields: ['title', 'country', 'email', 'city'], marketo, dynamics, ...extra };
}
let nextId = 1;
function entry(afterSeq: number, type: string, fields: LoggedField[], entity: 'LEAD' | 'CONTACT' = 'CONTACT', message: string | null = null): LoggedActivity {
  return { id: String(nextId++), type, at: t(afterSeq) + 5, marketoId: P, dynamicsEntity: entity, message, fields };
}
function collision(afterSeq: number, entity: 'LEAD' | 'CONTACT', field: string, winner: SyncSide, won: FieldValue, lost: FieldValue, base: FieldValue = null): LoggedActivity {
  return entry(afterSeq, 'COLLISION_RESOLVED', [
    {
      field,
      side: winner === 'MARKETO' ? 'DYNAMICS' : 'MARKETO',
      winner,
      newValue: won,
      losingValue: lost,
      oldValue: lost,
      baseValue: base,
      marketoValue: winner === 'MARKETO' ? won : lost,
      dynamicsValue: winner === 'MARKETO' ? lost : won,
      rule: entity === 'LEAD' ? 'LEAD_MARKETO_WINS' : 'CONTACT_DYNAMICS_WINS',
    },
  ], entity);
}

function input(parts: Partial<OracleInput>): OracleInput {
  return { edits: [], agreements: [], pairs: [], activities: [], fieldKinds: { email: 'email', title: 'string', country: 'string', city: 'string' }, ...parts };
}

interface Row {
  name: string;
  input: OracleInput;
  verdicts: EditClass[];
  violations: ViolationKind[];
}

const rows: Row[] = [
  {
    name: 'an edit whose value ends on both sides is kept',
    input: input({ edits: [edit(1, 'MARKETO', 'title', 'CTO')], pairs: [pair('LEAD', { title: 'CTO' }, { title: 'CTO' })] }),
    verdicts: ['both-sides'],
    violations: [],
  },
  {
    name: 'emails compare case-insensitively and "" equals null',
    input: input({ edits: [edit(1, 'DYNAMICS', 'email', 'A@X.COM'), edit(2, 'MARKETO', 'city', '')], pairs: [pair('CONTACT', { email: 'a@x.com', city: null }, { email: 'A@x.com', city: '' })] }),
    verdicts: ['both-sides', 'both-sides'],
    violations: [],
  },
  {
    name: 'an edit overwritten by a later edit of the other side after it reached both sides is superseded',
    input: input({ edits: [edit(1, 'MARKETO', 'title', 'A'), edit(3, 'DYNAMICS', 'title', 'B')], agreements: [agreed(2, 'title', 'A', 'the sync’s write landed')], pairs: [pair('LEAD', { title: 'B' }, { title: 'B' })] }),
    verdicts: ['superseded', 'both-sides'],
    violations: [],
  },
  {
    name: 'an edit the other side overwrote before it reached both sides, with no collision entry, is lost',
    input: input({ edits: [edit(1, 'MARKETO', 'title', 'A'), edit(3, 'DYNAMICS', 'title', 'B')], pairs: [pair('LEAD', { title: 'B' }, { title: 'B' })] }),
    verdicts: ['violation', 'both-sides'],
    violations: ['lost-edit'],
  },
  {
    name: 'an edit replaced on its own side before any sync read it is superseded',
    input: input({ edits: [edit(1, 'MARKETO', 'title', 'A'), edit(2, 'MARKETO', 'title', 'B')], pairs: [pair('LEAD', { title: 'B' }, { title: 'B' })] }),
    verdicts: ['superseded', 'both-sides'],
    violations: [],
  },
  {
    name: 'a stale write after the later edit reached both sides loses that later edit (issue 24, the paused replica)',
    input: input({
      edits: [edit(1, 'DYNAMICS', 'title', 'D1'), edit(3, 'MARKETO', 'title', 'M2')],
      agreements: [agreed(2, 'title', 'D1', 'the sync’s write landed'), agreed(4, 'title', 'M2', 'the sync’s write landed'), agreed(5, 'title', 'D1', 'the sync’s write landed')],
      activities: [entry(5, 'UPDATED_IN_DYNAMICS', [{ field: 'title', side: 'DYNAMICS', oldValue: 'M2', newValue: 'D1' }], 'LEAD')],
      pairs: [pair('LEAD', { title: 'D1' }, { title: 'D1' })],
    }),
    verdicts: ['both-sides', 'violation'],
    violations: ['lost-edit'],
  },
  {
    name: 'the loser of a genuine collision (both sides changed since they agreed) is recorded, not lost',
    input: input({
      agreements: [agreed(1, 'title', 'old')],
      edits: [edit(2, 'DYNAMICS', 'title', 'D'), edit(3, 'MARKETO', 'title', 'M')],
      activities: [collision(3, 'LEAD', 'title', 'MARKETO', 'M', 'D', 'old')],
      pairs: [pair('LEAD', { title: 'M' }, { title: 'M' })],
    }),
    verdicts: ['collision-loser', 'both-sides'],
    violations: [],
  },
  {
    name: 'a contact collision lost by the later Marketo edit is a genuine loser',
    input: input({
      agreements: [agreed(1, 'title', 'old')],
      edits: [edit(2, 'DYNAMICS', 'title', 'D'), edit(3, 'MARKETO', 'title', 'M')],
      activities: [collision(3, 'CONTACT', 'title', 'DYNAMICS', 'D', 'M', 'old')],
      pairs: [pair('CONTACT', { title: 'D' }, { title: 'D' })],
    }),
    verdicts: ['both-sides', 'collision-loser'],
    violations: [],
  },
  {
    name: 'a Marketo automation edit right after the sync created the person, undone by a collision against an empty base, is lost',
    input: input({
      edits: [edit(1, 'DYNAMICS', 'title', 'Analyst', { what: 'create of Dynamics contact' }), edit(3, 'MARKETO', 'title', 'Automated', { actor: 'marketo-automation', race: 'edit right after create' })],
      agreements: [agreed(2, 'title', 'Analyst', 'first sight of the created person')],
      activities: [collision(3, 'CONTACT', 'title', 'DYNAMICS', 'Analyst', 'Automated', null)],
      pairs: [pair('CONTACT', { title: 'Analyst' }, { title: 'Analyst' })],
    }),
    verdicts: ['both-sides', 'violation'],
    violations: ['fake-collision', 'lost-edit'],
  },
  {
    name: 'a collision the loser did not take part in is fake even when the winner is right',
    input: input({
      edits: [edit(1, 'DYNAMICS', 'title', 'Analyst'), edit(3, 'MARKETO', 'title', 'Automated', { actor: 'marketo-automation' })],
      agreements: [agreed(2, 'title', 'Analyst', 'first sight of the created person')],
      activities: [collision(3, 'LEAD', 'title', 'MARKETO', 'Automated', 'Analyst', null)],
      pairs: [pair('LEAD', { title: 'Automated' }, { title: 'Automated' })],
    }),
    verdicts: ['superseded', 'both-sides'],
    violations: ['fake-collision'],
  },
  {
    name: 'an edit overwritten with no collision entry at all is lost',
    input: input({
      edits: [edit(1, 'MARKETO', 'title', 'Marketer'), edit(3, 'MARKETO', 'title', 'Edited', { actor: 'marketo-automation' })],
      agreements: [agreed(2, 'title', 'Marketer')],
      activities: [entry(4, 'UPDATED_IN_MARKETO', [{ field: 'title', side: 'MARKETO', oldValue: null, newValue: 'Marketer' }], 'LEAD')],
      pairs: [pair('LEAD', { title: 'Marketer' }, { title: 'Marketer' })],
    }),
    verdicts: ['both-sides', 'violation'],
    violations: ['lost-edit'],
  },
  {
    name: 'a value Dynamics refused is recorded, and the sides may differ on it',
    input: input({
      edits: [edit(1, 'MARKETO', 'title', 'REJECT me')],
      activities: [entry(1, 'VALIDATION_REJECTED', [{ field: 'title', side: 'DYNAMICS', oldValue: 'old', newValue: 'REJECT me' }], 'LEAD', 'Job title must not start with REJECT')],
      pairs: [pair('LEAD', { title: 'REJECT me' }, { title: 'old' })],
    }),
    verdicts: ['refused'],
    violations: [],
  },
  {
    name: 'a refusal logged before the edit does not excuse it',
    input: input({
      edits: [edit(5, 'MARKETO', 'title', 'REJECT me')],
      activities: [entry(1, 'VALIDATION_REJECTED', [{ field: 'title', side: 'DYNAMICS', oldValue: 'old', newValue: 'REJECT me' }], 'LEAD')],
      pairs: [pair('LEAD', { title: 'REJECT me' }, { title: 'old' })],
    }),
    verdicts: ['violation'],
    violations: ['lost-edit'],
  },
  {
    name: 'a Dataverse plug-in rewrite that never reaches Marketo is lost',
    input: input({
      edits: [edit(1, 'MARKETO', 'country', 'usa'), edit(2, 'DYNAMICS', 'country', 'United States', { actor: 'dataverse-plugin', race: 'plug-in rewrite', rewrites: 'usa' })],
      pairs: [pair('LEAD', { country: 'usa' }, { country: 'United States' })],
    }),
    verdicts: ['superseded', 'violation'],
    violations: ['lost-edit'],
  },
  {
    name: 'a collision won against the entity rule is a violation',
    input: input({
      agreements: [agreed(1, 'title', 'old')],
      edits: [edit(2, 'MARKETO', 'title', 'M'), edit(3, 'DYNAMICS', 'title', 'D')],
      activities: [collision(3, 'LEAD', 'title', 'DYNAMICS', 'D', 'M', 'old')],
      pairs: [pair('LEAD', { title: 'D' }, { title: 'D' })],
    }),
    verdicts: ['collision-loser', 'both-sides'],
    violations: ['collision-rule'],
  },
  {
    name: 'the agreement made by the collision’s own resolution write, logged just before its entry, does not make it fake',
    input: input({
      agreements: [agreed(1, 'title', 'old'), { ...agreed(4, 'title', 'D', 'the sync’s write landed'), bySyncWrite: true }],
      edits: [edit(2, 'MARKETO', 'title', 'M'), edit(3, 'DYNAMICS', 'title', 'D')],
      activities: [collision(4, 'CONTACT', 'title', 'DYNAMICS', 'D', 'M', 'old')],
      pairs: [pair('CONTACT', { title: 'D' }, { title: 'D' })],
    }),
    verdicts: ['collision-loser', 'both-sides'],
    violations: [],
  },
  {
    name: 'a collision entry committed late, after its own write and a later edit, is still judged on its own base',
    input: input({
      agreements: [agreed(1, 'title', 'old'), { ...agreed(4, 'title', 'D', 'the sync’s write landed'), bySyncWrite: true }],
      edits: [edit(2, 'MARKETO', 'title', 'M'), edit(3, 'DYNAMICS', 'title', 'D'), edit(5, 'MARKETO', 'title', 'M5')],
      activities: [collision(5, 'CONTACT', 'title', 'DYNAMICS', 'D', 'M', 'old')],
      pairs: [pair('CONTACT', { title: 'M5' }, { title: 'M5' })],
    }),
    verdicts: ['collision-loser', 'superseded', 'both-sides'],
    violations: [],
  },
  {
    name: 'a collision logged after a sync write made both sides agree and one side edited since is fake',
    input: input({
      agreements: [agreed(1, 'title', 'old'), { ...agreed(3, 'title', 'D', 'the sync’s write landed'), bySyncWrite: true }],
      edits: [edit(2, 'DYNAMICS', 'title', 'D'), edit(4, 'MARKETO', 'title', 'M')],
      activities: [collision(4, 'CONTACT', 'title', 'DYNAMICS', 'D', 'M', 'old')],
      pairs: [pair('CONTACT', { title: 'D' }, { title: 'D' })],
    }),
    verdicts: ['both-sides', 'violation'],
    violations: ['fake-collision', 'lost-edit'],
  },
  {
    name: 'a sync write that landed over an edit it never read (Marketo has no conditional write), later resolved as a collision the edit won, is a genuine collision',
    input: input({
      agreements: [agreed(1, 'title', 'old'), { ...agreed(4, 'title', 'D', 'the sync’s write landed'), bySyncWrite: true }, { ...agreed(6, 'title', 'M', 'the sync’s write landed'), bySyncWrite: true }],
      edits: [edit(2, 'DYNAMICS', 'title', 'D'), edit(3, 'MARKETO', 'title', 'M')],
      activities: [collision(6, 'LEAD', 'title', 'MARKETO', 'M', 'D', 'old')],
      pairs: [pair('LEAD', { title: 'M' }, { title: 'M' })],
    }),
    verdicts: ['collision-loser', 'both-sides'],
    violations: [],
  },
  {
    name: 'an edit a sync write overwrote unseen and no collision recovered is lost',
    input: input({
      agreements: [agreed(1, 'title', 'old'), { ...agreed(4, 'title', 'D', 'the sync’s write landed'), bySyncWrite: true }],
      edits: [edit(2, 'DYNAMICS', 'title', 'D'), edit(3, 'MARKETO', 'title', 'M')],
      pairs: [pair('LEAD', { title: 'D' }, { title: 'D' })],
    }),
    verdicts: ['both-sides', 'violation'],
    violations: ['lost-edit'],
  },
  {
    name: 'an agreement seen after the collision was logged does not make it fake',
    input: input({
      agreements: [agreed(1, 'title', 'old'), agreed(5, 'title', 'M')],
      edits: [edit(2, 'DYNAMICS', 'title', 'D'), edit(3, 'MARKETO', 'title', 'M')],
      activities: [collision(3, 'LEAD', 'title', 'MARKETO', 'M', 'D', 'old')],
      pairs: [pair('LEAD', { title: 'M' }, { title: 'M' })],
    }),
    verdicts: ['collision-loser', 'both-sides'],
    violations: [],
  },
  {
    name: 'edits of a pair filtered out or deleted are not judged',
    input: input({ edits: [edit(1, 'DYNAMICS', 'title', 'X')], pairs: [pair('CONTACT', { title: 'old' }, { title: 'X' }, { outOfScope: 'new_synctomkto is No' })] }),
    verdicts: ['out-of-scope'],
    violations: [],
  },
  {
    name: 'a field the entity does not sync is not judged',
    input: input({ edits: [edit(1, 'DYNAMICS', 'company', 'Acme')], pairs: [pair('CONTACT', {}, {})] }),
    verdicts: ['out-of-scope'],
    violations: [],
  },
  {
    name: 'sides that differ on a field nobody edited are a violation',
    input: input({ pairs: [pair('CONTACT', { city: 'Oslo' }, { city: 'Bergen' })] }),
    verdicts: [],
    violations: ['diverged'],
  },
  {
    name: 'a snapshot that disagrees with two agreeing sides is stale',
    input: input({ edits: [edit(1, 'MARKETO', 'city', 'Oslo')], pairs: [pair('LEAD', { city: 'Oslo' }, { city: 'Oslo' }, { snapshot: { city: 'Bergen' } })] }),
    verdicts: ['both-sides'],
    violations: ['stale-snapshot'],
  },
  {
    name: 'a snapshot equal to both sides is fine',
    input: input({ edits: [edit(1, 'MARKETO', 'city', 'Oslo')], pairs: [pair('LEAD', { city: 'Oslo' }, { city: 'Oslo' }, { snapshot: { city: 'Oslo', title: null } })] }),
    verdicts: ['both-sides'],
    violations: [],
  },
  {
    name: 'an edit of a record that was never linked is a violation',
    input: input({ edits: [edit(1, 'DYNAMICS', 'title', 'X', { person: null })] }),
    verdicts: ['violation'],
    violations: ['never-linked'],
  },
];

describe('the intent oracle', () => {
  it.each(rows)('$name', (row) => {
    const report = runOracle(row.input);
    const summary = JSON.stringify({ judgements: report.judgements.map((j) => [j.edit.seq, j.verdict, j.why]), violations: report.violations.map((v) => v.message) }, null, 2);
    expect(report.judgements.map((j) => j.verdict), summary).toEqual(row.verdicts);
    expect(report.violations.map((v) => v.kind).sort(), summary).toEqual([...row.violations].sort());
    expect(report.counts.violation, summary).toBe(row.verdicts.filter((v) => v === 'violation').length);
  });

  it('names the fake collision, the races and the log in a lost edit message', () => {
    const report = runOracle(rows.find((r) => r.name.startsWith('a Marketo automation edit'))!.input);
    const lost = report.violations.find((v) => v.kind === 'lost-edit')!;
    expect(lost.races).toEqual(['edit right after create']);
    expect(lost.message).toMatch(/FAKE collision COLLISION_RESOLVED#\d+ \(Dynamics \(the winner\) did not change title since both sides agreed on "Analyst"/);
    expect(lost.message).toContain('Marketo has "Analyst", Dynamics has "Analyst"');
  });

  it('finds nothing wrong when each edit reached both sides before the next and every field ends on its last edit, whatever the order of sides', () => {
    const steps = fc.array(fc.record({ side: fc.constantFrom<SyncSide>('MARKETO', 'DYNAMICS'), field: fc.constantFrom('title', 'city', 'country'), value: fc.string({ maxLength: 4 }) }), { maxLength: 25 });
    fc.assert(
      fc.property(steps, fc.constantFrom<'LEAD' | 'CONTACT'>('LEAD', 'CONTACT'), (list, entity) => {
        const edits = list.map((s, i) => edit(2 * i + 1, s.side, s.field, s.value));
        const agreements = edits.map((e) => agreed(e.seq + 1, e.field, e.value, 'the sync’s write landed'));
        const last: Record<string, FieldValue> = {};
        for (const e of edits) last[e.field] = e.value;
        const report = runOracle(input({ edits, agreements, pairs: [pair(entity, { ...last }, { ...last })] }));
        expect(report.violations).toEqual([]);
        expect(report.judgements.every((j) => j.verdict === 'both-sides' || j.verdict === 'superseded')).toBe(true);
      }),
    );
  });

  it('reports every last edit that did not end on both sides, whatever the history', () => {
    const steps = fc.array(fc.record({ side: fc.constantFrom<SyncSide>('MARKETO', 'DYNAMICS'), value: fc.stringMatching(/^[a-z]{1,4}$/) }), { minLength: 1, maxLength: 10 });
    fc.assert(
      fc.property(steps, (list) => {
        const edits = list.map((s, i) => edit(2 * i + 1, s.side, 'title', s.value));
        // every edit but the last reached both sides before the next one
        const agreements = edits.slice(0, -1).map((e) => agreed(e.seq + 1, 'title', e.value, 'the sync’s write landed'));
        const final = 'ZZZZZ';
        const report = runOracle(input({ edits, agreements, pairs: [pair('LEAD', { title: final }, { title: final })] }));
        expect(report.violations.map((v) => v.kind)).toEqual(['lost-edit']);
        expect(report.judgements.at(-1)!.verdict).toBe('violation');
      }),
    );
  });
});
