import type { PrismaClient } from '../db/generated/client.ts';
import { activity, recordActivities, type ActivityEntry, type ActivitySubject } from './activities.ts';
import { linkOrRepoint, settleCreate, updateLink, type Link, type LinkTarget } from './links.ts';
import { entityLabel } from './policy.ts';

// Linking a person who may have a link already. A link is the memory of what both sides agreed
// on; moving it to another record with an empty base turns every later one-sided edit into a fake
// collision. So re-pointing is explicit: only a link whose Dynamics record was deleted, or that a
// qualify moved (the lead's contact), may move; the same record keeps its base per field; anything
// else is refused as "already linked" and recorded on the person.

export type RelinkDecision =
  | { kind: 'new' }
  /** the link already points at this record: its base is kept per field */
  | { kind: 'same_record' }
  | { kind: 'repoint'; why: 'deleted_in_dynamics' | 'qualified' }
  | { kind: 'refused'; message: string };

export interface RelinkTarget extends LinkTarget {
  /** the target contact's originating lead, when a qualify made it */
  originatingLeadId?: string | null | undefined;
}

/** Pure: what may happen to `existing` when its person is to be linked to `target`. */
export function decideRelink(existing: Link | null, target: Pick<RelinkTarget, 'entity' | 'dynamicsId' | 'originatingLeadId'>): RelinkDecision {
  if (!existing) return { kind: 'new' };
  const targetId = target.dynamicsId.toLowerCase();
  if (existing.dynamicsId === targetId && existing.entity === target.entity) return { kind: 'same_record' };
  if (existing.status === 'DELETED_IN_DYNAMICS') return { kind: 'repoint', why: 'deleted_in_dynamics' };
  if (existing.entity === 'LEAD' && target.entity === 'CONTACT' && target.originatingLeadId?.toLowerCase() === existing.dynamicsId) {
    return { kind: 'repoint', why: 'qualified' };
  }
  return {
    kind: 'refused',
    message: `already linked: person ${existing.marketoId} is linked to Dynamics ${entityLabel(existing.entity)} ${existing.dynamicsId}; not re-pointed to ${entityLabel(target.entity)} ${targetId}`,
  };
}

export type RelinkResult = { status: 'linked'; link: Link; decision: RelinkDecision } | { status: 'refused'; link: Link; message: string };

/**
 * Links per decideRelink, with its log entries (and the settling of its create), in one
 * transaction. A refusal is recorded as SYNC_FAILED on the person with `subject`.
 */
export async function relink(
  db: PrismaClient,
  existing: Link | null,
  target: RelinkTarget,
  entries: (link: Link) => ActivityEntry[],
  subject: ActivitySubject,
): Promise<RelinkResult> {
  const decision = decideRelink(existing, target);
  if (decision.kind === 'refused') {
    await recordActivities(db, [activity({ ...subject, linkId: existing!.id }, 'SYNC_FAILED', decision.message)]);
    return { status: 'refused', link: existing!, message: decision.message };
  }
  if (decision.kind === 'new' || (decision.kind === 'repoint' && decision.why === 'deleted_in_dynamics')) {
    return { status: 'linked', link: await linkOrRepoint(db, existing, target, entries), decision };
  }
  // Same record, or the contact a qualify made of the lead: what both sides agreed on still holds
  // field by field; the target's base only fills fields the link never agreed on.
  const link = existing!;
  const saved = await db.$transaction(async (tx) => {
    const updated = await updateLink(tx, link.id, {
      entity: target.entity,
      dynamicsId: target.dynamicsId,
      status: 'ACTIVE',
      snapshot: { ...target.snapshot, ...link.snapshot },
      fieldOrigins: { ...target.fieldOrigins, ...link.fieldOrigins },
      dynamicsEtag: target.dynamicsEtag,
      dynamicsVersion: target.dynamicsVersion,
      synced: true,
    });
    await recordActivities(tx, entries(updated));
    await settleCreate(tx, target);
    return updated;
  });
  return { status: 'linked', link: saved, decision };
}
