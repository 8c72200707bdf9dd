import type { Database } from '../db/database.ts';
import { activity, recordActivities, type ActivityEntry, type ActivitySubject } from './activities.ts';
import { journalCreate, openIntentOfRecord, settleIntent, type CreateIntent } from './create-intents.ts';
import type { DynamicsCreates } from './creates.ts';
import type { SyncIO } from './io.ts';
import { createLinkingStore } from './linking.ts';
import { findLink, settleCreate, updateLink, type Link } from './links.ts';
import { personKey, recordKey, tryLock, unlock } from './locks.ts';
import type { EntityMapping, MappingService } from './mappings.ts';
import type { PairOutcome, PairSync } from './pair.ts';
import { baseAfterCreate } from './plan.ts';
import { entityLabel, type LinkedEntity } from './policy.ts';
import type { Fencing } from './fence.ts';
import type { DynamicsRecordView, WriteFence } from './ports.ts';
import { relink } from './relink.ts';
import type { CanonicalRecordFields } from './values.ts';

// A Dynamics lead or contact with no link yet: the contact a linked lead was qualified into, the
// Marketo person with the same email, or a new person. Once linked, the pair syncs like any other
// (pair.ts). A person created here starts from the values it was created with as its merge base,
// so an automation's edit in the next second is a one-sided change, not a collision. A person is
// created from a journaled intent (create-intents.ts): whoever holds the record next looks the
// person up by the journaled email before creating anything, and links what it finds.

export type UnlinkedOutcome = { status: 'done'; linkId: string | null; note?: string } | { status: 'busy' };

export interface UnlinkedSyncOptions {
  db: Database;
  io: SyncIO;
  mappings: MappingService;
  pairs: PairSync;
  /** finishes Sync Person's creates whose record turns up here before their link */
  creates: DynamicsCreates;
  leaseMs: number;
  /** the fence of the work that holds the record (sync/fence.ts), extended to the person's lease */
  fencing?: Fencing;
}

/** The work holding the Dynamics record: its lease holder and its write fence. */
export interface RecordWork {
  holder: string;
  fence: WriteFence | undefined;
}

export function createUnlinkedSync(options: UnlinkedSyncOptions) {
  const { db, io, mappings, pairs } = options;
  const linking = createLinkingStore(db, options.leaseMs);

  /** The person's fields from a Dynamics record, as far as Marketo may be written. */
  function personFieldsFrom(record: DynamicsRecordView, mapping: EntityMapping): CanonicalRecordFields {
    const fields: CanonicalRecordFields = {};
    for (const rule of mapping.rules) {
      const value = record.fields[rule.field];
      if (rule.writable.MARKETO && rule.direction !== 'MARKETO_TO_DYNAMICS' && value !== null && value !== undefined) fields[rule.field] = value;
    }
    const emailField = mapping.bindings.find((b) => b.dynamicsAttribute === 'emailaddress1')?.field ?? 'email';
    if (record.email) fields[emailField] = record.email;
    return fields;
  }

  /** Journals the creation of a person from the record, before anything is sent (the record has an email). */
  function journalPerson(record: DynamicsRecordView, mapping: EntityMapping, changeEventId: string | null, holder: string | undefined): Promise<CreateIntent> {
    const lease = holder ? { holder, keys: [recordKey(record.id)] } : undefined;
    return journalCreate(
      db.prisma,
      {
        direction: 'TO_MARKETO',
        marketoId: null,
        entity: record.entity,
        dynamicsId: record.id,
        email: record.email!.toLowerCase(),
        source: record.fields,
        sent: personFieldsFrom(record, mapping),
        assignTo: null,
        changeEventId,
      },
      lease,
    );
  }

  /**
   * The person a journaled create made, or makes now: looked up by the journaled email first
   * (`fresh`: just looked up and not found, so the look-up is not repeated), created (createOnly)
   * only if absent. A refusal settles the intent: there is nothing left to finish.
   */
  async function personOf(intent: CreateIntent, mapping: EntityMapping, fresh: boolean, fence: WriteFence | undefined): Promise<{ status: 'created'; id: number } | { status: 'failed'; message: string }> {
    const lookUp = async () => (intent.email ? await io.findPersonByEmail(intent.entity, intent.email) : null);
    const found = fresh ? null : await lookUp();
    if (found) return { status: 'created', id: found.id };
    const result = await io.createPerson(intent.sent, mapping, fence);
    if (result.status === 'created' && result.id !== null) return { status: 'created', id: result.id };
    // 1005 "Lead already exists": an earlier try of this create landed without its answer
    const exists = result.reasons.some((r) => r.code === '1005') ? await lookUp() : null;
    if (exists) return { status: 'created', id: exists.id };
    const message = result.reasons.map((r) => `${r.code} ${r.message}`).join('; ') || `Marketo answered ${result.status}`;
    await settleIntent(db.prisma, intent.id, { state: 'FAILED', note: message });
    return { status: 'failed', message };
  }

  /**
   * Links the person (new or matched) and syncs the pair, under the person's lease. A person
   * linked meanwhile to another record is not re-pointed (relink.ts): "already linked" is logged.
   */
  async function linkAndSync(
    { holder }: RecordWork,
    target: { marketoId: number; entity: LinkedEntity; record: DynamicsRecordView; snapshot: Link['snapshot']; intentId?: string },
    entries: (link: Link) => ActivityEntry[],
    subject: (link: Link) => ActivitySubject,
  ): Promise<UnlinkedOutcome> {
    const { marketoId, entity, record } = target;
    const keys = [personKey(marketoId)];
    if (!(await linking.lock(keys, holder))) return { status: 'busy' };
    const fence = options.fencing?.hold(holder, keys);
    try {
      const previous = await linking.findByPerson(marketoId);
      const origins = Object.fromEntries(Object.keys(target.snapshot).map((f) => [f, { side: 'DYNAMICS' as const, at: new Date().toISOString() }]));
      const linkTarget = { marketoId, entity, dynamicsId: record.id, snapshot: target.snapshot, fieldOrigins: origins, dynamicsEtag: null, dynamicsVersion: null, intentId: target.intentId };
      if (!previous) {
        const link = await linking.create(linkTarget, entries);
        return done(await pairs.syncPair(link, { person: undefined, record, pending: [] }, { subject: subject(link), fromDynamics: true, fence }));
      }
      const linked = await relink(db.prisma, previous, { ...linkTarget, originatingLeadId: record.originatingLeadId }, entries, subject(previous));
      if (linked.status === 'refused') {
        if (target.intentId) await settleIntent(db.prisma, target.intentId, { state: 'FAILED', note: linked.message });
        return { status: 'done', linkId: previous.id, note: 'person already linked' };
      }
      return done(await pairs.syncPair(linked.link, { person: undefined, record, pending: [] }, { subject: subject(linked.link), fromDynamics: true, fence }));
    } finally {
      options.fencing?.release(holder, keys);
      await linking.unlock(keys, holder);
    }
  }

  /** Finishes a journaled create of a person from this record: found by its email, or created; then linked. */
  async function finishPerson(intent: CreateIntent, record: DynamicsRecordView, work: RecordWork, subjectOf: (link: Link | null) => ActivitySubject, fresh: boolean): Promise<UnlinkedOutcome> {
    const label = entityLabel(record.entity);
    const mapping = await mappings.forEntity(record.entity);
    const person = await personOf(intent, mapping, fresh, work.fence);
    if (person.status !== 'created') {
      await recordActivities(db.prisma, [activity(subjectOf(null), 'SYNC_FAILED', `could not create the person in Marketo: ${person.message}`)]);
      return { status: 'done', linkId: null, note: person.message };
    }
    const marketoId = person.id;
    // the base is what was created, not what the record holds now: an edit made since is one-sided
    const snapshot = baseAfterCreate(mapping.rules, intent.source, intent.sent, null);
    return linkAndSync(
      work,
      { marketoId, entity: record.entity, record, snapshot, intentId: intent.id },
      (linked) => [
        activity(subjectOf(linked), 'CREATED_IN_MARKETO', `created person ${marketoId} from Dynamics ${label} ${record.id}`),
        activity(subjectOf(linked), 'LINKED', `created: person ${marketoId} <-> ${label} ${record.id}`),
      ],
      subjectOf,
    );
  }

  /**
   * The record is the target of Sync Person's journaled create (its webhook, or the sweep, got
   * here before the link): finish that create under the person's lease, then sync the pair.
   */
  async function finishSyncPerson(intent: CreateIntent, record: DynamicsRecordView, { holder }: RecordWork, subjectOf: (link: Link | null) => ActivitySubject): Promise<UnlinkedOutcome> {
    const keys = [personKey(intent.marketoId!)];
    if (!(await linking.lock(keys, holder))) return { status: 'busy' };
    const fence = options.fencing?.hold(holder, keys);
    try {
      const existing = await findLink(db.prisma, { marketoId: intent.marketoId! });
      const subject = { ...subjectOf(null), marketoId: intent.marketoId, entity: intent.entity, linkId: existing?.id ?? null };
      const result = await options.creates.finishToDynamics(intent, existing, subject, fence);
      if (result.status === 'rejected') return { status: 'done', linkId: null, note: result.message };
      if (result.status === 'refused') return { status: 'done', linkId: result.link.id, note: 'person already linked' };
      return done(await pairs.syncPair(result.link, { person: undefined, record: result.record, pending: [] }, { subject: subjectOf(result.link), fromDynamics: true, fence }));
    } finally {
      options.fencing?.release(holder, keys);
      await linking.unlock(keys, holder);
    }
  }

  function done(outcome: PairOutcome): UnlinkedOutcome {
    // A pair just linked from a live Dynamics record cannot ask for its person to be re-created.
    return outcome.status === 'done' ? outcome : { status: 'done', linkId: outcome.link.id };
  }

  /** A lead qualified into this contact: the person's link moves from the lead to the contact. */
  async function moveQualifiedLead(leadLink: Link, record: DynamicsRecordView, { holder }: RecordWork, subjectOf: (link: Link) => ActivitySubject): Promise<UnlinkedOutcome> {
    const keys = [personKey(leadLink.marketoId), recordKey(leadLink.dynamicsId)];
    if (!(await tryLock(db.prisma, keys, holder, options.leaseMs))) return { status: 'busy' };
    const fence = options.fencing?.hold(holder, keys);
    try {
      const moved = await db.prisma.$transaction(async (tx) => {
        const saved = await updateLink(tx, leadLink.id, { entity: 'CONTACT', dynamicsId: record.id, status: 'ACTIVE', dynamicsEtag: null });
        await recordActivities(tx, [
          activity(subjectOf(leadLink), 'LINK_MOVED', `lead ${leadLink.dynamicsId} was qualified into contact ${record.id}: the person now syncs with the contact`),
        ]);
        return saved;
      });
      return done(await pairs.syncPair(moved, { person: undefined, record, pending: [] }, { subject: subjectOf(moved), fromDynamics: true, fence }));
    } finally {
      options.fencing?.release(holder, keys);
      await unlock(db.prisma, keys, holder);
    }
  }

  return {
    /** Syncs a Dynamics record that had no link when its events were grouped. */
    async syncRecord(
      entity: LinkedEntity,
      record: DynamicsRecordView | null,
      created: boolean,
      work: RecordWork,
      subjectOf: (link: Link | null) => ActivitySubject,
    ): Promise<UnlinkedOutcome> {
      const base = subjectOf(null);
      const label = entityLabel(entity);
      if (!record) {
        // a person to be created from a record that is gone: nothing is left to finish
        const orphaned = base.dynamicsId ? await openIntentOfRecord(db.prisma, base.dynamicsId) : null;
        if (orphaned?.direction === 'TO_MARKETO') await settleIntent(db.prisma, orphaned.id, { state: 'FAILED', note: `the Dynamics ${label} no longer exists` });
        return { status: 'done', linkId: null, note: `the Dynamics ${label} no longer exists` };
      }
      // A create journaled earlier and never linked (a crash after it was sent) comes first.
      const unfinished = await openIntentOfRecord(db.prisma, record.id);
      if (unfinished?.direction === 'TO_DYNAMICS') return finishSyncPerson(unfinished, record, work, subjectOf);
      if (unfinished) return finishPerson(unfinished, record, work, subjectOf, false);
      const note = async (type: 'SYNC_FILTERED' | 'SYNC_FAILED', message: string, why: string, marketoId: number | null = null): Promise<UnlinkedOutcome> => {
        await recordActivities(db.prisma, [activity({ ...base, ...(marketoId !== null ? { marketoId } : {}) }, type, message)]);
        return { status: 'done', linkId: null, note: why };
      };
      if (record.syncFilter === false) {
        const rule = record.filterRule ?? 'new_synctomkto ne false';
        if (created) return note('SYNC_FILTERED', `filtered out by ${rule}: the new Dynamics ${label} is not synced to Marketo`, `filtered out by ${rule}`);
        return { status: 'done', linkId: null, note: `filtered out by ${rule}` };
      }
      if (entity === 'CONTACT' && record.originatingLeadId) {
        const leadLink = await findLink(db.prisma, { dynamicsId: record.originatingLeadId });
        if (leadLink && leadLink.entity === 'LEAD' && leadLink.status !== 'DELETED_IN_DYNAMICS') return moveQualifiedLead(leadLink, record, work, subjectOf);
      }
      if (!record.email) {
        if (created) return note('SYNC_FAILED', 'the new Dynamics record has no email: it cannot be matched to or created as a Marketo person', 'no email');
        return { status: 'done', linkId: null, note: 'no email' };
      }
      const mapping = await mappings.forEntity(entity);
      const match = await io.findPersonByEmail(entity, record.email);
      if (match) {
        const existing = await linking.findByPerson(match.id);
        if (existing && existing.status !== 'DELETED_IN_DYNAMICS') {
          await note('SYNC_FAILED', `person ${match.id} (${record.email}) is already linked to Dynamics ${entityLabel(existing.entity)} ${existing.dynamicsId}; ${label} ${record.id} is not linked to avoid a duplicate`, 'person already linked', match.id);
          return { status: 'done', linkId: existing.id, note: 'person already linked' };
        }
        // Never synced: no agreed base, so the merge fills empty sides and applies the entity rule.
        return linkAndSync(work, { marketoId: match.id, entity, record, snapshot: {} }, (linked) => [
          activity(subjectOf(linked), 'LINKED', `matched by email: person ${match.id} <-> ${label} ${record.id}`),
        ], subjectOf);
      }
      return finishPerson(await journalPerson(record, mapping, base.changeEventId, work.holder), record, work, subjectOf, true);
    },

    /** The person was deleted in Marketo and the Dynamics record changed since: create it again (journaled, as any create). */
    async recreatePerson(link: Link, record: DynamicsRecordView, subject: ActivitySubject, work?: RecordWork): Promise<UnlinkedOutcome> {
      const fence = work?.fence;
      const mapping = await mappings.forEntity(link.entity);
      if (!record.email) {
        await recordActivities(db.prisma, [activity(subject, 'SYNC_FAILED', 'could not re-create the person in Marketo: the Dynamics record has no email (emailaddress1)')]);
        return { status: 'done', linkId: link.id };
      }
      const unfinished = await openIntentOfRecord(db.prisma, record.id);
      const intent = unfinished?.direction === 'TO_MARKETO' ? unfinished : await journalPerson(record, mapping, subject.changeEventId, work?.holder);
      const created = await personOf(intent, mapping, false, fence);
      if (created.status !== 'created') {
        await recordActivities(db.prisma, [activity(subject, 'SYNC_FAILED', `could not re-create the person in Marketo: ${created.message}`)]);
        return { status: 'done', linkId: link.id };
      }
      const snapshot = baseAfterCreate(mapping.rules, intent.source, intent.sent, null);
      const moved = await db.prisma.$transaction(async (tx) => {
        const saved = await updateLink(tx, link.id, { marketoId: created.id, status: 'ACTIVE', snapshot, blocked: {}, synced: true });
        await recordActivities(tx, [
          activity(
            { ...subject, marketoId: created.id },
            'CREATED_IN_MARKETO',
            `re-created in Marketo as person ${created.id} (person ${link.marketoId} had been deleted there) after the Dynamics ${entityLabel(link.entity)} changed`,
          ),
        ]);
        await settleCreate(tx, { intentId: intent.id, marketoId: created.id });
        return saved;
      });
      return done(await pairs.syncPair(moved, { person: undefined, record, pending: [] }, { subject: { ...subject, marketoId: created.id }, fromDynamics: true, fence }));
    },
  };
}

export type UnlinkedSync = ReturnType<typeof createUnlinkedSync>;
