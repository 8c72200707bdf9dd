import type { Db } from '../db/database.ts';
import type { ActivityType, Prisma } from '../db/generated/client.ts';
import type { CollisionRule, FieldOutcome, Side } from './merge.ts';
import type { LinkedEntity } from './policy.ts';
import type { CanonicalValue } from './values.ts';

// The person's activity log: every link, field written, collision, refusal and failure. Built as
// plain values from the merge's outcomes, written in the same transaction as the snapshot.

export type { ActivityType };

export interface ActivityField {
  field: string;
  /** the side that was (or would have been) written */
  side: Side;
  oldValue: CanonicalValue;
  newValue: CanonicalValue;
  baseValue?: CanonicalValue | null;
  /** a collision's overwritten value: never lost */
  losingValue?: CanonicalValue;
  marketoValue?: CanonicalValue;
  dynamicsValue?: CanonicalValue;
  winner?: Side;
  rule?: CollisionRule;
}

export interface ActivityEntry {
  type: ActivityType;
  marketoId: number | null;
  entity: LinkedEntity | null;
  dynamicsId: string | null;
  linkId: string | null;
  fields: ActivityField[];
  message: string | null;
  changeEventId: string | null;
}

export interface ActivitySubject {
  marketoId: number | null;
  entity: LinkedEntity | null;
  dynamicsId: string | null;
  linkId: string | null;
  changeEventId: string | null;
}

export function activity(
  subject: ActivitySubject,
  type: ActivityType,
  message: string | null,
  fields: ActivityField[] = [],
): ActivityEntry {
  return { ...subject, type, message, fields };
}

export const sideName = (side: Side) => (side === 'MARKETO' ? 'Marketo' : 'Dynamics');

/** Entries for what a merge wrote: one update entry per side written, one per collision. */
export function activitiesForWrites(subject: ActivitySubject, outcomes: readonly FieldOutcome[]): ActivityEntry[] {
  const entries: ActivityEntry[] = [];
  for (const side of ['DYNAMICS', 'MARKETO'] as const) {
    const fields: ActivityField[] = [];
    for (const o of outcomes) {
      if (o.kind === 'update' && o.to === side) {
        fields.push({ field: o.field, side, oldValue: o.oldValue, newValue: o.newValue, baseValue: o.base ?? null });
      }
      if (o.kind === 'collision' && o.to === side) {
        fields.push({ field: o.field, side, oldValue: o.losingValue, newValue: o.newValue, baseValue: o.base ?? null });
      }
    }
    if (fields.length) {
      entries.push(
        activity(subject, side === 'DYNAMICS' ? 'UPDATED_IN_DYNAMICS' : 'UPDATED_IN_MARKETO', `updated ${fields.length} field(s) in ${sideName(side)}`, fields),
      );
    }
  }
  for (const o of outcomes) {
    if (o.kind !== 'collision') continue;
    entries.push(
      activity(
        subject,
        'COLLISION_RESOLVED',
        `${o.field} changed on both sides: ${sideName(o.winner)} wins (${o.rule}); the ${sideName(o.to)} value is kept here`,
        [
          {
            field: o.field,
            side: o.to,
            oldValue: o.losingValue,
            newValue: o.newValue,
            baseValue: o.base ?? null,
            losingValue: o.losingValue,
            marketoValue: o.marketoValue,
            dynamicsValue: o.dynamicsValue,
            winner: o.winner,
            rule: o.rule,
          },
        ],
      ),
    );
  }
  return entries;
}

/** An entry as its Activity row's columns. */
export function activityRow(e: ActivityEntry) {
  return {
    type: e.type,
    marketoId: e.marketoId,
    dynamicsEntity: e.entity,
    dynamicsId: e.dynamicsId?.toLowerCase() ?? null,
    linkId: e.linkId,
    fields: e.fields as unknown as Prisma.InputJsonValue,
    message: e.message,
    changeEventId: e.changeEventId,
  };
}

export async function recordActivities(db: Db, entries: readonly ActivityEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db.activity.createMany({ data: entries.map(activityRow) });
}
