import type { Database } from '../db/database.ts';
import { ConnectorError } from '../connectors/errors.ts';
import type { ClaimedChangeEvent } from '../inbox/inbox.ts';
import type { Logger } from '../logger.ts';
import {
  activitiesForWrites,
  activity,
  recordActivities,
  type ActivityEntry,
  type ActivityField,
  type ActivitySubject,
} from './activities.ts';
import { findLink, findLinks, linkOrRepoint, saveSyncedLinks, updateLink, type FieldOrigin, type Link, type LinkUpdate, type SyncedLinkState } from './links.ts';
import { lockHolder, personKey, recordKey, tryLock, tryLockEach, unlock, unlockAll } from './locks.ts';
import type { EntityMapping, MappingService } from './mappings.ts';
import { createCoalescer } from './coalesce.ts';
import { merge, type BlockedValue, type FieldOutcome, type MergeResult, type Side } from './merge.ts';
import type { LinkedEntity } from './policy.ts';
import type { DynamicsPort, DynamicsRecordView, MarketoPort, PersonRecord, PersonWriteResult } from './ports.ts';
import type { CanonicalRecordFields } from './values.ts';

// The orchestrating half of the engine: one work item per person/record, read both sides, merge,
// write only what changed (Dynamics first, with If-Match), then advance the link and log it in one
// transaction. Reads and Marketo writes of a batch are coalesced into as few calls as the APIs
// allow. Everything here is safe to repeat: a redelivery re-reads, re-merges and finds nothing to do.

export interface EngineOptions {
  db: Database;
  marketo: MarketoPort;
  dynamics: DynamicsPort;
  mappings: MappingService;
  logger: Logger;
  /** this replica's name; each piece of work holds its leases under a unique name derived from it */
  owner: string;
  /** how long a record lease lasts; longer than any single sync takes */
  lockLeaseMs?: number;
  /** Marketo field set to true when the linked Dynamics record is deleted ("Microsoft is Deleted") */
  deletedFlagField: string | null;
  /** how often a 412 re-read and re-merge is tried before the event is retried later */
  maxConflictRetries?: number;
}

export type EventOutcome =
  | { status: 'done'; linkId: string | null; note?: string }
  | { status: 'retry'; reason: string; retryAfterMs?: number }
  | { status: 'dead'; reason: string }
  /** another worker holds the record: try again shortly without counting an attempt */
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
  const lockLeaseMs = options.lockLeaseMs ?? 120_000;
  const maxConflictRetries = options.maxConflictRetries ?? 3;
  let syncUser: Promise<string> | undefined;
  const syncUserId = () => {
    syncUser ??= dynamics.syncUserId();
    syncUser.catch(() => (syncUser = undefined));
    return syncUser;
  };

  function subjectOf(link: Link | null, item: WorkItem, changeEventId: string | null): ActivitySubject {
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
  async function plan(events: readonly ClaimedChangeEvent[]): Promise<WorkItem[]> {
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

  // Dataverse reads of all concurrent work (every item of every batch in flight) share calls: see
  // coalesce.ts. Marketo's client does the same for its reads and writes, filling each call when
  // its rate limiter admits it. One coalescer per entity, since each has its own field bindings.
  const perEntity = <T>(make: (entity: LinkedEntity) => T) => {
    const made = new Map<LinkedEntity, T>();
    return (entity: LinkedEntity) => {
      let value = made.get(entity);
      if (!value) made.set(entity, (value = make(entity)));
      return value;
    };
  };
  const recordReader = perEntity((entity) =>
    createCoalescer<string, DynamicsRecordView>(
      async (ids) => dynamics.readRecords(entity, ids, (await mappings.forEntity(entity)).bindings),
      { maxBatch: 100, maxInFlight: 4 },
    ),
  );
  const personFinder = perEntity((entity) =>
    createCoalescer<string, PersonRecord>(
      async (emails) => marketo.findPersonsByEmail(emails, (await mappings.forEntity(entity)).bindings),
      { maxBatch: 100, maxInFlight: 2 },
    ),
  );
  const readPersons = async (entity: LinkedEntity, ids: number[]) => marketo.readPersons(ids, (await mappings.forEntity(entity)).bindings);
  const readPerson = async (entity: LinkedEntity, id: number) => (await readPersons(entity, [id])).get(id) ?? null;
  const readRecord = async (entity: LinkedEntity, id: string) => (await recordReader(entity).load(id)) ?? null;
  async function writePerson(entity: LinkedEntity, id: number, fields: CanonicalRecordFields): Promise<PersonWriteResult | undefined> {
    const [result] = await marketo.updatePersons([{ id, fields }], (await mappings.forEntity(entity)).bindings);
    return result;
  }

  async function prefetch(items: readonly WorkItem[]): Promise<Prefetched> {
    const result: Prefetched = { persons: new Map(), records: new Map() };
    const reads: Promise<void>[] = [];
    const personIds = new Map<LinkedEntity, number[]>();
    for (const item of items) {
      const s = item.subject;
      if (s.kind === 'link') {
        const ids = personIds.get(s.link.entity) ?? [];
        ids.push(s.link.marketoId);
        personIds.set(s.link.entity, ids);
        reads.push(readRecord(s.link.entity, s.link.dynamicsId).then((r) => void result.records.set(s.link.dynamicsId, r)));
      } else if (s.kind === 'dynamics') {
        reads.push(readRecord(s.entity, s.id).then((r) => void result.records.set(s.id, r)));
      }
    }
    for (const [entity, ids] of personIds) {
      reads.push(
        readPersons(entity, ids).then((persons) => {
          for (const id of ids) result.persons.set(id, persons.get(id) ?? null);
        }),
      );
    }
    await Promise.all(reads);
    return result;
  }

  async function persist(link: Link, update: LinkUpdate, entries: ActivityEntry[]): Promise<Link> {
    return db.prisma.$transaction(async (tx) => {
      const saved = await updateLink(tx, link.id, update);
      await recordActivities(tx, entries);
      return saved;
    });
  }

  // The final save of every sync in flight goes out together, one statement per flush. Should the
  // statement fail (a link deleted meanwhile), each is saved on its own: no other sync loses its log.
  type SyncSave = { link: Link; state: SyncedLinkState; entries: ActivityEntry[] };
  const syncedSaver = createCoalescer<SyncSave, Error | null>(
    async (saves) => {
      try {
        const saved = await saveSyncedLinks(db, saves.map((s) => ({ linkId: s.link.id, state: s.state, entries: s.entries })));
        return new Map(saves.map((s) => [s, saved.has(s.link.id) ? null : new Error(`link ${s.link.id} no longer exists`)]));
      } catch {
        const one = (s: SyncSave) =>
          persist(s.link, { ...s.state, synced: true }, s.entries).then(
            () => null,
            (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
          );
        return new Map(await Promise.all(saves.map(async (s) => [s, await one(s)] as const)));
      }
    },
    { maxBatch: 500, maxInFlight: 2 },
  );
  async function saveSynced(link: Link, state: SyncedLinkState, entries: ActivityEntry[]): Promise<void> {
    const error = await syncedSaver.load({ link, state, entries });
    if (error) throw error;
  }

  function originsAfter(link: Link, outcomes: readonly FieldOutcome[], at: string): Record<string, FieldOrigin> {
    const origins = { ...link.fieldOrigins };
    for (const o of outcomes) {
      if (o.kind === 'update' || o.kind === 'collision') origins[o.field] = { side: o.to === 'MARKETO' ? 'DYNAMICS' : 'MARKETO', at };
    }
    return origins;
  }

  /** Writes Dynamics; a validation refusal is narrowed to the fields that cause it (the rest still sync). */
  async function writeDynamics(
    link: Link,
    mapping: EntityMapping,
    record: DynamicsRecordView,
    writes: CanonicalRecordFields,
  ): Promise<{ record: DynamicsRecordView; rejected: Map<string, string> }> {
    const rejected = new Map<string, string>();
    try {
      return { record: await dynamics.update(link.entity, link.dynamicsId, writes, mapping.bindings, record.etag), rejected };
    } catch (error) {
      if (!(error instanceof ConnectorError) || error.kind !== 'validation') throw error;
      const fields = Object.keys(writes);
      if (fields.length === 1) {
        rejected.set(fields[0]!, error.message);
        return { record, rejected };
      }
      let current = record;
      for (const field of fields) {
        try {
          current = await dynamics.update(link.entity, link.dynamicsId, { [field]: writes[field] ?? null }, mapping.bindings, current.etag);
        } catch (fieldError) {
          if (fieldError instanceof ConnectorError && fieldError.kind === 'validation') rejected.set(field, fieldError.message);
          else throw fieldError;
        }
      }
      return { record: current, rejected };
    }
  }

  /** Turns the writes a side refused into blocked outcomes, so the snapshot and the log say what happened. */
  function withRefusals(result: MergeResult, base: Link['snapshot'], side: Side, refused: Map<string, string>, reason: BlockedValue['reason']): MergeResult {
    if (refused.size === 0) return result;
    const outcomes = result.outcomes.map((o): FieldOutcome => {
      if ((o.kind === 'update' || o.kind === 'collision') && o.to === side && refused.has(o.field)) {
        return { kind: 'blocked', field: o.field, to: side, value: o.newValue, reason, firstTime: true, wanted: o };
      }
      return o;
    });
    const snapshot = { ...result.snapshot };
    const blocked = { ...result.blocked };
    const writes = { ...result.writes, [side]: { ...result.writes[side] } };
    for (const [field, message] of refused) {
      if (field in base) snapshot[field] = base[field] ?? null;
      else delete snapshot[field];
      delete writes[side][field];
      blocked[field] = { side, value: result.writes[side][field] ?? null, reason, message };
    }
    return { outcomes, writes, snapshot, blocked };
  }

  function refusalActivities(subject: ActivitySubject, outcomes: readonly FieldOutcome[], blocked: Record<string, BlockedValue>): ActivityEntry[] {
    const entries: ActivityEntry[] = [];
    const firstTime = outcomes.filter((o): o is Extract<FieldOutcome, { kind: 'blocked' }> => o.kind === 'blocked' && o.firstTime);
    const bySideAndReason = new Map<string, typeof firstTime>();
    for (const o of firstTime) {
      const key = `${o.to}:${o.reason}:${blocked[o.field]?.message ?? ''}`;
      bySideAndReason.set(key, [...(bySideAndReason.get(key) ?? []), o]);
    }
    for (const group of bySideAndReason.values()) {
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
        entries.push(
          activity(subject, 'FIELD_SKIPPED', `the sync user cannot update ${group.map((o) => o.field).join(', ')} in ${first.to === 'MARKETO' ? 'Marketo' : 'Dynamics'}; not written`, fields),
        );
      } else if (first.to === 'DYNAMICS') {
        entries.push(activity(subject, 'VALIDATION_REJECTED', message ?? 'Dynamics rejected the values', fields));
      } else {
        entries.push(activity(subject, 'SYNC_FAILED', `Marketo skipped the update: ${message ?? 'no reason given'}`, fields));
      }
    }
    return entries;
  }

  /** The heart: sync one linked pair. */
  async function syncLink(link: Link, item: WorkItem, pre: Prefetched): Promise<EventOutcome> {
    const eventId = item.events[0]?.id ?? null;
    const subject = subjectOf(link, item, eventId);
    const mapping = await mappings.forEntity(link.entity);
    let person = pre.persons.has(link.marketoId) ? pre.persons.get(link.marketoId)! : await readPerson(link.entity, link.marketoId);
    let record = pre.records.has(link.dynamicsId) ? pre.records.get(link.dynamicsId)! : await readRecord(link.entity, link.dynamicsId);

    if (!record) return dynamicsDeleted(link, person, subject);
    if (link.status === 'DELETED_IN_DYNAMICS') return { status: 'done', linkId: link.id, note: 'the Dynamics record is deleted' };
    if (!person) return marketoDeleted(link, record, item, subject, mapping);
    if (link.status === 'DELETED_IN_MARKETO') {
      link = await persist(link, { status: 'ACTIVE' }, []);
    }

    const entries: ActivityEntry[] = [];
    if (record.syncFilter === false) {
      if (link.status !== 'FILTERED') {
        await persist(link, { status: 'FILTERED' }, [
          activity(subject, 'SYNC_FILTERED', `new_synctomkto is No on the Dynamics ${entityLabel(link.entity)}: updates stop; the Marketo person is kept`),
        ]);
      }
      return { status: 'done', linkId: link.id, note: 'filtered by new_synctomkto' };
    }
    let status = link.status;
    if (status === 'FILTERED') {
      status = 'ACTIVE';
      entries.push(activity(subject, 'SYNC_FILTERED', 'new_synctomkto is Yes again: the record syncs again'));
    }

    for (let attempt = 0; ; attempt++) {
      let result = merge({ rules: mapping.rules, base: link.snapshot, marketo: person.fields, dynamics: record.fields, blocked: link.blocked });
      if (Object.keys(result.writes.DYNAMICS).length > 0) {
        try {
          const written = await writeDynamics(link, mapping, record, result.writes.DYNAMICS);
          record = written.record;
          result = withRefusals(result, link.snapshot, 'DYNAMICS', written.rejected, 'validation');
        } catch (error) {
          if (error instanceof ConnectorError && error.kind === 'conflict' && attempt < maxConflictRetries) {
            // Someone changed the record since we read it: read it again and merge again.
            record = await readRecord(link.entity, link.dynamicsId);
            if (!record) return dynamicsDeleted(link, person, subject);
            continue;
          }
          if (error instanceof ConnectorError && error.kind === 'forbidden') mappings.invalidate(link.entity);
          throw error;
        }
      }
      if (Object.keys(result.writes.MARKETO).length > 0) {
        const written = (await writePerson(link.entity, link.marketoId, result.writes.MARKETO)) ?? {
          status: 'skipped' as const,
          id: link.marketoId,
          reasons: [{ code: 'none', message: 'Marketo returned no result for the record' }],
        };
        if (written.status === 'skipped') {
          const message = written.reasons.map((r) => `${r.code} ${r.message}`).join('; ') || 'skipped';
          const refused = new Map(Object.keys(result.writes.MARKETO).map((f) => [f, message]));
          result = withRefusals(result, link.snapshot, 'MARKETO', refused, 'validation');
        } else {
          person = { ...person, fields: { ...person.fields, ...result.writes.MARKETO } };
        }
      }
      const at = new Date().toISOString();
      entries.push(...activitiesForWrites(subject, result.outcomes), ...refusalActivities(subject, result.outcomes, result.blocked));
      await saveSynced(
        link,
        {
          status,
          snapshot: result.snapshot,
          fieldOrigins: originsAfter(link, result.outcomes, at),
          blocked: result.blocked,
          dynamicsEtag: record.etag,
          dynamicsVersion: record.version,
          marketoVersion: person.updatedAt,
        },
        entries,
      );
      return { status: 'done', linkId: link.id };
    }
  }

  async function dynamicsDeleted(link: Link, person: PersonRecord | null, subject: ActivitySubject): Promise<EventOutcome> {
    if (link.status === 'DELETED_IN_DYNAMICS') return { status: 'done', linkId: link.id, note: 'already marked deleted in Dynamics' };
    let flagged = '';
    if (person && options.deletedFlagField) {
      const result = await marketo.setPersonField(person.id, options.deletedFlagField, true);
      flagged = result.status === 'skipped' ? ` (could not set ${options.deletedFlagField}: ${result.reasons.map((r) => r.message).join('; ')})` : `; ${options.deletedFlagField} = true`;
    }
    await persist(link, { status: 'DELETED_IN_DYNAMICS', synced: true }, [
      activity(subject, 'DELETED_IN_DYNAMICS', `the Dynamics ${entityLabel(link.entity)} was deleted; the Marketo person is kept${flagged}`),
    ]);
    return { status: 'done', linkId: link.id };
  }

  async function marketoDeleted(
    link: Link,
    record: DynamicsRecordView,
    item: WorkItem,
    subject: ActivitySubject,
    mapping: EntityMapping,
  ): Promise<EventOutcome> {
    // Marketo never deletes CRM data. The person comes back only when the Dynamics record changes
    // after the deletion (as Marketo's own sync does), not because we noticed the deletion.
    const changedInDynamics =
      item.events.some((e) => e.source === 'DYNAMICS') &&
      record.modifiedBy !== (await syncUserId()) &&
      (link.lastSyncedAt === null || Date.parse(record.modifiedOn) > link.lastSyncedAt.getTime());
    if (link.status !== 'DELETED_IN_MARKETO' && !changedInDynamics) {
      await persist(link, { status: 'DELETED_IN_MARKETO', synced: true }, [
        activity(subject, 'DELETED_IN_MARKETO', `person ${link.marketoId} was deleted in Marketo; the Dynamics ${entityLabel(link.entity)} is kept`),
      ]);
      return { status: 'done', linkId: link.id };
    }
    if (!changedInDynamics) return { status: 'done', linkId: link.id, note: 'deleted in Marketo' };
    const created = await createPersonFrom(record, mapping);
    if (created.status !== 'created') {
      await persist(link, {}, [activity(subject, 'SYNC_FAILED', `could not re-create the person in Marketo: ${created.message}`)]);
      return { status: 'done', linkId: link.id };
    }
    const moved = await persist(link, { marketoId: created.id, status: 'ACTIVE', snapshot: {}, blocked: {}, synced: true }, [
      activity({ ...subject, marketoId: created.id }, 'CREATED_IN_MARKETO', `re-created in Marketo as person ${created.id} (person ${link.marketoId} had been deleted there) after the Dynamics ${entityLabel(link.entity)} changed`),
    ]);
    return syncLink(moved, item, { persons: new Map(), records: new Map([[record.id, record]]) });
  }

  async function createPersonFrom(
    record: DynamicsRecordView,
    mapping: EntityMapping,
  ): Promise<{ status: 'created'; id: number } | { status: 'failed'; message: string }> {
    if (!record.email) return { status: 'failed', message: 'the Dynamics record has no email (emailaddress1) to create or match a person by' };
    const fields: CanonicalRecordFields = {};
    for (const rule of mapping.rules) {
      const value = record.fields[rule.field];
      if (rule.writable.MARKETO && rule.direction !== 'MARKETO_TO_DYNAMICS' && value !== null && value !== undefined) fields[rule.field] = value;
    }
    const emailField = mapping.bindings.find((b) => b.dynamicsAttribute === 'emailaddress1')?.field ?? 'email';
    fields[emailField] = record.email;
    const [result = { status: 'skipped' as const, id: null, reasons: [] }] = await marketo.createPersons([fields], mapping.bindings);
    if (result.status === 'created' && result.id !== null) return { status: 'created', id: result.id };
    return { status: 'failed', message: result.reasons.map((r) => `${r.code} ${r.message}`).join('; ') || `Marketo answered ${result.status}` };
  }

  /** A Dynamics lead or contact with no link: qualified lead's contact, match by email, or create. */
  async function syncUnlinkedRecord(
    entity: LinkedEntity,
    id: string,
    item: WorkItem,
    pre: Prefetched,
    holder: string,
  ): Promise<EventOutcome> {
    const mapping = await mappings.forEntity(entity);
    const record = pre.records.has(id) ? pre.records.get(id)! : await readRecord(entity, id);
    const base = subjectOf(null, item, item.events[0]?.id ?? null);
    if (!record) return { status: 'done', linkId: null, note: `the Dynamics ${entityLabel(entity)} no longer exists` };
    const created = item.events.some((e) => e.operation === 'CREATE');
    if (record.syncFilter === false) {
      if (created) await recordActivities(db.prisma, [activity(base, 'SYNC_FILTERED', `new_synctomkto is No on the new Dynamics ${entityLabel(entity)}: not synced to Marketo`)]);
      return { status: 'done', linkId: null, note: 'filtered by new_synctomkto' };
    }

    if (entity === 'CONTACT' && record.originatingLeadId) {
      const leadLink = await findLink(db.prisma, { dynamicsId: record.originatingLeadId });
      if (leadLink && leadLink.entity === 'LEAD' && leadLink.status !== 'DELETED_IN_DYNAMICS') {
        if (!(await tryLock(db.prisma, [personKey(leadLink.marketoId), recordKey(leadLink.dynamicsId)], holder, lockLeaseMs))) return { status: 'busy' };
        try {
          const moved = await persist(leadLink, { entity: 'CONTACT', dynamicsId: record.id, status: 'ACTIVE', dynamicsEtag: null }, [
            activity(subjectOf(leadLink, item, base.changeEventId), 'LINK_MOVED', `lead ${leadLink.dynamicsId} was qualified into contact ${record.id}: the person now syncs with the contact`),
          ]);
          return await syncLink(moved, item, { persons: pre.persons, records: new Map([[record.id, record]]) });
        } finally {
          await unlock(db.prisma, [personKey(leadLink.marketoId), recordKey(leadLink.dynamicsId)], holder);
        }
      }
    }

    if (!record.email) {
      if (created) await recordActivities(db.prisma, [activity(base, 'SYNC_FAILED', 'the new Dynamics record has no email: it cannot be matched to or created as a Marketo person')]);
      return { status: 'done', linkId: null, note: 'no email' };
    }
    const match = (await personFinder(entity).load(record.email.toLowerCase())) ?? null;
    let marketoId: number;
    const entries: ActivityEntry[] = [];
    if (match) {
      const existing = await findLink(db.prisma, { marketoId: match.id });
      if (existing && existing.status !== 'DELETED_IN_DYNAMICS') {
        await recordActivities(db.prisma, [
          activity(
            { ...base, marketoId: match.id },
            'SYNC_FAILED',
            `person ${match.id} (${record.email}) is already linked to Dynamics ${entityLabel(existing.entity)} ${existing.dynamicsId}; ${entityLabel(entity)} ${record.id} is not linked to avoid a duplicate`,
          ),
        ]);
        return { status: 'done', linkId: existing.id, note: 'person already linked' };
      }
      marketoId = match.id;
    } else {
      const createdPerson = await createPersonFrom(record, mapping);
      if (createdPerson.status !== 'created') {
        await recordActivities(db.prisma, [activity(base, 'SYNC_FAILED', `could not create the person in Marketo: ${createdPerson.message}`)]);
        return { status: 'done', linkId: null, note: createdPerson.message };
      }
      marketoId = createdPerson.id;
      entries.push(activity({ ...base, marketoId }, 'CREATED_IN_MARKETO', `created person ${marketoId} from Dynamics ${entityLabel(entity)} ${record.id}`));
    }
    if (!(await tryLock(db.prisma, [personKey(marketoId)], holder, lockLeaseMs))) return { status: 'busy' };
    try {
      const previous = await findLink(db.prisma, { marketoId });
      const target = { marketoId, entity, dynamicsId: record.id, snapshot: {}, fieldOrigins: {}, dynamicsEtag: null, dynamicsVersion: null };
      const link = await linkOrRepoint(db.prisma, previous, target, (linked) => [
        ...entries.map((e) => ({ ...e, linkId: linked.id })),
        activity(subjectOf(linked, item, base.changeEventId), 'LINKED', `${match ? 'matched by email' : 'created'}: person ${marketoId} <-> ${entityLabel(entity)} ${record.id}`),
      ]);
      return await syncLink(link, item, { persons: pre.persons, records: new Map([[record.id, record]]) });
    } finally {
      await unlock(db.prisma, [personKey(marketoId)], holder);
    }
  }

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
      if (s.kind === 'link') return await syncLink(s.link, item, pre);
      if (s.kind === 'dynamics') return await syncUnlinkedRecord(s.entity, s.id, item, pre, holder);
      // Unlinked Marketo persons are not pushed: only Sync Person to Microsoft creates them in Dynamics.
      return { status: 'done', linkId: null, note: 'the person is not linked to Dynamics; only Sync Person to Microsoft creates it there' };
    } catch (error) {
      logger.child(idsOf(item.subject)).warn({ err: error, events: item.events.map((e) => e.id) }, 'sync of an item failed');
      return outcomeForError(error);
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
        const planned = await lockItems(await plan(events));
        held = planned.locked;
        planned.busy.forEach((item) => setAll(item, { status: 'busy' }));
        // The link moved or was re-pointed since the events were grouped: group them again.
        planned.moved.forEach((item) => setAll(item, { status: 'busy' }));
        let pre: Prefetched;
        try {
          pre = await prefetch(held.map((h) => h.item));
        } catch (error) {
          logger.warn({ err: error, events: events.length, ...batchIds(events) }, 'reading a batch failed');
          const outcome = outcomeForError(error);
          held.forEach((h) => setAll(h.item, outcome));
          return outcomes;
        }
        await Promise.all(held.map(async (h) => setAll(h.item, await syncItem(h.item, pre, h.holder))));
      } catch (error) {
        logger.warn({ err: error, events: events.length, ...batchIds(events) }, 'syncing a batch failed');
        const outcome = outcomeForError(error);
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
