import type { Database } from '../db/database.ts';
import { activity, recordActivities, type ActivityEntry, type ActivitySubject } from './activities.ts';
import type { SyncIO } from './io.ts';
import { createLinkingStore } from './linking.ts';
import { findLink, linkOrRepoint, updateLink, type Link } from './links.ts';
import { personKey, recordKey, tryLock, unlock } from './locks.ts';
import type { EntityMapping, MappingService } from './mappings.ts';
import type { PairOutcome, PairSync } from './pair.ts';
import { baseAfterCreate } from './plan.ts';
import { entityLabel, type LinkedEntity } from './policy.ts';
import type { Fencing } from './fence.ts';
import type { DynamicsRecordView, WriteFence } from './ports.ts';
import type { CanonicalRecordFields } from './values.ts';

// A Dynamics lead or contact with no link yet: the contact a linked lead was qualified into, the
// Marketo person with the same email, or a new person. Once linked, the pair syncs like any other
// (pair.ts). A person created here starts from the values it was created with as its merge base,
// so an automation's edit in the next second is a one-sided change, not a collision.

export type UnlinkedOutcome = { status: 'done'; linkId: string | null; note?: string } | { status: 'busy' };

export interface UnlinkedSyncOptions {
  db: Database;
  io: SyncIO;
  mappings: MappingService;
  pairs: PairSync;
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

  async function createPerson(
    record: DynamicsRecordView,
    mapping: EntityMapping,
    fence: WriteFence | undefined,
  ): Promise<{ status: 'created'; id: number; sent: CanonicalRecordFields } | { status: 'failed'; message: string }> {
    if (!record.email) return { status: 'failed', message: 'the Dynamics record has no email (emailaddress1) to create or match a person by' };
    const sent = personFieldsFrom(record, mapping);
    const result = await io.createPerson(sent, mapping, fence);
    if (result.status === 'created' && result.id !== null) return { status: 'created', id: result.id, sent };
    return { status: 'failed', message: result.reasons.map((r) => `${r.code} ${r.message}`).join('; ') || `Marketo answered ${result.status}` };
  }

  /** Links the person (new or matched) and syncs the pair, under the person's lease. */
  async function linkAndSync(
    { holder }: RecordWork,
    target: { marketoId: number; entity: LinkedEntity; record: DynamicsRecordView; snapshot: Link['snapshot'] },
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
      const linkTarget = { marketoId, entity, dynamicsId: record.id, snapshot: target.snapshot, fieldOrigins: origins, dynamicsEtag: null, dynamicsVersion: null };
      const link = previous ? await linkOrRepoint(db.prisma, previous, linkTarget, entries) : await linking.create(linkTarget, entries);
      return done(await pairs.syncPair(link, { person: undefined, record, pending: [] }, { subject: subject(link), fromDynamics: true, fence }));
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
      if (!record) return { status: 'done', linkId: null, note: `the Dynamics ${label} no longer exists` };
      const note = async (type: 'SYNC_FILTERED' | 'SYNC_FAILED', message: string, why: string, marketoId: number | null = null): Promise<UnlinkedOutcome> => {
        await recordActivities(db.prisma, [activity({ ...base, ...(marketoId !== null ? { marketoId } : {}) }, type, message)]);
        return { status: 'done', linkId: null, note: why };
      };
      if (record.syncFilter === false) {
        if (created) return note('SYNC_FILTERED', `new_synctomkto is No on the new Dynamics ${label}: not synced to Marketo`, 'filtered by new_synctomkto');
        return { status: 'done', linkId: null, note: 'filtered by new_synctomkto' };
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
      const createdPerson = await createPerson(record, mapping, work.fence);
      if (createdPerson.status !== 'created') return note('SYNC_FAILED', `could not create the person in Marketo: ${createdPerson.message}`, createdPerson.message);
      const marketoId = createdPerson.id;
      return linkAndSync(
        work,
        { marketoId, entity, record, snapshot: baseAfterCreate(mapping.rules, record.fields, createdPerson.sent, null) },
        (linked) => [
          activity({ ...subjectOf(linked) }, 'CREATED_IN_MARKETO', `created person ${marketoId} from Dynamics ${label} ${record.id}`),
          activity(subjectOf(linked), 'LINKED', `created: person ${marketoId} <-> ${label} ${record.id}`),
        ],
        subjectOf,
      );
    },

    /** The person was deleted in Marketo and the Dynamics record changed since: create it again. */
    async recreatePerson(link: Link, record: DynamicsRecordView, subject: ActivitySubject, fence?: WriteFence): Promise<UnlinkedOutcome> {
      const mapping = await mappings.forEntity(link.entity);
      const created = await createPerson(record, mapping, fence);
      if (created.status !== 'created') {
        await recordActivities(db.prisma, [activity(subject, 'SYNC_FAILED', `could not re-create the person in Marketo: ${created.message}`)]);
        return { status: 'done', linkId: link.id };
      }
      const snapshot = baseAfterCreate(mapping.rules, record.fields, created.sent, null);
      const moved = await db.prisma.$transaction(async (tx) => {
        const saved = await updateLink(tx, link.id, { marketoId: created.id, status: 'ACTIVE', snapshot, blocked: {}, synced: true });
        await recordActivities(tx, [
          activity(
            { ...subject, marketoId: created.id },
            'CREATED_IN_MARKETO',
            `re-created in Marketo as person ${created.id} (person ${link.marketoId} had been deleted there) after the Dynamics ${entityLabel(link.entity)} changed`,
          ),
        ]);
        return saved;
      });
      return done(await pairs.syncPair(moved, { person: undefined, record, pending: [] }, { subject: { ...subject, marketoId: created.id }, fromDynamics: true, fence }));
    },
  };
}

export type UnlinkedSync = ReturnType<typeof createUnlinkedSync>;
