import { randomUUID } from 'node:crypto';
import type { Database } from '../db/database.ts';
import { enqueue } from '../inbox/inbox.ts';
import { ConnectorError } from '../connectors/errors.ts';
import type { ClaimedChangeEvent } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import type { ActivitySubject } from './activities.ts';
import { openIntents, type CreateIntent } from './create-intents.ts';
import { createDynamicsCreates } from './creates.ts';
import { FencedOutError, type Fencing } from './fence.ts';
import { createSyncIO } from './io.ts';
import { pendingEntries } from './journal.ts';
import { groupEvents, leaseItems, type LeasedBatch, type Subject, type WorkItem } from './batch.ts';
import type { Link } from './links.ts';
import { unlockAll } from './locks.ts';
import type { MappingService } from './mappings.ts';
import { createPairSync } from './pair.ts';
import type { PendingEntry } from './plan.ts';
import { entityLabel, type LinkedEntity } from './policy.ts';
import type { DynamicsPort, DynamicsRecordView, MarketoPort, PersonRecord, WriteFence } from './ports.ts';
import { createProtocolStore } from './protocol.ts';
import { overwrittenIn } from './overwritten.ts';
import { createUnlinkedSync } from './unlinked.ts';
import type { Suppressions } from '../security/suppression.ts';

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
  /** how long a record lease lasts without a heartbeat (sync/leases.ts renews it while work runs): SYNC_RECORD_LOCK_SECONDS */
  lockLeaseMs: number;
  /** Marketo field set to true when the linked Dynamics record is deleted ("Microsoft is Deleted") */
  deletedFlagField: string | null;
  /** re-plans after a 412, a plug-in rewrite or a refused commit before the event is retried later */
  maxReplans?: number;
  /** aborted at shutdown: work that fails because of it is handed back, not counted as an attempt */
  signal?: AbortSignal;
  /** fences every vendor write on the record leases of the work that sends it (sync/fence.ts) */
  fencing?: Fencing;
  /** the erasure list: a batch's erased persons are neither synced nor logged (security/suppression.ts) */
  suppressions?: Suppressions;
}

export type EventOutcome =
  /** erased: the person is on the erasure list; the worker deletes the event rather than keep it */
  | { status: 'done'; linkId: string | null; note?: string; erased?: true }
  | { status: 'retry'; reason: string; retryAfterMs?: number }
  | { status: 'dead'; reason: string }
  /** another worker holds the record (or this one is stopping): try again shortly without counting an attempt */
  | { status: 'busy' };

/** What a batch read once, so that items do not each call the APIs. */
interface Prefetched {
  persons: Map<number, PersonRecord | null>;
  records: Map<string, DynamicsRecordView | null>;
  pending: Map<string, PendingEntry[]>;
  /** Sync Person's unfinished creates of the unlinked Marketo persons in the batch */
  unfinished: Map<number, CreateIntent>;
}
const QUOTA_RETRY_MS = 60 * 60_000;

function describeError(error: unknown): string {
  if (error instanceof ConnectorError) {
    return `${error.system === 'marketo' ? 'Marketo' : 'Dynamics'} ${error.kind}${error.code ? ` ${error.code}` : ''}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** How a failure while syncing one item is turned into an inbox outcome: the one place that decides. */
export function outcomeForError(error: unknown, stopping?: AbortSignal): EventOutcome {
  // shutdown cut the work's vendor calls: it goes back to the inbox without counting an attempt
  if (stopping?.aborted) return { status: 'busy' };
  // the work lost its record lease and sent nothing more: whoever holds the record now carries on
  if (error instanceof FencedOutError) return { status: 'busy' };
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
  const { lockLeaseMs } = options;
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
    requestResync: async (link, why) => {
      logger.child({ marketoId: link.marketoId, dynamicsId: link.dynamicsId }).warn(`a sync of the link is queued: ${why}`);
      await enqueue(db, {
        source: 'OPERATOR',
        origin: 'OPERATOR',
        operation: 'RESYNC',
        marketoId: link.marketoId,
        dynamicsEntity: link.entity,
        dynamicsId: link.dynamicsId,
        dedupeKey: `fenced-out:${link.id}:${randomUUID()}`,
      });
    },
  });
  const creates = createDynamicsCreates({ db, dynamics, mappings });
  const unlinked = createUnlinkedSync({ db, io, mappings, pairs, creates, leaseMs: lockLeaseMs, ...(options.fencing ? { fencing: options.fencing } : {}) });

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

  /**
   * Both sides of every item, and what earlier attempts left pending, in as few calls as possible.
   * A linked pair's Dataverse read starts when Marketo's pacing sends the call that reads its person:
   * it is back before Marketo answers (a Dataverse read takes about a third of a Marketo call), and
   * the pairs of every batch that call carries share one In-filter read, where each batch would
   * otherwise spend a request of its own the moment it was claimed.
   */
  async function prefetch(items: readonly WorkItem[]): Promise<Prefetched> {
    const result: Prefetched = { persons: new Map(), records: new Map(), pending: new Map(), unfinished: new Map() };
    const pairs = new Map<LinkedEntity, { personIds: number[]; recordIds: string[] }>();
    const unlinkedRecords = new Map<LinkedEntity, string[]>();
    const linkIds: string[] = [];
    const unlinkedPersons: number[] = [];
    for (const item of items) {
      const s = item.subject;
      if (s.kind === 'link') {
        const group = pairs.get(s.link.entity) ?? { personIds: [], recordIds: [] };
        group.personIds.push(s.link.marketoId);
        group.recordIds.push(s.link.dynamicsId);
        pairs.set(s.link.entity, group);
        linkIds.push(s.link.id);
      } else if (s.kind === 'dynamics') {
        unlinkedRecords.set(s.entity, [...(unlinkedRecords.get(s.entity) ?? []), s.id]);
      } else if (s.id >= 0) {
        unlinkedPersons.push(s.id);
      }
    }
    const keepRecords = (ids: readonly string[]) => (found: Map<string, DynamicsRecordView>) => {
      for (const id of ids) result.records.set(id, found.get(id.toLowerCase()) ?? null);
    };
    const reads: Promise<void>[] = [pendingEntries(db, linkIds).then((pending) => void (result.pending = pending))];
    // one look-up for the batch's unlinked persons, not one per person (openIntents answers [] for none)
    reads.push(
      openIntents(db.prisma, { marketoIds: unlinkedPersons }).then((open) => {
        for (const intent of open) if (intent.direction === 'TO_DYNAMICS' && intent.marketoId !== null && !result.unfinished.has(intent.marketoId)) result.unfinished.set(intent.marketoId, intent);
      }),
    );
    for (const [entity, ids] of unlinkedRecords) reads.push(io.readRecords(entity, ids).then(keepRecords(ids)));
    for (const [entity, { personIds, recordIds }] of pairs) {
      let sent!: () => void;
      const personsSent = new Promise<void>((resolve) => (sent = resolve));
      const persons = io.readPersons(entity, personIds, sent);
      reads.push(persons.then((found) => personIds.forEach((id) => result.persons.set(id, found.get(id) ?? null))));
      // a Marketo read refused before it was sent (quota, shutdown) fails this one with it
      reads.push(Promise.race([personsSent, persons]).then(() => io.readRecords(entity, recordIds).then(keepRecords(recordIds))));
    }
    await Promise.all(reads);
    return result;
  }

  async function syncLinked(link: Link, item: WorkItem, pre: Prefetched, holder: string, fence: WriteFence | undefined): Promise<EventOutcome> {
    const subject = subjectOf(link, item);
    const reads = {
      person: pre.persons.has(link.marketoId) ? pre.persons.get(link.marketoId)! : undefined,
      record: pre.records.has(link.dynamicsId) ? pre.records.get(link.dynamicsId)! : undefined,
      pending: pre.pending.get(link.id) ?? [],
    };
    const overwritten = item.events.flatMap((e) => (e.source === 'MARKETO' ? overwrittenIn(e.payload) : []));
    const outcome = await pairs.syncPair(link, reads, { subject, fromDynamics: item.events.some((e) => e.source === 'DYNAMICS'), fence, overwritten });
    if (outcome.status === 'done') return outcome;
    return unlinked.recreatePerson(outcome.link, outcome.record, subject, { holder, fence });
  }

  async function finishSyncPerson(intent: CreateIntent, item: WorkItem, fence: WriteFence | undefined): Promise<EventOutcome> {
    const result = await creates.finishToDynamics(intent, null, { ...subjectOf(null, item), entity: intent.entity }, fence);
    if (result.status !== 'created') return { status: 'done', linkId: result.status === 'refused' ? result.link.id : null, note: result.message };
    const outcome = await pairs.syncPair(result.link, { person: undefined, record: result.record, pending: [] }, { subject: subjectOf(result.link, item), fromDynamics: true, fence });
    return { status: 'done', linkId: result.link.id, ...(outcome.status === 'done' && outcome.note ? { note: outcome.note } : {}) };
  }

  /** Syncs one item whose leases are held, from reads made after they were taken. */
  async function syncItem(item: WorkItem, pre: Prefetched, holder: string, fence: WriteFence | undefined): Promise<EventOutcome> {
    try {
      const s = item.subject;
      if (s.kind === 'link') return await syncLinked(s.link, item, pre, holder, fence);
      if (s.kind === 'dynamics') {
        const record = pre.records.has(s.id) ? pre.records.get(s.id)! : await io.readRecord(s.entity, s.id);
        const created = item.events.some((e) => e.operation === 'CREATE');
        return await unlinked.syncRecord(s.entity, record, created, { holder, fence }, (link) => subjectOf(link, item));
      }
      // Unlinked Marketo persons are not pushed: only Sync Person to Microsoft creates them in
      // Dynamics, and a create it journaled and did not finish is finished here (its person's lease is held).
      const unfinished = pre.unfinished.get(s.id);
      if (unfinished) return await finishSyncPerson(unfinished, item, fence);
      return { status: 'done', linkId: null, note: 'the person is not linked to Dynamics; only Sync Person to Microsoft creates it there' };
    } catch (error) {
      if (!options.signal?.aborted) logger.child(idsOf(item.subject)).warn({ err: error, events: item.events.map((e) => e.id) }, 'sync of an item failed');
      return outcomeForError(error, options.signal);
    }
  }

  /**
   * The items about an erased person: by their ids, and by the emails just read from both systems
   * (a new record of an erased person is not matched or linked either). One statement, under the
   * items' record leases, so an erasure that finished before them is always seen.
   */
  async function erasedItems(items: readonly WorkItem[], pre: Prefetched): Promise<Set<WorkItem>> {
    const suppressions = options.suppressions;
    if (!suppressions || items.length === 0) return new Set();
    const idsOf = (item: WorkItem) => {
      const s = item.subject;
      const marketoId = s.kind === 'link' ? s.link.marketoId : s.kind === 'marketo' && s.id >= 0 ? s.id : null;
      const dynamicsId = s.kind === 'link' ? s.link.dynamicsId : s.kind === 'dynamics' ? s.id : null;
      const emails = [marketoId !== null ? pre.persons.get(marketoId)?.email : null, dynamicsId !== null ? pre.records.get(dynamicsId)?.email : null];
      return { marketoIds: [marketoId], dynamicsIds: [dynamicsId], emails };
    };
    const all = items.map(idsOf);
    const listed = await suppressions.listed({ marketoIds: all.flatMap((i) => i.marketoIds), dynamicsIds: all.flatMap((i) => i.dynamicsIds), emails: all.flatMap((i) => i.emails) });
    if (listed.size === 0) return new Set();
    const hit = (ids: ReturnType<typeof idsOf>) =>
      ids.marketoIds.some((id) => id !== null && listed.has(suppressions.hashOf('MARKETO_ID', id))) ||
      ids.dynamicsIds.some((id) => id !== null && listed.has(suppressions.hashOf('DYNAMICS_ID', id))) ||
      ids.emails.some((email) => !!email && listed.has(suppressions.hashOf('EMAIL', email)));
    return new Set(items.filter((item, i) => hit(all[i]!)));
  }

  return {
    /** Syncs a claimed batch; one outcome per event. */
    async syncBatch(events: readonly ClaimedChangeEvent[]): Promise<Map<string, EventOutcome>> {
      const outcomes = new Map<string, EventOutcome>();
      if (events.length === 0) return outcomes;
      const setAll = (item: WorkItem, outcome: EventOutcome) => item.events.forEach((e) => outcomes.set(e.id, outcome));
      let held: LeasedBatch['locked'] = [];
      try {
        const planned = await leaseItems(db, options.owner, lockLeaseMs, await groupEvents(db, events));
        held = planned.locked;
        // fenced from the moment the leases are held: a lease lost while the batch reads aborts its work
        const fences = new Map(held.map((h) => [h.holder, options.fencing?.hold(h.holder, h.keys)]));
        planned.busy.forEach((item) => setAll(item, { status: 'busy' }));
        // The link moved or was re-pointed since the events were grouped: group them again.
        planned.moved.forEach((item) => setAll(item, { status: 'busy' }));
        let pre: Prefetched;
        try {
          pre = await prefetch(held.map((h) => h.item));
        } catch (error) {
          logger.warn({ err: error, events: events.length, ...batchIds(events) }, 'reading a batch failed');
          const outcome = outcomeForError(error, options.signal);
          held.forEach((h) => setAll(h.item, outcome));
          return outcomes;
        }
        const erased = await erasedItems(held.map((h) => h.item), pre);
        await Promise.all(
          held.map(async (h) =>
            setAll(h.item, erased.has(h.item) ? { status: 'done', linkId: null, erased: true } : await syncItem(h.item, pre, h.holder, fences.get(h.holder))),
          ),
        );
      } catch (error) {
        logger.warn({ err: error, events: events.length, ...batchIds(events) }, 'syncing a batch failed');
        const outcome = outcomeForError(error, options.signal);
        for (const e of events) if (!outcomes.has(e.id)) outcomes.set(e.id, outcome);
      } finally {
        held.forEach((h) => options.fencing?.release(h.holder));
        await unlockAll(db.prisma, held);
      }
      return outcomes;
    },
    syncUserId,
  };
}

export type SyncEngine = ReturnType<typeof createSyncEngine>;
