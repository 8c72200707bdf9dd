import type { Database } from '../db/database.ts';
import { enqueue, type ClaimedChangeEvent, type NewChangeEvent } from '../inbox/inbox.ts';
import { activity, recordActivities, type ActivityEntry, type ActivitySubject } from './activities.ts';
import type { EventOutcome } from './engine.ts';
import { findLinks, updateLink, type Link } from './links.ts';
import { lockHolder, personKey, recordKey, tryLock, unlock } from './locks.ts';
import { entityLabel, type LinkedEntity } from './policy.ts';

// A merge on either side joins two records into one: the merged-away one (Marketo's loser, which
// is removed; Dataverse's subordinate, which is deactivated) stops being a place a person lives.
// Its link moves to the survivor and keeps what both sides agreed on per field: the other side's
// record is the same, so the next sync (queued here) applies the survivor's values by the usual
// rules. Two linked pairs joined into one survivor are a conflict: nothing is picked silently, the
// conflict is logged on every link involved, for an operator to settle.

export const MERGED = 'MERGED';

export type MergeNotice =
  /** Marketo's Merge Leads (activity 32, or POST /leads/{winner}/merge.json): the losers are removed */
  | { side: 'MARKETO'; winnerId: number; loserIds: number[] }
  /** Dataverse's Merge message: Target (the master) survives, SubordinateId is deactivated */
  | { side: 'DYNAMICS'; entity: LinkedEntity; masterId: string; subordinateId: string };

/** The inbox event of a merge: the survivor's ids on the row, the merged-away ones in the payload. */
export function mergedEvent(notice: MergeNotice, from: { origin: NewChangeEvent['origin']; dedupeKey: string; payload?: Record<string, unknown> }): NewChangeEvent {
  if (notice.side === 'MARKETO') {
    return { source: 'MARKETO', origin: from.origin, operation: MERGED, marketoId: notice.winnerId, payload: { ...from.payload, mergedIds: notice.loserIds }, dedupeKey: from.dedupeKey };
  }
  return {
    source: 'DYNAMICS',
    origin: from.origin,
    operation: MERGED,
    dynamicsEntity: notice.entity,
    dynamicsId: notice.masterId.toLowerCase(),
    payload: { ...from.payload, subordinateId: notice.subordinateId.toLowerCase() },
    dedupeKey: from.dedupeKey,
  };
}

export function mergeNoticeOf(event: Pick<ClaimedChangeEvent, 'source' | 'marketoId' | 'dynamicsEntity' | 'dynamicsId' | 'payload'>): MergeNotice | null {
  const payload = (event.payload ?? {}) as { mergedIds?: unknown; subordinateId?: unknown };
  if (event.source === 'MARKETO' && event.marketoId !== null && Array.isArray(payload.mergedIds)) {
    const loserIds = payload.mergedIds.filter((id): id is number => Number.isInteger(id) && id !== event.marketoId);
    return loserIds.length ? { side: 'MARKETO', winnerId: event.marketoId, loserIds } : null;
  }
  if (event.source === 'DYNAMICS' && event.dynamicsEntity && event.dynamicsId && typeof payload.subordinateId === 'string') {
    return { side: 'DYNAMICS', entity: event.dynamicsEntity, masterId: event.dynamicsId.toLowerCase(), subordinateId: payload.subordinateId.toLowerCase() };
  }
  return null;
}

/** Parses Marketo's "Merge IDs" attribute: the losers' ids (its exact format is unconfirmed, so any separator). */
export function parseMergeIds(value: unknown): number[] {
  if (typeof value === 'number') return Number.isInteger(value) ? [value] : [];
  if (typeof value !== 'string') return [];
  return [...new Set((value.match(/\d+/g) ?? []).map(Number).filter((id) => Number.isSafeInteger(id) && id > 0))];
}

export type MergeDecision =
  /** no merged-away record was linked: the survivor's own link (if any) just syncs its new values */
  | { kind: 'nothing_linked'; survivor: Link | null }
  /** the merged-away record's link moves to the survivor */
  | { kind: 'move'; link: Link }
  /** more than one linked pair would end on the survivor: nothing moves */
  | { kind: 'conflict'; links: Link[]; message: string };

const personName = (id: number) => `person ${id}`;
const recordName = (link: Pick<Link, 'entity' | 'dynamicsId'>) => `${entityLabel(link.entity)} ${link.dynamicsId}`;
const pairName = (link: Link) => `${personName(link.marketoId)} <-> ${recordName(link)}`;

/** Pure: what a merge does to the links of the survivor and the merged-away records. */
export function decideMerge(notice: MergeNotice, links: readonly Link[]): MergeDecision {
  const survivorOf = (l: Link) => (notice.side === 'MARKETO' ? l.marketoId === notice.winnerId : l.dynamicsId === notice.masterId.toLowerCase());
  const mergedOf = (l: Link) => (notice.side === 'MARKETO' ? notice.loserIds.includes(l.marketoId) : l.dynamicsId === notice.subordinateId.toLowerCase());
  const survivor = links.find(survivorOf) ?? null;
  const merged = links.filter(mergedOf);
  if (merged.length === 0) return { kind: 'nothing_linked', survivor };
  if (merged.length === 1 && !survivor) return { kind: 'move', link: merged[0]! };
  const involved = [...(survivor ? [survivor] : []), ...merged];
  const what =
    notice.side === 'MARKETO'
      ? `Marketo merged ${notice.loserIds.map(personName).join(', ')} into ${personName(notice.winnerId)}`
      : `Dynamics merged ${entityLabel(notice.entity)} ${notice.subordinateId} into ${entityLabel(notice.entity)} ${notice.masterId}`;
  return {
    kind: 'conflict',
    links: involved,
    message: `merge conflict: ${what}, and ${involved.length} linked pairs would end on one ${notice.side === 'MARKETO' ? 'person' : 'record'} (${involved.map(pairName).join('; ')}); no link was moved: settle it by hand (keep one pair, relink or delete the other)`,
  };
}

/** The link as the move leaves it: the survivor's id, the agreed values kept per field. */
export function movedLink(notice: MergeNotice, link: Link) {
  if (notice.side === 'MARKETO') {
    // the person was removed, not the link's record: a link marked deleted in Marketo lives again
    return { marketoId: notice.winnerId, marketoVersion: null, ...(link.status === 'DELETED_IN_MARKETO' ? { status: 'ACTIVE' as const } : {}) };
  }
  return { dynamicsId: notice.masterId, dynamicsEtag: null, dynamicsVersion: null };
}

function moveMessage(notice: MergeNotice, link: Link): string {
  return notice.side === 'MARKETO'
    ? `${personName(link.marketoId)} was merged into ${personName(notice.winnerId)} in Marketo: the link to ${recordName(link)} moved to ${personName(notice.winnerId)}; the agreed values are kept per field and the survivor's values sync by the usual rules`
    : `${entityLabel(notice.entity)} ${link.dynamicsId} was merged into ${entityLabel(notice.entity)} ${notice.masterId} in Dynamics (it is deactivated): ${personName(link.marketoId)} now syncs with the master; the agreed values are kept per field`;
}

export interface MergeHandlerOptions {
  db: Database;
  /** this replica's name: the handler holds record leases under a name derived from it */
  owner: string;
  leaseMs: number;
  /** wakes the inbox worker once the follow-up sync is queued */
  notify: () => void;
}

export function createMergeHandler(options: MergeHandlerOptions) {
  const { db } = options;

  function keysOf(notice: MergeNotice, links: readonly Link[]): string[] {
    const ids =
      notice.side === 'MARKETO'
        ? { persons: [notice.winnerId, ...notice.loserIds], records: [] as string[] }
        : { persons: [] as number[], records: [notice.masterId, notice.subordinateId] };
    return [...new Set([...[...ids.persons, ...links.map((l) => l.marketoId)].map(personKey), ...[...ids.records, ...links.map((l) => l.dynamicsId)].map(recordKey)])];
  }

  const linksOf = (notice: MergeNotice) =>
    notice.side === 'MARKETO'
      ? findLinks(db.prisma, { marketoIds: [notice.winnerId, ...notice.loserIds] })
      : findLinks(db.prisma, { dynamicsIds: [notice.masterId, notice.subordinateId] });

  /** The survivor's link syncs next, from fresh reads of both sides (the ordinary path). */
  async function resync(link: Link, event: ClaimedChangeEvent): Promise<void> {
    await enqueue(db.prisma, {
      source: 'OPERATOR',
      origin: event.origin,
      operation: 'RESYNC',
      marketoId: link.marketoId,
      dynamicsEntity: link.entity,
      dynamicsId: link.dynamicsId,
      payload: { afterMerge: event.id },
      dedupeKey: `merged:${event.id}:resync`,
    });
    options.notify();
  }

  async function apply(notice: MergeNotice, decision: MergeDecision, event: ClaimedChangeEvent): Promise<EventOutcome> {
    const subjectOf = (link: Link): ActivitySubject => ({ marketoId: link.marketoId, entity: link.entity, dynamicsId: link.dynamicsId, linkId: link.id, changeEventId: event.id });
    switch (decision.kind) {
      case 'nothing_linked':
        if (decision.survivor) await resync(decision.survivor, event);
        return { status: 'done', linkId: decision.survivor?.id ?? null, note: 'no merged-away record was linked' };
      case 'conflict': {
        const entries: ActivityEntry[] = decision.links.map((l) => activity(subjectOf(l), 'MERGE_CONFLICT', decision.message));
        await db.prisma.$transaction(async (tx) => {
          await recordActivities(tx, entries);
          // a Marketo loser is gone: its link stops syncing, as a deleted person's does
          if (notice.side === 'MARKETO') {
            for (const l of decision.links) if (notice.loserIds.includes(l.marketoId) && l.status !== 'DELETED_IN_MARKETO') await updateLink(tx, l.id, { status: 'DELETED_IN_MARKETO' });
          }
        });
        return { status: 'done', linkId: null, note: decision.message };
      }
      case 'move': {
        const link = decision.link;
        const moved = await db.prisma.$transaction(async (tx) => {
          const updated = await updateLink(tx, link.id, movedLink(notice, link));
          // logged under the ids before the move: the person's and the record's timelines both show it
          await recordActivities(tx, [activity({ ...subjectOf(link), linkId: updated.id }, 'LINK_MOVED', moveMessage(notice, link))]);
          return updated;
        });
        await resync(moved, event);
        return { status: 'done', linkId: moved.id };
      }
    }
  }

  return {
    /** Handles a MERGED event: moves a link, records a conflict, or only re-syncs the survivor. */
    async handle(event: ClaimedChangeEvent): Promise<EventOutcome> {
      const notice = mergeNoticeOf(event);
      if (!notice) return { status: 'dead', reason: 'a MERGED event without its merged-away records (bug)' };
      const holder = lockHolder(options.owner);
      const keys = keysOf(notice, await linksOf(notice));
      if (!(await tryLock(db.prisma, keys, holder, options.leaseMs))) return { status: 'busy' };
      try {
        // read again under the leases: a sync that moved a link meanwhile is seen
        const links = await linksOf(notice);
        const extra = keysOf(notice, links).filter((k) => !keys.includes(k));
        if (extra.length) return { status: 'busy' };
        return await apply(notice, decideMerge(notice, links), event);
      } finally {
        await unlock(db.prisma, keys, holder);
      }
    },
  };
}

export type MergeHandler = ReturnType<typeof createMergeHandler>;
