import { activitiesForWrites, activity, sideName, type ActivityEntry, type ActivityField, type ActivitySubject } from './activities.ts';
import type { FieldOrigin, Link, LinkStatus } from './links.ts';
import { merge, type BlockedValue, type FieldOutcome, type FieldRule, type MergeResult, type Side } from './merge.ts';
import { entityLabel } from './policy.ts';
import type { DynamicsRecordView, PersonRecord } from './ports.ts';
import { asIfSeen, explainRecovered, settleRecovered, type RecoveredEdit } from './overwritten.ts';
import { undoStale, withoutStale, type StaleValue } from './stale.ts';
import { isEmpty, normalise, sameValue, type CanonicalRecordFields, type CanonicalValue } from './values.ts';

// Step 1 of the write protocol (DESIGN "The write protocol"): a pure function from what the link
// remembers and what both sides hold now to everything one sync will do -- the writes per side,
// the next snapshot, every activity entry (collision losers and refusals included) and the link's
// status. The executor (pair.ts) journals the activities, applies the writes and commits the
// snapshot; it decides nothing itself.


/** Where a sync leaves a link when it commits. */
export interface LinkState {
  status: LinkStatus;
  snapshot: Record<string, CanonicalValue>;
  fieldOrigins: Record<string, FieldOrigin>;
  blocked: Record<string, BlockedValue>;
}

export interface PlanInput {
  link: Link;
  /** null: the person no longer exists in Marketo */
  person: PersonRecord | null;
  /** null: the record no longer exists in Dynamics */
  record: DynamicsRecordView | null;
  rules: readonly FieldRule[];
  /** the Marketo field set to true when the Dynamics record is deleted ("Microsoft is Deleted") */
  deletedFlagField: string | null;
  /**
   * The Dynamics record was changed by someone other than the sync since the link last synced:
   * a person deleted in Marketo comes back only then (as Marketo's own sync does).
   */
  dynamicsChangedSinceSync: boolean;
  subject: ActivitySubject;
  /** ISO time stamped on field origins */
  now: string;
  /** values late writes of fenced-out attempts put on a side (stale.ts): undone, not carried across */
  stale?: readonly StaleValue[];
  /** Marketo edits a sync write overwrote unseen (overwritten.ts): met as the collisions they were */
  recovered?: readonly RecoveredEdit[];
}

export type SyncPlan =
  /** nothing to write or record */
  | { kind: 'none'; note: string }
  /** a status change only (deleted, filtered), with its entries and perhaps a flag on the person */
  | { kind: 'status'; status: LinkStatus; activities: ActivityEntry[]; flagPerson: { id: number; field: string } | null; note: string }
  /** the person was deleted in Marketo and the Dynamics record changed since: create it again */
  | { kind: 'recreate_person' }
  /** the three-way merge: write these values, then commit `next` with these entries */
  | MergePlan;

export interface MergePlan {
  kind: 'merge';
  writes: Record<Side, CanonicalRecordFields>;
  outcomes: FieldOutcome[];
  next: LinkState;
  activities: ActivityEntry[];
}

/**
 * The link's status as a table of what was observed (SPEC "Entities and direction"): a missing
 * Dynamics record marks the link deleted there and stops everything; a missing person marks it
 * deleted in Marketo unless the record changed since; the entity's sync filter filters it; otherwise
 * it syncs.
 */
export type PairObservation = 'record_missing' | 'link_deleted_in_dynamics' | 'person_missing' | 'person_missing_record_changed' | 'filtered' | 'syncs';

export function observe(input: Pick<PlanInput, 'link' | 'person' | 'record' | 'dynamicsChangedSinceSync'>): PairObservation {
  if (!input.record) return 'record_missing';
  if (input.link.status === 'DELETED_IN_DYNAMICS') return 'link_deleted_in_dynamics';
  if (!input.person) return input.dynamicsChangedSinceSync ? 'person_missing_record_changed' : 'person_missing';
  if (input.record.syncFilter === false) return 'filtered';
  return 'syncs';
}

export function planSync(input: PlanInput): SyncPlan {
  const { link, subject } = input;
  const label = entityLabel(link.entity);
  switch (observe(input)) {
    case 'record_missing':
      if (link.status === 'DELETED_IN_DYNAMICS') return { kind: 'none', note: 'already marked deleted in Dynamics' };
      return {
        kind: 'status',
        status: 'DELETED_IN_DYNAMICS',
        activities: [activity(subject, 'DELETED_IN_DYNAMICS', `the Dynamics ${label} was deleted; the Marketo person is kept`)],
        flagPerson: input.person && input.deletedFlagField ? { id: input.person.id, field: input.deletedFlagField } : null,
        note: 'deleted in Dynamics',
      };
    case 'link_deleted_in_dynamics':
      return { kind: 'none', note: 'the Dynamics record is deleted' };
    case 'person_missing':
      if (link.status === 'DELETED_IN_MARKETO') return { kind: 'none', note: 'deleted in Marketo' };
      return {
        kind: 'status',
        status: 'DELETED_IN_MARKETO',
        activities: [activity(subject, 'DELETED_IN_MARKETO', `person ${link.marketoId} was deleted in Marketo; the Dynamics ${label} is kept`)],
        flagPerson: null,
        note: 'deleted in Marketo',
      };
    case 'person_missing_record_changed':
      return { kind: 'recreate_person' };
    case 'filtered': {
      const rule = input.record!.filterRule ?? 'new_synctomkto ne false';
      if (link.status === 'FILTERED') return { kind: 'none', note: `filtered out by ${rule}` };
      return {
        kind: 'status',
        status: 'FILTERED',
        activities: [activity(subject, 'SYNC_FILTERED', `filtered out by ${rule} on the Dynamics ${label}: updates stop; the Marketo person is kept`)],
        flagPerson: null,
        note: `filtered out by ${rule}`,
      };
    }
    case 'syncs':
      return planMerge(input, input.person!, input.record!);
  }
}

function planMerge(input: PlanInput, person: PersonRecord, record: DynamicsRecordView): MergePlan {
  const { link, subject } = input;
  const stale = input.stale ?? [];
  const recovered = input.recovered ?? [];
  const seen = withoutStale({ MARKETO: person.fields, DYNAMICS: record.fields }, stale);
  const asSeen = asIfSeen(seen.MARKETO, link.snapshot, recovered);
  const merged = merge({ rules: [...input.rules], base: asSeen.base, marketo: asSeen.marketo, dynamics: seen.DYNAMICS, blocked: link.blocked });
  const undone = undoStale(merged, stale, subject);
  const putBack = settleRecovered({ ...merged, writes: undone.writes }, recovered, subject);
  const result = { ...merged, writes: putBack.writes };
  const resumed = link.status === 'FILTERED' ? [activity(subject, 'SYNC_FILTERED', `the sync filter (${record.filterRule ?? 'new_synctomkto ne false'}) admits the record again: it syncs again`)] : [];
  const plan = fromMerge(link, result, subject, input.now, [...resumed, ...undone.entries, ...putBack.entries]);
  return recovered.length ? { ...plan, activities: explainRecovered(plan.activities, recovered) } : plan;
}

function fromMerge(link: Link, result: MergeResult, subject: ActivitySubject, now: string, extra: ActivityEntry[]): MergePlan {
  return {
    kind: 'merge',
    writes: result.writes,
    outcomes: result.outcomes,
    next: { status: 'ACTIVE', snapshot: result.snapshot, fieldOrigins: originsAfter(link, result.outcomes, now), blocked: result.blocked },
    activities: [...extra, ...activitiesForWrites(subject, result.outcomes), ...refusalActivities(subject, result.outcomes, result.blocked)],
  };
}

function originsAfter(link: Link, outcomes: readonly FieldOutcome[], at: string): Record<string, FieldOrigin> {
  const origins = { ...link.fieldOrigins };
  for (const o of outcomes) {
    if (o.kind === 'update' || o.kind === 'collision') origins[o.field] = { side: o.to === 'MARKETO' ? 'DYNAMICS' : 'MARKETO', at };
  }
  return origins;
}

/**
 * The plan once a side refused some of its writes (a Dynamics business rule, a Marketo skip): the
 * refused fields keep their old base, are remembered as blocked (not retried until the value
 * changes), and their entries become refusals. Pure: the executor calls it with what it observed.
 */
export function withRefusals(plan: MergePlan, link: Link, side: Side, refused: ReadonlyMap<string, string>, subject: ActivitySubject): MergePlan {
  if (refused.size === 0) return plan;
  const outcomes = plan.outcomes.map((o): FieldOutcome => {
    if ((o.kind === 'update' || o.kind === 'collision') && o.to === side && refused.has(o.field)) {
      return { kind: 'blocked', field: o.field, to: side, value: o.newValue, reason: 'validation', firstTime: true, wanted: o };
    }
    return o;
  });
  const snapshot = { ...plan.next.snapshot };
  const blocked = { ...plan.next.blocked };
  const writes = { ...plan.writes, [side]: { ...plan.writes[side] } };
  for (const [field, message] of refused) {
    if (field in link.snapshot) snapshot[field] = link.snapshot[field] ?? null;
    else delete snapshot[field];
    blocked[field] = { side, value: plan.writes[side][field] ?? null, reason: 'validation', message };
    delete writes[side][field];
  }
  const resumed = plan.activities.filter((a) => a.type === 'SYNC_FILTERED' || a.type === 'STALE_WRITE_UNDONE');
  return {
    kind: 'merge',
    writes,
    outcomes,
    next: { ...plan.next, snapshot, blocked, fieldOrigins: originsFor(plan.next.fieldOrigins, link, refused) },
    activities: [...resumed, ...activitiesForWrites(subject, outcomes), ...refusalActivities(subject, outcomes, blocked)],
  };
}

function originsFor(origins: Record<string, FieldOrigin>, link: Link, refused: ReadonlyMap<string, string>): Record<string, FieldOrigin> {
  const kept = { ...origins };
  for (const field of refused.keys()) {
    const before = link.fieldOrigins[field];
    if (before) kept[field] = before;
    else delete kept[field];
  }
  return kept;
}

/** One entry per side and reason for values a side refused or cannot take (first time only). */
function refusalActivities(subject: ActivitySubject, outcomes: readonly FieldOutcome[], blocked: Record<string, BlockedValue>): ActivityEntry[] {
  const entries: ActivityEntry[] = [];
  const groups = new Map<string, Extract<FieldOutcome, { kind: 'blocked' }>[]>();
  for (const o of outcomes) {
    if (o.kind !== 'blocked' || !o.firstTime) continue;
    const key = `${o.to}:${o.reason}:${blocked[o.field]?.message ?? ''}`;
    groups.set(key, [...(groups.get(key) ?? []), o]);
  }
  for (const group of groups.values()) {
    const first = group[0]!;
    const fields: ActivityField[] = group.map((o) => ({
      field: o.field,
      side: o.to,
      oldValue: o.wanted.kind === 'update' ? o.wanted.oldValue : o.wanted.losingValue,
      newValue: o.value,
      baseValue: o.wanted.base ?? null,
    }));
    const message = blocked[first.field]?.message;
    if (first.reason === 'read_only') {
      entries.push(activity(subject, 'FIELD_SKIPPED', `the sync user cannot update ${group.map((o) => o.field).join(', ')} in ${sideName(first.to)}; not written`, fields));
    } else if (first.to === 'DYNAMICS') {
      entries.push(activity(subject, 'VALIDATION_REJECTED', message ?? 'Dynamics rejected the values', fields));
    } else {
      entries.push(activity(subject, 'SYNC_FAILED', `Marketo skipped the update: ${message ?? 'no reason given'}`, fields));
    }
  }
  return entries;
}

/**
 * Fields whose stored value is not what the sync wrote: a synchronous plug-in or business rule
 * rewrote it during the write ("usa" -> "United States"). Each is a change made on that side,
 * to be carried to the other side as an ordinary one-sided change by planning again.
 */
export function rewrittenFields(written: CanonicalRecordFields, stored: CanonicalRecordFields, rules: readonly FieldRule[]): string[] {
  return Object.keys(written).filter((field) => {
    const rule = rules.find((r) => r.field === field);
    return rule !== undefined && !sameValue(written[field], stored[field], rule.type);
  });
}

/**
 * The merge base of a link whose record was just created on one side from the other's values
 * (DESIGN: "the base after a create is what was created", never empty -- an empty base turns
 * every later one-sided edit into a fake collision). Per field: the value that was sent; a field
 * that was not sent because the source had none is based on that empty value, so a default the
 * created side filled in travels back as its own change; a field that could not be sent (not
 * creatable, one-way the other way) is based on what the created side holds.
 */
export function baseAfterCreate(
  rules: readonly FieldRule[],
  source: CanonicalRecordFields,
  sent: CanonicalRecordFields,
  created: CanonicalRecordFields | null,
): Record<string, CanonicalValue> {
  const base: Record<string, CanonicalValue> = {};
  for (const rule of rules) {
    if (rule.field in sent) base[rule.field] = normalise(sent[rule.field], rule.type);
    else if (isEmpty(normalise(source[rule.field], rule.type))) base[rule.field] = null;
    else if (created) base[rule.field] = normalise(created[rule.field], rule.type);
  }
  return base;
}

/** A journaled entry of an earlier attempt that never committed, as the next sync finds it. */
export interface PendingEntry {
  id: string;
  type: ActivityEntry['type'];
  fields: ActivityField[];
  /** still PENDING (not yet settled by anyone) */
  pending: boolean;
  /** the link revision its plan was made from, until its own commit clears it (stale.ts) */
  plannedRevision: number | null;
  /** when it was journaled (epoch ms) */
  at: number;
  /** the columns of each Update webhook the sync user's writes to its Dynamics record fired since (journal.ts) */
  dynamicsEchoes?: readonly { at: string; columns: Record<string, unknown> }[];
}

/**
 * What became of the entries an earlier attempt journaled but never committed (it crashed, lost
 * its lease or failed between the writes): a write entry is final when its side shows the write
 * happened -- so a collision's loser stays on record -- and superseded otherwise; entries that
 * describe no write are superseded (the new plan records them again).
 *
 * A write is one request: it landed whole or not at all. Each field it changed is evidence: the side
 * holding the written value is for, the side still holding the value the plan read is against (had
 * the write landed, that field would show its value too), any third value says nothing (edited
 * since). It landed when some field is for and none against: a field that merely happens to hold
 * the written value (a checkbox already unticked, a default) does not outvote one the write would
 * have changed and did not.
 */
export function settlePending(
  pending: readonly PendingEntry[],
  holds: { MARKETO: CanonicalRecordFields | null; DYNAMICS: CanonicalRecordFields | null },
  rules: readonly FieldRule[],
): { final: string[]; superseded: string[] } {
  const final: string[] = [];
  const superseded: string[] = [];
  const writeTypes = new Set(['UPDATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS', 'COLLISION_RESOLVED']);
  for (const entry of pending) {
    let evidenceFor = false;
    let evidenceAgainst = false;
    for (const f of writeTypes.has(entry.type) ? entry.fields : []) {
      const values = holds[f.side];
      const rule = rules.find((r) => r.field === f.field);
      if (values === null || rule === undefined || sameValue(f.oldValue, f.newValue, rule.type)) continue;
      if (sameValue(values[f.field], f.newValue, rule.type)) evidenceFor = true;
      else if (sameValue(values[f.field], f.oldValue, rule.type)) evidenceAgainst = true;
    }
    (evidenceFor && !evidenceAgainst ? final : superseded).push(entry.id);
  }
  return { final, superseded };
}
