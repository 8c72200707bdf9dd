import { activity, type ActivityEntry, type ActivityField, type ActivitySubject } from './activities.ts';
import type { FieldRule, MergeResult } from './merge.ts';
import { normalise, sameValue, type CanonicalRecordFields, type CanonicalValue } from './values.ts';

// Marketo has no conditional write: a marketer's edit that lands between the sync's read of a
// person and its write of the same field is overwritten before any sync has seen it (DESIGN
// "Production is several replicas"; docs/write-protocol.md). Marketo's activity log keeps it: the
// sweep, which reads the lead-changes feed anyway, finds a person's change of a field followed by
// the sync's own change of that field, and hands the person to the inbox with that evidence. The
// journal then tells whether the write was planned without the edit (the entry's "old value" is
// not the edit's value); if so, the edit met the value the sync carried as a genuine collision,
// and the plan resolves it by the entity's rule as if the read had seen it. Pure: pair.ts loads
// the journal, the sweep gathers the evidence.

/** What the sweep saw in Marketo's activity log: a person set `field` to `value`, then the sync set it to `by`. */
export interface OverwrittenEdit {
  field: string;
  value: CanonicalValue;
  by: CanonicalValue;
}

/** The last committed write of a field to Marketo, as journaled: what its plan read there, wrote, and agreed before. */
export interface MarketoWriteRecord {
  oldValue: CanonicalValue;
  newValue: CanonicalValue;
  baseValue: CanonicalValue;
}

/** An overwritten edit the plan meets as Marketo's value, against the base the overwriting write was planned from. */
export interface RecoveredEdit {
  field: string;
  value: CanonicalValue;
  base: CanonicalValue;
  /** what Marketo holds now (the overwriting value) */
  holds: CanonicalValue;
}

/** The evidence an event payload carries (the sweep's `overwritten`), ignoring anything malformed. */
export function overwrittenIn(payload: unknown): OverwrittenEdit[] {
  const list = (payload as { overwritten?: unknown } | null)?.overwritten;
  if (!Array.isArray(list)) return [];
  return list.filter((e): e is OverwrittenEdit => typeof e === 'object' && e !== null && typeof (e as OverwrittenEdit).field === 'string' && 'value' in e && 'by' in e);
}

/**
 * The edits among `evidence` that were overwritten unseen and are still unresolved: the last write of
 * the field to Marketo carried exactly `by`, was planned without the edit (its old value differs),
 * and nothing changed since (both sides and the agreed value still hold `by`). Anything else was
 * seen by a plan, superseded on its own side, or is being carried by a newer change.
 */
export function recoverOverwritten(input: {
  evidence: readonly OverwrittenEdit[];
  lastWrites: ReadonlyMap<string, MarketoWriteRecord>;
  marketo: CanonicalRecordFields;
  dynamics: CanonicalRecordFields;
  snapshot: Record<string, CanonicalValue>;
  rules: readonly FieldRule[];
}): RecoveredEdit[] {
  const recovered = new Map<string, RecoveredEdit>();
  for (const e of input.evidence) {
    const rule = input.rules.find((r) => r.field === e.field);
    const write = input.lastWrites.get(e.field);
    if (!rule || !write || recovered.has(e.field)) continue;
    const same = (a: unknown, b: unknown) => sameValue(a, b, rule.type);
    const unseen = same(write.newValue, e.by) && !same(write.oldValue, e.value) && !same(e.value, e.by);
    const unchangedSince = same(input.marketo[e.field], e.by) && same(input.dynamics[e.field], e.by) && same(input.snapshot[e.field], e.by);
    if (unseen && unchangedSince) recovered.set(e.field, { field: e.field, value: normalise(e.value, rule.type), base: write.baseValue, holds: normalise(e.by, rule.type) });
  }
  return [...recovered.values()];
}

/** Marketo's values and the base as the merge should see them: the edit as if the read had found it. */
export function asIfSeen(marketo: CanonicalRecordFields, snapshot: Record<string, CanonicalValue>, recovered: readonly RecoveredEdit[]) {
  const seen = { ...marketo };
  const base = { ...snapshot };
  for (const r of recovered) {
    seen[r.field] = r.value;
    base[r.field] = r.base;
  }
  return { marketo: seen, base };
}

/**
 * The merge's writes once Marketo is known to hold the overwriting value, not the edit the merge
 * saw there: where the value agreed is not what Marketo holds (the edit won), Marketo is written
 * back too, and an entry records it.
 */
export function settleRecovered(result: MergeResult, recovered: readonly RecoveredEdit[], subject: ActivitySubject): { writes: MergeResult['writes']; entries: ActivityEntry[] } {
  const writes = { MARKETO: { ...result.writes.MARKETO }, DYNAMICS: { ...result.writes.DYNAMICS } };
  const fields: ActivityField[] = [];
  for (const r of recovered) {
    const agreed = r.field in result.snapshot ? (result.snapshot[r.field] ?? null) : r.value;
    if (r.field in writes.MARKETO || agreed === r.holds) continue;
    writes.MARKETO[r.field] = agreed;
    fields.push({ field: r.field, side: 'MARKETO', oldValue: r.holds, newValue: agreed, baseValue: r.base });
  }
  const entries = fields.length ? [activity(subject, 'UPDATED_IN_MARKETO', `put back in Marketo the edit of ${fields.map((f) => f.field).join(', ')} a sync write had overwritten (it won the collision)`, fields)] : [];
  return { writes, entries };
}

/** The plan's collision entries for recovered fields say where the edit they name came from. */
export function explainRecovered(entries: readonly ActivityEntry[], recovered: readonly RecoveredEdit[]): ActivityEntry[] {
  const fields = new Set(recovered.map((r) => r.field));
  return entries.map((e) =>
    e.type === 'COLLISION_RESOLVED' && e.fields.some((f) => fields.has(f.field))
      ? { ...e, message: `${e.message ?? ''} (the Marketo edit was overwritten by a sync write planned before it; found in Marketo's activity log)` }
      : e,
  );
}
