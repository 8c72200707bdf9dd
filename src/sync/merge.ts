import { isEmpty, normalise, sameValue, type CanonicalValue, type ValueType } from './values.ts';

// The three-way merge at the heart of the sync. Pure: it takes the link's last-synced snapshot
// and the current values on both sides, and says, per field, what to write where and why.

export type Side = 'MARKETO' | 'DYNAMICS';
export type Direction = 'BOTH' | 'MARKETO_TO_DYNAMICS' | 'DYNAMICS_TO_MARKETO';
export const otherSide = (side: Side): Side => (side === 'MARKETO' ? 'DYNAMICS' : 'MARKETO');

/** Why a value won: the entity rule, an admin's per-field override, or a one-way mapping. */
export type CollisionRule = 'LEAD_MARKETO_WINS' | 'CONTACT_DYNAMICS_WINS' | 'FIELD_OVERRIDE' | 'ONE_WAY';

export interface FieldRule {
  /** canonical field name */
  field: string;
  type: ValueType;
  direction: Direction;
  /** who wins a same-field collision, and by which rule (see policy.ts) */
  winner: Side;
  rule: CollisionRule;
  /** false when the side's metadata says the sync user may not update the field */
  writable: Record<Side, boolean>;
}

/** A value a side refused (validation) or cannot take (read-only): not retried until it changes. */
export interface BlockedValue {
  side: Side;
  value: CanonicalValue;
  reason: 'validation' | 'read_only';
  message?: string;
}

export interface MergeInput {
  rules: FieldRule[];
  /** last synced values; a missing field was never synced (new link or newly enabled field) */
  base: Record<string, CanonicalValue>;
  marketo: Record<string, CanonicalValue>;
  dynamics: Record<string, CanonicalValue>;
  blocked: Record<string, BlockedValue>;
}

export type FieldOutcome =
  | { kind: 'in_sync'; field: string; value: CanonicalValue }
  | {
      kind: 'update';
      field: string;
      /** the side that gets written */
      to: Side;
      oldValue: CanonicalValue;
      newValue: CanonicalValue;
      base: CanonicalValue | undefined;
    }
  | {
      kind: 'collision';
      field: string;
      to: Side;
      winner: Side;
      rule: CollisionRule;
      base: CanonicalValue | undefined;
      marketoValue: CanonicalValue;
      dynamicsValue: CanonicalValue;
      /** the value that was overwritten: kept in the activity log, never lost */
      losingValue: CanonicalValue;
      newValue: CanonicalValue;
    }
  | {
      kind: 'blocked';
      field: string;
      to: Side;
      value: CanonicalValue;
      reason: BlockedValue['reason'];
      /** false when this exact value was blocked before: no new activity */
      firstTime: boolean;
      /** the change that could not be made, for the activity entry */
      wanted: Extract<FieldOutcome, { kind: 'update' } | { kind: 'collision' }>;
    };

export interface MergeResult {
  outcomes: FieldOutcome[];
  writes: Record<Side, Record<string, CanonicalValue>>;
  /** the snapshot once the writes succeed */
  snapshot: Record<string, CanonicalValue>;
  /** blocked values to remember on the link (fields that are in sync again are dropped) */
  blocked: Record<string, BlockedValue>;
}

function decide(rule: FieldRule, base: CanonicalValue | undefined, m: CanonicalValue, d: CanonicalValue): FieldOutcome {
  if (sameValue(m, d, rule.type)) return { kind: 'in_sync', field: rule.field, value: m };

  const update = (to: Side): FieldOutcome => ({
    kind: 'update',
    field: rule.field,
    to,
    oldValue: to === 'MARKETO' ? m : d,
    newValue: to === 'MARKETO' ? d : m,
    base,
  });
  const collision = (winner: Side, ruleName: CollisionRule): FieldOutcome => ({
    kind: 'collision',
    field: rule.field,
    to: otherSide(winner),
    winner,
    rule: ruleName,
    base,
    marketoValue: m,
    dynamicsValue: d,
    losingValue: winner === 'MARKETO' ? d : m,
    newValue: winner === 'MARKETO' ? m : d,
  });

  const never = base === undefined;
  const mChanged = never || !sameValue(m, base, rule.type);
  const dChanged = never || !sameValue(d, base, rule.type);

  if (rule.direction !== 'BOTH') {
    // One-way: the target follows the source, whatever changed.
    const source: Side = rule.direction === 'MARKETO_TO_DYNAMICS' ? 'MARKETO' : 'DYNAMICS';
    const targetChanged = source === 'MARKETO' ? dChanged : mChanged;
    const sourceChanged = source === 'MARKETO' ? mChanged : dChanged;
    const targetValue = source === 'MARKETO' ? d : m;
    if (targetChanged && sourceChanged && !isEmpty(targetValue)) return collision(source, 'ONE_WAY');
    return update(otherSide(source));
  }

  if (never) {
    // Never synced (new link, newly enabled field): fill an empty side; otherwise the entity rule.
    if (isEmpty(m)) return update('MARKETO');
    if (isEmpty(d)) return update('DYNAMICS');
    return collision(rule.winner, rule.rule);
  }
  if (mChanged && !dChanged) return update('DYNAMICS');
  if (dChanged && !mChanged) return update('MARKETO');
  return collision(rule.winner, rule.rule);
}

/**
 * A value one side refused (or cannot take) stays on the other side, blocked. When the refusing
 * side then changes the field, its change is the newest word on it: it goes to the side that holds
 * the refused value (the refusal is already on record), instead of meeting that value again as a
 * collision whose winner cannot be written.
 */
function afterRefusal(rule: FieldRule, base: CanonicalValue | undefined, m: CanonicalValue, d: CanonicalValue, refused: BlockedValue | undefined): FieldOutcome | null {
  if (!refused || rule.direction !== 'BOTH' || sameValue(m, d, rule.type)) return null;
  const holder = otherSide(refused.side);
  const held = holder === 'MARKETO' ? m : d;
  const now = holder === 'MARKETO' ? d : m;
  if (!sameValue(held, refused.value, rule.type)) return null;
  if (base !== undefined && sameValue(now, base, rule.type)) return null;
  return { kind: 'update', field: rule.field, to: holder, oldValue: held, newValue: now, base };
}

export function merge(input: MergeInput): MergeResult {
  const outcomes: FieldOutcome[] = [];
  const writes: MergeResult['writes'] = { MARKETO: {}, DYNAMICS: {} };
  const snapshot: Record<string, CanonicalValue> = { ...input.base };
  const blocked: Record<string, BlockedValue> = {};

  for (const rule of input.rules) {
    const m = normalise(input.marketo[rule.field], rule.type);
    const d = normalise(input.dynamics[rule.field], rule.type);
    const base = rule.field in input.base ? normalise(input.base[rule.field], rule.type) : undefined;
    const outcome = afterRefusal(rule, base, m, d, input.blocked[rule.field]) ?? decide(rule, base, m, d);

    if (outcome.kind === 'in_sync') {
      snapshot[rule.field] = outcome.value;
      outcomes.push(outcome);
      continue;
    }
    if (outcome.kind === 'update' || outcome.kind === 'collision') {
      const previous = input.blocked[rule.field];
      const value = outcome.newValue;
      const refusedBefore =
        previous !== undefined && previous.side === outcome.to && sameValue(previous.value, value, rule.type);
      if (!rule.writable[outcome.to] || refusedBefore) {
        const reason = !rule.writable[outcome.to] ? 'read_only' : (previous?.reason ?? 'validation');
        blocked[rule.field] = refusedBefore ? previous : { side: outcome.to, value, reason };
        outcomes.push({ kind: 'blocked', field: rule.field, to: outcome.to, value, reason, firstTime: !refusedBefore, wanted: outcome });
        continue;
      }
      writes[outcome.to][rule.field] = value;
      snapshot[rule.field] = value;
      outcomes.push(outcome);
    }
  }
  return { outcomes, writes, snapshot, blocked };
}
