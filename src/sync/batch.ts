import type { Database } from '../db/database.ts';
import type { ClaimedChangeEvent } from '../inbox/inbox.ts';
import { findLinks, type Link } from './links.ts';
import { lockHolder, personKey, recordKey, tryLockEach, unlockAll } from './locks.ts';
import type { LinkedEntity } from './policy.ts';

// A claimed batch as work items: its events grouped by the person they concern, each group under
// the record leases of its person and Dynamics record. The engine (engine.ts) syncs the items.

export type Subject = { kind: 'link'; link: Link } | { kind: 'dynamics'; entity: LinkedEntity; id: string } | { kind: 'marketo'; id: number };

export interface WorkItem {
  subject: Subject;
  events: ClaimedChangeEvent[];
}

export interface LeasedBatch {
  locked: { item: WorkItem; holder: string; keys: string[] }[];
  /** another worker holds one of the item's records */
  busy: WorkItem[];
  /** linked or re-pointed since the events were grouped: group them again */
  moved: WorkItem[];
}

/** Groups a batch's events by the link (or the unlinked record) they concern. */
export async function groupEvents(db: Database, events: readonly ClaimedChangeEvent[]): Promise<WorkItem[]> {
  const links = await findLinks(db.prisma, {
    marketoIds: events.flatMap((e) => (e.marketoId !== null ? [e.marketoId] : [])),
    dynamicsIds: events.flatMap((e) => (e.dynamicsId !== null ? [e.dynamicsId] : [])),
  });
  const byMarketo = new Map(links.map((l) => [l.marketoId, l]));
  const byDynamics = new Map(links.map((l) => [l.dynamicsId, l]));
  const items = new Map<string, WorkItem>();
  for (const event of events) {
    const dynamicsId = event.dynamicsId?.toLowerCase() ?? null;
    const link = (dynamicsId ? byDynamics.get(dynamicsId) : undefined) ?? (event.marketoId !== null ? byMarketo.get(event.marketoId) : undefined);
    let key: string;
    let subject: Subject;
    if (link) {
      key = `link:${link.id}`;
      subject = { kind: 'link', link };
    } else if (dynamicsId && event.dynamicsEntity) {
      key = recordKey(dynamicsId);
      subject = { kind: 'dynamics', entity: event.dynamicsEntity, id: dynamicsId };
    } else if (event.marketoId !== null) {
      key = personKey(event.marketoId);
      subject = { kind: 'marketo', id: event.marketoId };
    } else {
      key = `event:${event.id}`;
      subject = { kind: 'marketo', id: -1 };
    }
    const item = items.get(key) ?? { subject, events: [] };
    item.events.push(event);
    items.set(key, item);
  }
  return [...items.values()];
}

function lockKeysOf(item: WorkItem): string[] {
  const s = item.subject;
  if (s.kind === 'link') return [personKey(s.link.marketoId), recordKey(s.link.dynamicsId)];
  if (s.kind === 'dynamics') return [recordKey(s.id)];
  return [personKey(s.id)];
}

/**
 * Takes each item's leases, then reloads its link: everything the merge reads (link snapshot,
 * both records) must be read after the lease is held, or a sync that finished meanwhile would
 * be undone from stale values. Items whose records are busy elsewhere come back as `busy`.
 */
export async function leaseItems(db: Database, owner: string, leaseMs: number, items: WorkItem[]): Promise<LeasedBatch> {
  const attempts = items.map((item) => ({ item, keys: lockKeysOf(item), holder: lockHolder(owner) }));
  const held = await tryLockEach(db.prisma, attempts, leaseMs);
  const locked = attempts.filter((a) => held.has(a.holder));
  const busy = attempts.filter((a) => !held.has(a.holder)).map((a) => a.item);
  const subjects = locked.map((a) => a.item.subject);
  const fresh = await findLinks(db.prisma, {
    marketoIds: subjects.flatMap((s) => (s.kind === 'link' ? [s.link.marketoId] : s.kind === 'marketo' ? [s.id] : [])),
    dynamicsIds: subjects.flatMap((s) => (s.kind === 'dynamics' ? [s.id] : [])),
  });
  const byId = new Map(fresh.map((l) => [l.id, l]));
  const linkedPersons = new Set(fresh.map((l) => l.marketoId));
  const linkedRecords = new Set(fresh.map((l) => l.dynamicsId));
  const moved: WorkItem[] = [];
  const kept = locked.filter((a) => {
    const s = a.item.subject;
    // Linked since the events were grouped (another event created the link): group them again,
    // as a link, under the link's leases.
    if (s.kind === 'dynamics' && linkedRecords.has(s.id)) {
      moved.push(a.item);
      return false;
    }
    if (s.kind === 'marketo' && linkedPersons.has(s.id)) {
      moved.push(a.item);
      return false;
    }
    if (s.kind !== 'link') return true;
    const current = byId.get(s.link.id);
    if (current && current.marketoId === s.link.marketoId && current.dynamicsId === s.link.dynamicsId) {
      a.item.subject = { kind: 'link', link: current };
      return true;
    }
    moved.push(a.item);
    return false;
  });
  await unlockAll(db.prisma, locked.filter((a) => !kept.includes(a)));
  return { locked: kept, busy, moved };
}

