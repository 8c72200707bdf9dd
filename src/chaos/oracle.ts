// The intent oracle (issue 12): "both sides agree" is not enough, both can hold the wrong value.
// For every edit the campaign made (a person, a Marketo automation, a Dynamics workflow, a
// Dataverse plug-in) it decides, from the campaign's own edit log, the final values on both sides
// and the activity log, whether the sync kept the promise of DESIGN.md invariant 9: the value is on
// both sides, or it is the recorded loser of a GENUINE collision (both sides changed the field since
// they last agreed), or Dynamics refused it and that is recorded, or a later edit of the same field
// waived it. A later edit waives an earlier one only when it replaced it on its own side (nobody can
// carry a value its author overwrote before the sync read it), or came after the earlier one reached
// both sides (an observed agreement between the two), or is a plug-in's rewrite of that very value;
// two edits of one field on both sides with neither reaching the other first must meet as a genuine
// collision. Anything else is a violation, and so is every collision that was not genuine. Pure: no
// I/O, no clock; the campaign gathers the input.

export type SyncSide = 'MARKETO' | 'DYNAMICS';
export type FieldValue = string | number | boolean | null;
export type FieldKind = 'string' | 'email' | 'boolean';
export type Actor = 'person' | 'marketo-automation' | 'dynamics-workflow' | 'dataverse-plugin';

/** One edit the campaign made (or watched a plug-in make). */
export interface IntentEdit {
  /** position in the campaign's log: edits and agreements share one counter */
  seq: number;
  /** wall-clock ms, used only to place activity entries (which carry times) among the seqs */
  at: number;
  actor: Actor;
  side: SyncSide;
  /** the Marketo person this edit is about, as the final links say; null: never linked */
  person: number | null;
  /** canonical field name */
  field: string;
  value: FieldValue;
  /** the race ingredient that made it, if any */
  race: string | null;
  /** for messages, e.g. "create of Dynamics contact 9f3a..." */
  what: string;
  /** a synchronous plug-in's rewrite: the value it replaced inside the very write that carried it */
  rewrites?: FieldValue | undefined;
}

/**
 * A moment the campaign SAW both sides hold the same value, with no sync in flight that could
 * have read before it (settled rounds, or the first sight of a record the sync just created).
 */
export interface Agreement {
  seq: number;
  at: number;
  person: number;
  field: string;
  value: FieldValue;
  how: string;
  /** seen the moment a sync's write landed (so it may be the write of a collision logged just after) */
  bySyncWrite?: boolean | undefined;
}

/** A linked pair as it ended. */
export interface FinalPair {
  person: number;
  entity: 'LEAD' | 'CONTACT';
  dynamicsId: string;
  /** why this pair's edits are not judged (deleted, sync filter No); null: judged */
  outOfScope: string | null;
  /** canonical fields this pair syncs */
  fields: string[];
  marketo: Record<string, FieldValue>;
  dynamics: Record<string, FieldValue>;
  /** the link's snapshot (the merge base) per field, where it has one and holds no blocked value */
  snapshot?: Record<string, FieldValue>;
}

export interface LoggedField {
  field: string;
  side?: SyncSide | null;
  oldValue?: FieldValue;
  newValue?: FieldValue;
  baseValue?: FieldValue;
  losingValue?: FieldValue;
  marketoValue?: FieldValue;
  dynamicsValue?: FieldValue;
  winner?: SyncSide | null;
  rule?: string | null;
}

/** One entry of the service's activity log (GraphQL `activities`). */
export interface LoggedActivity {
  id: string;
  type: string;
  /** occurredAt in ms */
  at: number;
  marketoId: number | null;
  dynamicsEntity: 'LEAD' | 'CONTACT' | null;
  message: string | null;
  fields: LoggedField[];
}

export interface OracleInput {
  edits: IntentEdit[];
  agreements: Agreement[];
  pairs: FinalPair[];
  activities: LoggedActivity[];
  fieldKinds: Record<string, FieldKind>;
}

export type EditClass = 'both-sides' | 'superseded' | 'collision-loser' | 'refused' | 'out-of-scope' | 'violation';

export interface Judgement {
  edit: IntentEdit;
  verdict: EditClass;
  why: string;
}

export type ViolationKind = 'lost-edit' | 'fake-collision' | 'collision-rule' | 'diverged' | 'never-linked' | 'stale-snapshot';

export interface Violation {
  kind: ViolationKind;
  person: number | null;
  field: string | null;
  /** the races of the edits involved */
  races: string[];
  message: string;
}

export interface CollisionJudgement {
  activity: LoggedActivity;
  field: LoggedField;
  /** the oracle's position of the entry in the edit log (last seq at or before its time) */
  seq: number;
  genuine: boolean;
  why: string;
}

export interface OracleReport {
  judgements: Judgement[];
  collisions: CollisionJudgement[];
  counts: Record<EditClass, number>;
  violations: Violation[];
}

// ---- values, compared as SPEC.md says: "" is null, emails case-insensitively ----

function canonical(value: FieldValue | undefined, kind: FieldKind): FieldValue {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' && value.trim() === '') return null;
  if (kind === 'boolean' && typeof value === 'string') {
    if (value === 'true') return true;
    if (value === 'false') return false;
  }
  if (kind === 'email' && typeof value === 'string') return value.trim().toLowerCase();
  return value;
}

export function sameValue(a: FieldValue | undefined, b: FieldValue | undefined, kind: FieldKind): boolean {
  return canonical(a, kind) === canonical(b, kind);
}

const show = (value: FieldValue | undefined) => JSON.stringify(value ?? null);
const sideName = (side: SyncSide) => (side === 'MARKETO' ? 'Marketo' : 'Dynamics');
const key = (person: number, field: string) => `${person}:${field}`;

/** The side the default rules let win; null when an override or a one-way mapping decided. */
export function expectedWinner(entity: 'LEAD' | 'CONTACT' | null, rule: string | null | undefined): SyncSide | null {
  if (rule === 'FIELD_OVERRIDE' || rule === 'ONE_WAY') return null;
  if (entity === 'LEAD') return 'MARKETO';
  if (entity === 'CONTACT') return 'DYNAMICS';
  return null;
}

/** Places wall-clock instants among the log's seqs: the last seq logged at or before the instant. */
function positioner(input: OracleInput): (at: number) => number {
  const marks = [...input.edits.map((e) => [e.at, e.seq] as const), ...input.agreements.map((a) => [a.at, a.seq] as const)].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const highest: number[] = [];
  for (const [, seq] of marks) highest.push(Math.max(seq, highest.at(-1) ?? -1));
  return (at) => {
    let lo = 0;
    let hi = marks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (marks[mid]![0] <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? -1 : highest[lo - 1]!;
  };
}

function groupBy<T>(items: readonly T[], keyOf: (item: T) => string | null): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = keyOf(item);
    if (k === null) continue;
    const list = groups.get(k) ?? [];
    list.push(item);
    groups.set(k, list);
  }
  return groups;
}

/**
 * The last agreement before a collision entry at `seq`. The entry is stamped when it is committed,
 * after its own resolution write landed: an agreement on the winning value, seen as a sync's write
 * landed while the losing value had already been made, is that write and not the base the
 * collision was decided on. A losing value made after it is a later edit, and the collision fake.
 */
function baseOf(agreements: readonly Agreement[], edits: readonly IntentEdit[], seq: number, field: LoggedField, kind: FieldKind): Agreement | undefined {
  const before = agreements.filter((a) => a.seq <= seq);
  while (before.length > 0) {
    const last = before.at(-1)!;
    const losingMadeSince = edits.some((e) => e.seq > last.seq && e.seq <= seq && sameValue(e.value, field.losingValue, kind));
    const resolutionWrite = !losingMadeSince && field.newValue !== undefined && sameValue(last.value, field.newValue, kind);
    if (!last.bySyncWrite || !(resolutionWrite || overwroteUnseen(last, before.at(-2), edits, field, kind))) break;
    before.pop();
  }
  return before.at(-1);
}

/**
 * Did this agreement come from a sync write that landed over an edit of one of the collision's values
 * (made since the agreement before, still the last edit of its side)? Marketo has no conditional
 * write: such an edit was overwritten unseen, and a collision logged later about it (found in
 * Marketo's activity log) was decided on the base from before both, not on this agreement.
 */
function overwroteUnseen(agreement: Agreement, previous: Agreement | undefined, edits: readonly IntentEdit[], field: LoggedField, kind: FieldKind): boolean {
  const between = edits.filter((e) => e.seq > (previous?.seq ?? -Infinity) && e.seq < agreement.seq);
  return between.some(
    (e) =>
      !sameValue(e.value, agreement.value, kind) &&
      (sameValue(e.value, field.losingValue, kind) || sameValue(e.value, field.newValue, kind)) &&
      !between.some((later) => later.side === e.side && later.seq > e.seq),
  );
}

/** Is a COLLISION_RESOLVED entry genuine: did BOTH sides change the field since they last agreed? */
function judgeCollisions(input: OracleInput, place: (at: number) => number, edits: Map<string, IntentEdit[]>, agreements: Map<string, Agreement[]>): CollisionJudgement[] {
  const judged: CollisionJudgement[] = [];
  for (const activity of input.activities) {
    if (activity.type !== 'COLLISION_RESOLVED' || activity.marketoId === null) continue;
    for (const field of activity.fields) {
      const winner = field.winner ?? null;
      const seq = place(activity.at);
      if (!winner) {
        judged.push({ activity, field, seq, genuine: false, why: 'the entry names no winner' });
        continue;
      }
      const k = key(activity.marketoId, field.field);
      const agreed = baseOf(agreements.get(k) ?? [], edits.get(k) ?? [], seq, field, input.fieldKinds[field.field] ?? 'string');
      const since = agreed?.seq ?? -Infinity;
      const changed = (side: SyncSide) => (edits.get(k) ?? []).filter((e) => e.side === side && e.seq > since && e.seq <= seq);
      const base = agreed ? `since both sides agreed on ${show(agreed.value)} (${agreed.how}, #${agreed.seq})` : 'since the campaign began';
      const unchanged = (['MARKETO', 'DYNAMICS'] as const).filter((side) => changed(side).length === 0).sort((a) => (a === winner ? -1 : 1));
      if (unchanged.length === 0) {
        judged.push({ activity, field, seq, genuine: true, why: `both sides changed ${field.field} ${base}` });
      } else {
        const who = unchanged.map((side) => `${sideName(side)} (${side === winner ? 'the winner' : 'the loser'})`).join(' and ');
        judged.push({ activity, field, seq, genuine: false, why: `${who} did not change ${field.field} ${base}` });
      }
    }
  }
  return judged;
}

/** The later edit that waives `edit`, if any (see the header: own side, after it reached both sides, or a rewrite of it). */
function waiverOf(edit: IntentEdit, later: readonly IntentEdit[], agreed: readonly Agreement[], kind: FieldKind): { by: IntentEdit; why: string } | undefined {
  for (const next of later) {
    if (next.side === edit.side) return { by: next, why: `replaced on its own side (${sideName(edit.side)}) by #${next.seq} (${next.actor})` };
    if (next.rewrites !== undefined && typeof edit.value === 'string' && typeof next.rewrites === 'string' && edit.value.trim().toLowerCase() === next.rewrites.trim().toLowerCase()) {
      return { by: next, why: `rewritten by the plug-in in the write that carried it (#${next.seq})` };
    }
    const reached = agreed.find((a) => a.seq > edit.seq && a.seq < next.seq && sameValue(a.value, edit.value, kind));
    if (reached) return { by: next, why: `superseded by #${next.seq} (${next.actor}, ${sideName(next.side)}) after it reached both sides (#${reached.seq}: ${reached.how})` };
  }
  return undefined;
}

function describeEntry(a: LoggedActivity, field: string): string {
  const f = a.fields.find((x) => x.field === field);
  const values = f
    ? a.type === 'COLLISION_RESOLVED'
      ? ` winner ${f.winner ?? '?'} ${show(f.newValue)} over ${show(f.losingValue)} (base ${show(f.baseValue)}, ${f.rule ?? '?'})`
      : ` ${f.side ?? ''} ${show(f.oldValue)} -> ${show(f.newValue)} (base ${show(f.baseValue)})`
    : '';
  return `${a.type}#${a.id}${values}`;
}

interface OracleIndex {
  input: OracleInput;
  place: (at: number) => number;
  /** by person and field, in order */
  edits: Map<string, IntentEdit[]>;
  agreements: Map<string, Agreement[]>;
  /** by person */
  activities: Map<string, LoggedActivity[]>;
  pairs: Map<number, FinalPair>;
  collisions: CollisionJudgement[];
}

const racesOf = (list: readonly IntentEdit[]) => [...new Set(list.flatMap((e) => (e.race ? [e.race] : [])))];

/** Collisions the edits do not explain (fake), and collisions won against the rule. */
function collisionViolations(collisions: readonly CollisionJudgement[], edits: Map<string, IntentEdit[]>): Violation[] {
  const violations: Violation[] = [];
  for (const c of collisions) {
    const person = c.activity.marketoId!;
    const involved = (edits.get(key(person, c.field.field)) ?? []).filter((e) => e.seq <= c.seq);
    const recent = involved.slice(-3);
    if (!c.genuine) {
      violations.push({
        kind: 'fake-collision',
        person,
        field: c.field.field,
        races: racesOf(recent),
        message: `fake collision: ${describeEntry(c.activity, c.field.field)} on person ${person} (${c.activity.dynamicsEntity ?? '?'}) at ~#${c.seq}: ${c.why}; edits of ${c.field.field}: ${recent.map((e) => `#${e.seq} ${e.side} ${e.actor} ${show(e.value)}`).join(', ') || 'none'}`,
      });
    }
    const expected = expectedWinner(c.activity.dynamicsEntity, c.field.rule);
    if (expected && c.field.winner && expected !== c.field.winner) {
      violations.push({
        kind: 'collision-rule',
        person,
        field: c.field.field,
        races: racesOf(recent),
        message: `collision against the rule: ${describeEntry(c.activity, c.field.field)} on person ${person}: a ${c.activity.dynamicsEntity} collision is won by ${sideName(expected)}`,
      });
    }
  }
  return violations;
}

/** Where one edit ended: on both sides, or explained (superseded, refused, a collision's loser, out of scope), or lost. */
function judgeEdit(edit: IntentEdit, o: OracleIndex, judge: (verdict: EditClass, why: string) => void, violations: Violation[], violatedFields: Set<string>): void {
  const { input, place, edits, agreements, activities, pairs, collisions } = o;
  const label = `#${edit.seq} ${edit.actor} ${edit.what}: ${sideName(edit.side)} ${edit.field} = ${show(edit.value)}${edit.race ? ` [race: ${edit.race}]` : ''}`;
  if (edit.person === null) {
    judge('violation', 'the record was never linked to a Marketo person');
    violations.push({ kind: 'never-linked', person: null, field: edit.field, races: racesOf([edit]), message: `${label}: the record was never linked to a person, so the edit reached only one side` });
    return;
  }
  const pair = pairs.get(edit.person);
  if (!pair) {
    judge('violation', 'the person has no link at the end');
    violations.push({ kind: 'never-linked', person: edit.person, field: edit.field, races: racesOf([edit]), message: `${label}: person ${edit.person} has no link at the end` });
    return;
  }
  if (pair.outOfScope) {
    judge('out-of-scope', pair.outOfScope);
    return;
  }
  if (!pair.fields.includes(edit.field)) {
    judge('out-of-scope', `${edit.field} does not sync for a ${pair.entity.toLowerCase()}`);
    return;
  }
  const kind = input.fieldKinds[edit.field] ?? 'string';
  const m = pair.marketo[edit.field] ?? null;
  const d = pair.dynamics[edit.field] ?? null;
  if (sameValue(edit.value, m, kind) && sameValue(edit.value, d, kind)) {
    judge('both-sides', 'on both sides');
    return;
  }
  const k = key(edit.person, edit.field);
  const history = activities.get(String(edit.person)) ?? [];
  const refusal = history.find(
    (a) => a.type === 'VALIDATION_REJECTED' && place(a.at) >= edit.seq && a.fields.some((f) => f.field === edit.field && sameValue(f.newValue, edit.value, kind)),
  );
  if (refusal) {
    judge('refused', `refused by Dynamics, recorded as VALIDATION_REJECTED#${refusal.id}: ${refusal.message ?? ''}`);
    return;
  }
  const lostIn = collisions.filter(
    (c) =>
      c.activity.marketoId === edit.person &&
      c.field.field === edit.field &&
      c.seq >= edit.seq &&
      c.field.winner !== edit.side &&
      sameValue(c.field.losingValue, edit.value, kind),
  );
  const genuine = lostIn.find((c) => c.genuine);
  if (genuine) {
    judge('collision-loser', `the loser of genuine collision COLLISION_RESOLVED#${genuine.activity.id} (${genuine.why})`);
    return;
  }
  const waiver = waiverOf(
    edit,
    (edits.get(k) ?? []).filter((e) => e.seq > edit.seq),
    agreements.get(k) ?? [],
    kind,
  );
  if (waiver) {
    judge('superseded', waiver.why);
    return;
  }
  const unwaived = (edits.get(k) ?? []).filter((e) => e.seq > edit.seq);
  judge('violation', 'lost');
  violatedFields.add(k);
  const entries = history.filter((a) => a.fields.some((f) => f.field === edit.field)).sort((a, b) => a.at - b.at);
  const fake = lostIn.map((c) => `its only record is the FAKE collision COLLISION_RESOLVED#${c.activity.id} (${c.why})`);
  violations.push({
    kind: 'lost-edit',
    person: edit.person,
    field: edit.field,
    races: racesOf([edit, ...(edits.get(k) ?? [])]),
    message:
      `lost edit ${label} (person ${edit.person}, ${pair.entity.toLowerCase()} ${pair.dynamicsId}): ` +
      `Marketo has ${show(m)}, Dynamics has ${show(d)}; ` +
      (unwaived.length
        ? `the later edit(s) ${unwaived.map((e) => `#${e.seq}`).join(', ')} came from the other side before it reached both sides, and no genuine collision joined them`
        : `no later edit of ${edit.field}`) +
      `, no VALIDATION_REJECTED of it` +
      (fake.length ? `; ${fake.join('; ')}` : ', and no COLLISION_RESOLVED with it as the losing value') +
      `. Log of ${edit.field}: ${entries.map((a) => `~#${place(a.at)} ${describeEntry(a, edit.field)}`).join(' | ') || 'nothing'}` +
      `. Edits of ${edit.field}: ${(edits.get(k) ?? []).map((e) => `#${e.seq} ${e.side} ${e.actor} ${show(e.value)}${e.race ? ` [${e.race}]` : ''}`).join(', ')}`,
  });
}

/** Both sides must end equal (or a refusal explains why), even on fields no edit touched. */
function pairViolations(input: OracleInput, edits: Map<string, IntentEdit[]>, activities: Map<string, LoggedActivity[]>, violatedFields: ReadonlySet<string>): Violation[] {
  const violations: Violation[] = [];
  for (const pair of input.pairs) {
    if (pair.outOfScope) continue;
    for (const field of pair.fields) {
      const kind = input.fieldKinds[field] ?? 'string';
      const m = pair.marketo[field] ?? null;
      const d = pair.dynamics[field] ?? null;
      const base = pair.snapshot?.[field];
      if (sameValue(m, d, kind) && base !== undefined && !sameValue(base, m, kind) && !violatedFields.has(key(pair.person, field))) {
        // both sides agree, settled, yet the base says otherwise: the next edit would look like a collision
        violations.push({
          kind: 'stale-snapshot',
          person: pair.person,
          field,
          races: racesOf(edits.get(key(pair.person, field)) ?? []),
          message: `person ${pair.person} / ${pair.entity.toLowerCase()} ${pair.dynamicsId}: both sides hold ${show(m)} for ${field}, but the link's snapshot (the merge base) says ${show(base)}`,
        });
      }
      if (sameValue(m, d, kind) || violatedFields.has(key(pair.person, field))) continue;
      const explained = (activities.get(String(pair.person)) ?? []).some(
        (a) => (a.type === 'VALIDATION_REJECTED' || a.type === 'FIELD_SKIPPED') && a.fields.some((f) => f.field === field && (sameValue(f.newValue, m, kind) || sameValue(f.newValue, d, kind))),
      );
      if (explained) continue;
      violations.push({
        kind: 'diverged',
        person: pair.person,
        field,
        races: racesOf(edits.get(key(pair.person, field)) ?? []),
        message: `person ${pair.person} / ${pair.entity.toLowerCase()} ${pair.dynamicsId} differ on ${field}: Marketo ${show(m)}, Dynamics ${show(d)}, and no refusal explains it`,
      });
    }
  }
  return violations;
}

export function runOracle(input: OracleInput): OracleReport {
  const place = positioner(input);
  const edits = groupBy(
    [...input.edits].sort((a, b) => a.seq - b.seq),
    (e) => (e.person === null ? null : key(e.person, e.field)),
  );
  const agreements = groupBy(
    [...input.agreements].sort((a, b) => a.seq - b.seq),
    (a) => key(a.person, a.field),
  );
  const activities = groupBy(input.activities, (a) => (a.marketoId === null ? null : String(a.marketoId)));
  const pairs = new Map(input.pairs.map((p) => [p.person, p]));
  const collisions = judgeCollisions(input, place, edits, agreements);
  const index: OracleIndex = { input, place, edits, agreements, activities, pairs, collisions };
  const violations: Violation[] = collisionViolations(collisions, edits);
  const judgements: Judgement[] = [];
  const violatedFields = new Set<string>();
  for (const edit of [...input.edits].sort((a, b) => a.seq - b.seq)) {
    judgeEdit(edit, index, (verdict, why) => judgements.push({ edit, verdict, why }), violations, violatedFields);
  }
  violations.push(...pairViolations(input, edits, activities, violatedFields));
  const counts: Record<EditClass, number> = { 'both-sides': 0, superseded: 0, 'collision-loser': 0, refused: 0, 'out-of-scope': 0, violation: 0 };
  for (const j of judgements) counts[j.verdict]++;
  return { judgements, collisions, counts, violations };
}
