import type { Database } from '../db/database.ts';
import { ConnectorError } from '../connectors/errors.ts';
import type { ClaimedChangeEvent } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import type { ActivitySubject } from './activities.ts';
import { createSyncIO } from './io.ts';
import { pendingEntries } from './journal.ts';
import { findLinks, type Link } from './links.ts';
import { lockHolder, personKey, recordKey, tryLockEach, unlockAll } from './locks.ts';
import type { MappingService } from './mappings.ts';
import { createPairSync } from './pair.ts';
import type { PendingEntry } from './plan.ts';
import type { LinkedEntity } from './policy.ts';
import type { DynamicsPort, DynamicsRecordView, MarketoPort, PersonRecord } from './ports.ts';
import { createProtocolStore } from './protocol.ts';
import { createUnlinkedSync } from './unlinked.ts';

// The batch half of the engine: group a claimed batch's events by the person they concern, take
// each group's record leases, read both sides for the whole batch at once (after the leases, so
// nothing stale is merged), and hand each group to the protocol's executor (pair.ts for linked
// pairs, unlinked.ts for records not linked yet). Everything is safe to repeat: a redelivery
// re-reads, re-plans and finds nothing to do.

export interface EngineOptions {
  db: Database;
  marketo: MarketoPort;
  dynamics: DynamicsPort;
  mappings: MappingService;
  logger: Logger;
  /** this replica's name; each piece of work holds its leases under a unique name derived from it */
  owner: string;
  /** how long a record lease lasts without a heartbeat (sync/leases.ts renews it while work runs) */
  lockLeaseMs?: number;
  /** Marketo field set to true when the linked Dynamics record is deleted ("Microsoft is Deleted") */
  deletedFlagField: string | null;
  /** re-plans after a 412, a plug-in rewrite or a refused commit before the event is retried later */
  maxReplans?: number;
  /** aborted at shutdown: work that fails because of it is handed back, not counted as an attempt */
  signal?: AbortSignal;
}

export type EventOutcome =
  | { status: 'done'; linkId: string | null; note?: string }
  | { status: 'retry'; reason: string; retryAfterMs?: number }
  | { status: 'dead'; reason: string }
  /** another worker holds the record (or this one is stopping): try again shortly without counting an attempt */
  | { status: 'busy' };

type Subject = { kind: 'link'; link: Link } | { kind: 'dynamics'; entity: LinkedEntity; id: string } | { kind: 'marketo'; id: number };

interface WorkItem {
  subject: Subject;
  events: ClaimedChangeEvent[];
}

/** What a batch read once, so that items do not each call the APIs. */
interface Prefetched {
  persons: Map<number, PersonRecord | null>;
  records: Map<string, DynamicsRecordView | null>;
  pending: Map<string, PendingEntry[]>;
}
const QUOTA_RETRY_MS = 60 * 60_000;

function describeError(error: unknown): string {
  if (error instanceof ConnectorError) {
    return `${error.system === 'marketo' ? 'Marketo' : 'Dynamics'} ${error.kind}${error.code ? ` ${error.code}` : ''}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** How a failure while syncing one item is turned into an inbox outcome: the one place that decides. */
export function outcomeForError(error: unknown): EventOutcome {
  if (error instanceof ConnectorError) {
    switch (error.kind) {
      case 'rate_limited':
      case 'transient':
      case 'auth':
      case 'conflict':
      case 'not_found':
      case 'forbidden': // access changed under us: metadata is refreshed and the next attempt respects it
        return { status: 'retry', reason: describeError(error), ...(error.retryAfterMs ? { retryAfterMs: error.retryAfterMs } : {}) };
      case 'quota_exhausted':
        return { status: 'retry', reason: describeError(error), retryAfterMs: error.retryAfterMs ?? QUOTA_RETRY_MS };
      default:
        return { status: 'dead', reason: describeError(error) };
    }
  }
  // Unknown failures (a database hiccup, a bug) are retried and dead-lettered after the last attempt.
  return { status: 'retry', reason: describeError(error) };
}

const entityLabel = (entity: LinkedEntity) => (entity === 'LEAD' ? 'lead' : 'contact');

/** The ids of every person a failed batch was about, for its log line. */
function batchIds(events: readonly ClaimedChangeEvent[]): { marketoIds: number[]; dynamicsIds: string[] } {
  return { marketoIds: events.flatMap((e) => (e.marketoId !== null ? [e.marketoId] : [])), dynamicsIds: events.flatMap((e) => (e.dynamicsId ? [e.dynamicsId] : [])) };
}

/** The person's ids for log lines about it (child logger bindings). */
function idsOf(s: Subject): { marketoId?: number; dynamicsEntity?: string; dynamicsId?: string } {
  if (s.kind === 'link') return { marketoId: s.link.marketoId, dynamicsEntity: entityLabel(s.link.entity), dynamicsId: s.link.dynamicsId };
  if (s.kind === 'dynamics') return { dynamicsEntity: entityLabel(s.entity), dynamicsId: s.id };
  return s.id >= 0 ? { marketoId: s.id } : {};
}

export function createSyncEngine(options: EngineOptions) {
  const { db, marketo, dynamics, mappings, logger } = options;
  const lockLeaseMs = options.lockLeaseMs ?? 15_000;
  let syncUser: Promise<string> | undefined;
  const syncUserId = () => {
    syncUser ??= dynamics.syncUserId();
    syncUser.catch(() => (syncUser = undefined));
    return syncUser;
  };
  const io = createSyncIO({ marketo, dynamics, mappings });
  const pairs = createPairSync({
    db,
    io,
    protocol: createProtocolStore(db),
    mappings,
    deletedFlagField: options.deletedFlagField,
    syncUserId,
    ...(options.maxReplans !== undefined ? { maxReplans: options.maxReplans } : {}),
  });
  const unlinked = createUnlinkedSync({ db, io, mappings, pairs, leaseMs: lockLeaseMs });

  function subjectOf(link: Link | null, item: WorkItem): ActivitySubject {
    const changeEventId = item.events[0]?.id ?? null;
    if (link) return { marketoId: link.marketoId, entity: link.entity, dynamicsId: link.dynamicsId, linkId: link.id, changeEventId };
    const s = item.subject;
    return {
      marketoId: s.kind === 'marketo' ? s.id : null,
      entity: s.kind === 'dynamics' ? s.entity : null,
      dynamicsId: s.kind === 'dynamics' ? s.id : null,
      linkId: null,
      changeEventId,
    };
  }

  /** Groups a batch's events by the link (or the unlinked record) they concern. */
  async function group(events: readonly ClaimedChangeEvent[]): Promise<WorkItem[]> {
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

  /** Both sides of every item, and what earlier attempts left pending, in as few calls as possible. */
  async function prefetch(items: readonly WorkItem[]): Promise<Prefetched> {
    const result: Prefetched = { persons: new Map(), records: new Map(), pending: new Map() };
    const reads: Promise<void>[] = [];
    const personIds = new Map<LinkedEntity, number[]>();
    const linkIds: string[] = [];
    for (const item of items) {
      const s = item.subject;
      if (s.kind === 'link') {
        const ids = personIds.get(s.link.entity) ?? [];
        ids.push(s.link.marketoId);
        personIds.set(s.link.entity, ids);
        linkIds.push(s.link.id);
        reads.push(io.readRecord(s.link.entity, s.link.dynamicsId).then((r) => void result.records.set(s.link.dynamicsId, r)));
      } else if (s.kind === 'dynamics') {
        reads.push(io.readRecord(s.entity, s.id).then((r) => void result.records.set(s.id, r)));
      }
    }
    for (const [entity, ids] of personIds) {
      reads.push(
        io.readPersons(entity, ids).then((persons) => {
          for (const id of ids) result.persons.set(id, persons.get(id) ?? null);
        }),
      );
    }
    reads.push(pendingEntries(db, linkIds).then((pending) => void (result.pending = pending)));
    await Promise.all(reads);
    return result;
  }

  async function syncLinked(link: Link, item: WorkItem, pre: Prefetched): Promise<EventOutcome> {
    const subject = subjectOf(link, item);
    const reads = {
      person: pre.persons.has(link.marketoId) ? pre.persons.get(link.marketoId)! : undefined,
      record: pre.records.has(link.dynamicsId) ? pre.records.get(link.dynamicsId)! : undefined,
      pending: pre.pending.get(link.id) ?? [],
    };
    const outcome = await pairs.syncPair(link, reads, subject, item.events.some((e) => e.source === 'DYNAMICS'));
    if (outcome.status === 'done') return outcome;
    return unlinked.recreatePerson(outcome.link, outcome.record, subject);
  }

  /** A failure's outcome; while stopping, the work is handed back without counting an attempt. */
  const failed = (error: unknown): EventOutcome => (options.signal?.aborted ? { status: 'busy' } : outcomeForError(error));

  function lockKeysOf(item: WorkItem): string[] {
    const s = item.subject;
    if (s.kind === 'link') return [personKey(s.link.marketoId), recordKey(s.link.dynamicsId)];
    if (s.kind === 'dynamics') return [recordKey(s.id)];
    return [personKey(s.id)];
  }

  /** Syncs one item whose leases are held, from reads made after they were taken. */
  async function syncItem(item: WorkItem, pre: Prefetched, holder: string): Promise<EventOutcome> {
    try {
      const s = item.subject;
      if (s.kind === 'link') return await syncLinked(s.link, item, pre);
      if (s.kind === 'dynamics') {
        const record = pre.records.has(s.id) ? pre.records.get(s.id)! : await io.readRecord(s.entity, s.id);
        const created = item.events.some((e) => e.operation === 'CREATE');
        return await unlinked.syncRecord(s.entity, record, created, holder, (link) => subjectOf(link, item));
      }
      // Unlinked Marketo persons are not pushed: only Sync Person to Microsoft creates them in Dynamics.
      return { status: 'done', linkId: null, note: 'the person is not linked to Dynamics; only Sync Person to Microsoft creates it there' };
    } catch (error) {
      if (!options.signal?.aborted) logger.child(idsOf(item.subject)).warn({ err: error, events: item.events.map((e) => e.id) }, 'sync of an item failed');
      return failed(error);
    }
  }

  /**
   * Takes each item's leases, then reloads its link: everything the merge reads (link snapshot,
   * both records) must be read after the lease is held, or a sync that finished meanwhile would
   * be undone from stale values. Items whose records are busy elsewhere come back as `busy`.
   */
  async function lockItems(items: WorkItem[]): Promise<{ locked: { item: WorkItem; holder: string; keys: string[] }[]; busy: WorkItem[]; moved: WorkItem[] }> {
    const attempts = items.map((item) => ({ item, keys: lockKeysOf(item), holder: lockHolder(options.owner) }));
    const held = await tryLockEach(db.prisma, attempts, lockLeaseMs);
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

  return {
    /** Syncs a claimed batch; one outcome per event. */
    async syncBatch(events: readonly ClaimedChangeEvent[]): Promise<Map<string, EventOutcome>> {
      const outcomes = new Map<string, EventOutcome>();
      if (events.length === 0) return outcomes;
      const setAll = (item: WorkItem, outcome: EventOutcome) => item.events.forEach((e) => outcomes.set(e.id, outcome));
      let held: Awaited<ReturnType<typeof lockItems>>['locked'] = [];
      try {
        const planned = await lockItems(await group(events));
        held = planned.locked;
        planned.busy.forEach((item) => setAll(item, { status: 'busy' }));
        // The link moved or was re-pointed since the events were grouped: group them again.
        planned.moved.forEach((item) => setAll(item, { status: 'busy' }));
        let pre: Prefetched;
        try {
          pre = await prefetch(held.map((h) => h.item));
        } catch (error) {
          logger.warn({ err: error, events: events.length, ...batchIds(events) }, 'reading a batch failed');
          const outcome = failed(error);
          held.forEach((h) => setAll(h.item, outcome));
          return outcomes;
        }
        await Promise.all(held.map(async (h) => setAll(h.item, await syncItem(h.item, pre, h.holder))));
      } catch (error) {
        logger.warn({ err: error, events: events.length, ...batchIds(events) }, 'syncing a batch failed');
        const outcome = failed(error);
        for (const e of events) if (!outcomes.has(e.id)) outcomes.set(e.id, outcome);
      } finally {
        await unlockAll(db.prisma, held);
      }
      return outcomes;
    },
    syncUserId,
  };
}

export type SyncEngine = ReturnType<typeof createSyncEngine>;
