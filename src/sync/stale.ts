import { activity, type ActivityEntry, type ActivitySubject } from './activities.ts';
import { otherSide, type FieldRule, type MergeResult, type Side } from './merge.ts';
import type { PendingEntry } from './plan.ts';
import type { PersonFieldChange } from './ports.ts';
import { normalise, sameValue, type CanonicalRecordFields, type CanonicalValue } from './values.ts';

// The journal's half of fenced writes (DESIGN "Production is several replicas"). Marketo has no
// conditional write, so a write that passed its fence can still land after its worker lost the
// lease (a pause between the fence and the wire, a slow call) and after another worker committed
// newer values. Such a write is recognisable: its journal entry was planned from an older link
// revision and never committed by its own worker, and the side now holds exactly the value it
// wrote, which is neither the value both sides last agreed on nor what the other side holds (two
// sides that hold the same value agree, whoever wrote it). The plan then treats that side as
// still holding the agreed value (so a real edit on the other side still wins), writes the agreed
// value back, and records what happened. Pure: the executor (pair.ts) loads and retires entries.

/**
 * How far Dataverse's clock (an echo's OperationCreatedOn) may be behind ours. Small on purpose: an
 * echo of an earlier write of the same value taken for this one would invent a landing, while an
 * echo missed only leaves the collision the sides show.
 */
export const DYNAMICS_CLOCK_SKEW_MS = 1_000;

/** How long after it was journaled a write of a worker that lost its lease may still land. */
export const STALE_WRITE_WINDOW_MS = 15 * 60_000;

/** Entry types that describe a write to one side, whose fields carry the side and the value written. */
export const WRITE_ENTRY_TYPES: ReadonlySet<ActivityEntry['type']> = new Set(['UPDATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS', 'STALE_WRITE_UNDONE']);

/** A value a late write of another attempt put on a side, and the agreed value to put back. */
export interface StaleValue {
  side: Side;
  field: string;
  stale: CanonicalValue;
  restore: CanonicalValue;
}

export interface StaleWrites {
  stale: StaleValue[];
  /** entries no longer in doubt: their write came back and is undone, or their window has passed */
  retire: string[];
}

/**
 * The late writes among `inDoubt` (journaled write entries whose own commit never happened), given
 * the link's revision and agreed values and what both sides hold now.
 */
export function findStaleWrites(input: {
  inDoubt: readonly PendingEntry[];
  revision: number;
  snapshot: Record<string, CanonicalValue>;
  holds: Record<Side, CanonicalRecordFields | null>;
  rules: readonly FieldRule[];
  nowMs: number;
  windowMs?: number;
}): StaleWrites {
  const windowMs = input.windowMs ?? STALE_WRITE_WINDOW_MS;
  const stale = new Map<string, StaleValue>();
  const retire: string[] = [];
  for (const entry of input.inDoubt) {
    // planned from the revision the link is still at: the pending-entry settlement's case, not this one
    if (entry.plannedRevision === null || entry.plannedRevision >= input.revision || !WRITE_ENTRY_TYPES.has(entry.type)) continue;
    let cameBack = false;
    for (const f of entry.fields) {
      const rule = input.rules.find((r) => r.field === f.field);
      const holds = input.holds[f.side];
      const other = input.holds[otherSide(f.side)];
      if (!rule || !holds || !other || !(f.field in input.snapshot)) continue;
      const agreed = normalise(input.snapshot[f.field], rule.type);
      const now = normalise(holds[f.field], rule.type);
      const lateWrite = sameValue(now, f.newValue, rule.type) && !sameValue(now, agreed, rule.type);
      if (lateWrite && !sameValue(now, other[f.field], rule.type)) {
        stale.set(`${f.side}:${f.field}`, { side: f.side, field: f.field, stale: now, restore: agreed });
        cameBack = true;
      }
    }
    if (cameBack || input.nowMs - entry.at > windowMs) retire.push(entry.id);
  }
  return { stale: [...stale.values()], retire };
}

/** Both sides' values as the merge should see them: a stale value reads as the agreed one. */
export function withoutStale(holds: Record<Side, CanonicalRecordFields>, stale: readonly StaleValue[]): Record<Side, CanonicalRecordFields> {
  const seen = { MARKETO: { ...holds.MARKETO }, DYNAMICS: { ...holds.DYNAMICS } };
  for (const s of stale) seen[s.side][s.field] = s.restore;
  return seen;
}

/**
 * The merge's writes once stale values are undone: a field the merge found in sync (the other side
 * kept the agreed value) gets the agreed value written back to the stale side; a field the other side
 * changed is already written there by the merge. One entry records every value undone.
 */
export function undoStale(result: MergeResult, stale: readonly StaleValue[], subject: ActivitySubject): { writes: MergeResult['writes']; entries: ActivityEntry[] } {
  if (stale.length === 0) return { writes: result.writes, entries: [] };
  const writes = { MARKETO: { ...result.writes.MARKETO }, DYNAMICS: { ...result.writes.DYNAMICS } };
  const fields = stale.map((s) => {
    if (!(s.field in writes[s.side]) && result.outcomes.some((o) => o.field === s.field && o.kind === 'in_sync')) writes[s.side][s.field] = s.restore;
    return { field: s.field, side: s.side, oldValue: s.stale, newValue: s.field in writes[s.side] ? (writes[s.side][s.field] ?? null) : s.restore, baseValue: s.restore };
  });
  const message = `a write sent by a worker that had lost its record lease landed over newer values (${stale.map((s) => s.field).join(', ')}); the agreed values are put back`;
  return { writes, entries: [activity(subject, 'STALE_WRITE_UNDONE', message, fields)] };
}

/**
 * How far Marketo's clock (activity dates, whole seconds) may trail the database's (journal times)
 * for a change in Marketo's activity log still to count as the write journaled at that time.
 */
export const MARKETO_CLOCK_SKEW_MS = 5_000;

/** The pending entries whose Marketo writes only Marketo's activity log can show landed: their value is not there now. */
export function unwitnessedMarketoWrites(pending: readonly PendingEntry[], landed: ReadonlySet<string>): PendingEntry[] {
  return pending.filter((e) => !landed.has(e.id) && (e.type === 'UPDATED_IN_MARKETO' || e.type === 'COLLISION_RESOLVED') && e.fields.some((f) => f.side === 'MARKETO'));
}

/**
 * The entries among `candidates` whose write Marketo's activity log shows landed: the sync's own API
 * user changed one of the entry's fields to the value it wrote, no earlier than the entry was
 * journaled. Such a write's answer was lost (a timeout, a 5xx after Marketo applied it) and a
 * person has changed the field since, so Marketo no longer shows the value: without this witness
 * the base would stay from before the write, and that person's later edit would meet it as a
 * collision instead of a one-sided change. Pure.
 */
export function witnessedMarketoWrites(candidates: readonly PendingEntry[], changes: readonly PersonFieldChange[], rules: readonly FieldRule[], skewMs = MARKETO_CLOCK_SKEW_MS): string[] {
  return candidates
    .filter((entry) =>
      entry.fields.some((f) => {
        const rule = rules.find((r) => r.field === f.field);
        if (f.side !== 'MARKETO' || !rule || sameValue(f.oldValue, f.newValue, rule.type)) return false;
        return changes.some((c) => c.bySync && c.field === f.field && c.at >= entry.at - skewMs && sameValue(c.value, f.newValue, rule.type));
      }),
    )
    .map((e) => e.id);
}

/** An Update webhook of the sync user's own write: when Dataverse ran it, and its columns canonical. */
export interface DynamicsEcho {
  atMs: number;
  fields: CanonicalRecordFields;
}

/** The pending Dynamics write entries not seen landed that an echo could witness. */
export function unwitnessedDynamicsWrites(pending: readonly PendingEntry[], landed: ReadonlySet<string>): PendingEntry[] {
  return pending.filter(
    (e) =>
      !landed.has(e.id) &&
      (e.type === 'UPDATED_IN_DYNAMICS' || e.type === 'COLLISION_RESOLVED') &&
      e.fields.some((f) => f.side === 'DYNAMICS') &&
      (e.dynamicsEchoes?.length ?? 0) > 0,
  );
}

/**
 * The entries among `candidates` whose write an echo shows landed: an Update the sync user ran no
 * earlier than the entry was journaled set every Dynamics field the entry changed to the value it
 * wrote (one request carries them all; an echo holding only some is another write's).
 * Dataverse applied such a write but its answer was lost (a timeout, a 5xx, a `$batch` whose
 * response never came), and a person has changed the field since, so the record no longer shows
 * the value. Without this witness the base would stay from before the write, and that person's
 * later edit would meet it as a collision instead of a one-sided change. Pure.
 */
export function witnessedDynamicsWrites(
  candidates: readonly PendingEntry[],
  echoesOf: (entry: PendingEntry) => readonly DynamicsEcho[],
  rules: readonly FieldRule[],
  skewMs = DYNAMICS_CLOCK_SKEW_MS,
): string[] {
  return candidates
    .filter((entry) => {
      const changed = entry.fields.flatMap((f) => {
        const rule = rules.find((r) => r.field === f.field);
        return f.side === 'DYNAMICS' && rule && !sameValue(f.oldValue, f.newValue, rule.type) ? [{ f, rule }] : [];
      });
      // the echo of this write carries every column it set: one that shares a value with it is another write
      return (
        changed.length > 0 &&
        echoesOf(entry).some((echo) => echo.atMs >= entry.at - skewMs && changed.every(({ f, rule }) => f.field in echo.fields && sameValue(echo.fields[f.field], f.newValue, rule.type)))
      );
    })
    .map((e) => e.id);
}
