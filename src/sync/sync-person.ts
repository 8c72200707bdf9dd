import { randomUUID } from 'node:crypto';
import type { Database } from '../db/database.ts';
import { enqueue } from '../inbox/inbox.ts';
import { activity, type ActivitySubject } from './activities.ts';
import { journalCreate, openIntentToDynamics, type CreateIntent } from './create-intents.ts';
import { createDynamicsCreates } from './creates.ts';
import { findLink, findLinks, type Link } from './links.ts';
import { lockHolder, lockWithin, personKey, unlock } from './locks.ts';
import type { MappingService } from './mappings.ts';
import { entityLabel, type LinkedEntity } from './policy.ts';
import type { Fencing } from './fence.ts';
import type { DynamicsPort, MarketoPort, PersonRecord, WriteFence } from './ports.ts';
import { relink } from './relink.ts';
import type { CanonicalRecordFields } from './values.ts';
import type { Suppressions } from '../security/suppression.ts';

// Marketo's "Sync Person to Microsoft" flow action, in real time: create the person in Dynamics
// as a lead (default) or contact, link it and answer with the id, inside Marketo's 30 s webhook
// timeout. Never a duplicate: an existing link answers "existing", an unlinked Dynamics record
// with the same email is linked instead of creating another, concurrent calls for the same
// person wait for each other on the person's lease, and the create is journaled with its
// primary key before it is sent, so whoever runs next for the person (the inbox's retry, a later
// call, the engine on the record's webhook or the sweep) finishes it instead of starting over.

export interface SyncPersonRequest {
  marketoId: number;
  entity: LinkedEntity;
  /** systemuser id (GUID) or domain name of the Dynamics owner */
  assignTo?: string | undefined;
  /** the inbox event when this runs as a retry from the queue */
  changeEventId?: string | null;
  /**
   * the person as the caller just read it with the entity's mapped fields (a Batch Sync Person's
   * list page): saves reading it again, one call per 300 persons fewer
   */
  person?: PersonRecord | undefined;
}

export type SyncPersonResult =
  | { status: 'created' | 'existing'; entity: LinkedEntity; dynamicsId: string; linkId: string }
  | { status: 'not_found'; message: string }
  /** erased: the person is on the erasure list */
  | { status: 'rejected'; message: string; erased?: true }
  | { status: 'busy'; message: string };

export interface SyncPersonOptions {
  db: Database;
  marketo: MarketoPort;
  dynamics: DynamicsPort;
  mappings: MappingService;
  owner: string;
  /** the person's lease without a heartbeat (SYNC_RECORD_LOCK_SECONDS); sync/leases.ts renews it while the call runs */
  leaseMs: number;
  /** how long a call waits for a concurrent call on the same person */
  lockWaitMs?: number;
  /** fences the create on the person's lease (sync/fence.ts) */
  fencing?: Fencing;
  /** the erasure list: an erased person is refused, by id or by the email Marketo holds */
  suppressions?: Suppressions;
}

const ERASED: SyncPersonResult = { status: 'rejected', erased: true, message: 'the person was erased from this service; an admin must lift the erasure (liftErasure) before it syncs again' };

export function createSyncPerson(options: SyncPersonOptions) {
  const { db, marketo, dynamics, mappings } = options;
  const creates = createDynamicsCreates({ db, dynamics, mappings });
  // Calls still running, including those whose webhook already answered "queued" after its
  // budget: shutdown waits for them, and the heartbeat keeps their lease, so the queued retry
  // can never create the record a second time while the first call is still at it.
  const inFlight = new Set<Promise<unknown>>();

  async function run(request: SyncPersonRequest): Promise<SyncPersonResult> {
    const key = personKey(request.marketoId);
    const holder = lockHolder(options.owner);
    const locked = await lockWithin(db.prisma, [key], holder, { leaseMs: options.leaseMs, waitMs: options.lockWaitMs ?? 10_000 });
    if (!locked) return { status: 'busy', message: `person ${request.marketoId} is being synced by another call` };
    const fence = options.fencing?.hold(holder, [key]);
    try {
      // read under the lease: an erasure that took it before us is seen
      if (await options.suppressions?.suppressed({ marketoIds: [request.marketoId] }, { fresh: true })) return ERASED;
      return await createOrFind(request, { holder, keys: [key], fence });
    } finally {
      options.fencing?.release(holder);
      await unlock(db.prisma, [key], holder);
    }
  }

  function syncPerson(request: SyncPersonRequest): Promise<SyncPersonResult> {
    const call = run(request);
    const tracked = call.catch(() => undefined).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    return call;
  }
  /** Resolves once every call started so far has finished (shutdown). */
  syncPerson.idle = async (): Promise<void> => {
    while (inFlight.size > 0) await Promise.all([...inFlight]);
  };
  return syncPerson;

  async function createOrFind(request: SyncPersonRequest, lease: { holder: string; keys: string[]; fence: WriteFence | undefined }): Promise<SyncPersonResult> {
    const { fence } = lease;
    const existing = await findLink(db.prisma, { marketoId: request.marketoId });
    const subject: ActivitySubject = {
      marketoId: request.marketoId,
      entity: request.entity,
      dynamicsId: null,
      linkId: existing?.id ?? null,
      changeEventId: request.changeEventId ?? null,
    };
    // A create journaled by an earlier call that did not live to link it (a crash, a lost lease)
    // is finished before anything else: sent again with the same key, never a second record.
    const unfinished = await openIntentToDynamics(db.prisma, request.marketoId);
    if (unfinished) return finish(unfinished, existing, { ...subject, entity: unfinished.entity }, fence);
    if (existing && existing.status !== 'DELETED_IN_DYNAMICS') {
      return { status: 'existing', entity: existing.entity, dynamicsId: existing.dynamicsId, linkId: existing.id };
    }
    const entity = request.entity;
    const mapping = await mappings.forEntity(entity);
    const person = request.person ?? (await marketo.readPersons([request.marketoId], mapping.bindings)).get(request.marketoId);
    if (!person) return { status: 'not_found', message: `Marketo has no person ${request.marketoId}` };
    if (await options.suppressions?.suppressed({ emails: [person.email] }, { fresh: true })) return ERASED;

    if (person.email) {
      const candidates = await dynamics.findByEmail(entity, person.email, mapping.bindings);
      const taken = new Set((await findLinks(db.prisma, { dynamicsIds: candidates.map((c) => c.id) })).map((l) => l.dynamicsId));
      const match = candidates.filter((c) => !taken.has(c.id)).sort((a, b) => a.modifiedOn.localeCompare(b.modifiedOn))[0];
      if (match) {
        // Never synced: the pair has no agreed base yet, so the link starts empty and the first
        // merge fills each empty side and applies the entity's rule (SPEC "match by email").
        const target = { marketoId: request.marketoId, entity, dynamicsId: match.id, snapshot: {}, fieldOrigins: {}, dynamicsEtag: match.etag, dynamicsVersion: match.version, originatingLeadId: match.originatingLeadId };
        const linked = await relink(db.prisma, existing, target, (l) => [
          activity({ ...subject, dynamicsId: match.id, linkId: l.id }, 'LINKED', `Sync Person to Microsoft: matched existing ${entityLabel(entity)} ${match.id} by email ${person.email ?? ''}; nothing created`),
        ], { ...subject, dynamicsId: match.id });
        if (linked.status === 'refused') return { status: 'existing', entity: linked.link.entity, dynamicsId: linked.link.dynamicsId, linkId: linked.link.id };
        await enqueueResync(linked.link);
        return { status: 'existing', entity, dynamicsId: match.id, linkId: linked.link.id };
      }
    }

    const fields: CanonicalRecordFields = {};
    for (const rule of mapping.rules) {
      const value = person.fields[rule.field];
      const access = mapping.access[rule.field];
      if (value === null || value === undefined || rule.direction === 'DYNAMICS_TO_MARKETO' || !access?.dynamics.canCreate) continue;
      fields[rule.field] = value;
    }
    // Journaled before it is sent, with the primary key the record will have (create-intents.ts).
    const intent = await journalCreate(
      db.prisma,
      {
        direction: 'TO_DYNAMICS',
        marketoId: request.marketoId,
        entity,
        dynamicsId: randomUUID(),
        email: person.email,
        source: person.fields,
        sent: fields,
        assignTo: request.assignTo?.trim() || null,
        changeEventId: request.changeEventId ?? null,
      },
      lease,
    );
    return finish(intent, existing, subject, fence);
  }

  async function finish(intent: CreateIntent, existing: Link | null, subject: ActivitySubject, fence: WriteFence | undefined): Promise<SyncPersonResult> {
    const result = await creates.finishToDynamics(intent, existing, subject, fence);
    switch (result.status) {
      case 'rejected':
        return result;
      case 'refused':
        return { status: 'existing', entity: result.link.entity, dynamicsId: result.link.dynamicsId, linkId: result.link.id };
      case 'created':
        if (result.differs) await enqueueResync(result.link);
        return { status: 'created', entity: result.link.entity, dynamicsId: result.link.dynamicsId, linkId: result.link.id };
    }
  }

  async function enqueueResync(link: Link): Promise<void> {
    await enqueue(db, {
      source: 'OPERATOR',
      origin: 'FLOW_ACTION',
      operation: 'RESYNC',
      marketoId: link.marketoId,
      dynamicsEntity: link.entity,
      dynamicsId: link.dynamicsId,
      dedupeKey: `flow-action:resync:${link.id}:${Date.now()}`,
    });
  }
}

export type SyncPerson = ReturnType<typeof createSyncPerson>;
