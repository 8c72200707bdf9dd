import type { Database } from '../db/database.ts';
import { ConnectorError } from '../connectors/errors.ts';
import { enqueue } from '../inbox/inbox.ts';
import { activity, recordActivities, type ActivityField, type ActivitySubject } from './activities.ts';
import { findLink, findLinks, linkOrRepoint, type Link } from './links.ts';
import { lockHolder, lockWithin, personKey, unlock } from './locks.ts';
import type { MappingService } from './mappings.ts';
import { entityLabel, type LinkedEntity } from './policy.ts';
import type { Fencing } from './fence.ts';
import type { DynamicsOwner, DynamicsPort, MarketoPort, WriteFence } from './ports.ts';
import { baseAfterCreate } from './plan.ts';
import { sameValue, type CanonicalRecordFields } from './values.ts';

// Marketo's "Sync Person to Microsoft" flow action, in real time: create the person in Dynamics
// as a lead (default) or contact, link it and answer with the id, inside Marketo's 30 s webhook
// timeout. Never a duplicate: an existing link answers "existing", an unlinked Dynamics record
// with the same email is linked instead of creating another, and concurrent calls for the same
// person wait for each other on the person's lease.

export interface SyncPersonRequest {
  marketoId: number;
  entity: LinkedEntity;
  /** systemuser id (GUID) or domain name of the Dynamics owner */
  assignTo?: string | undefined;
  /** the inbox event when this runs as a retry from the queue */
  changeEventId?: string | null;
}

export type SyncPersonResult =
  | { status: 'created' | 'existing'; entity: LinkedEntity; dynamicsId: string; linkId: string }
  | { status: 'not_found'; message: string }
  | { status: 'rejected'; message: string }
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
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function ownerOf(assignTo: string | undefined): DynamicsOwner | undefined {
  const value = assignTo?.trim();
  if (!value) return undefined;
  return GUID.test(value) ? { systemUserId: value.toLowerCase() } : { domainName: value };
}

export function createSyncPerson(options: SyncPersonOptions) {
  const { db, marketo, dynamics, mappings } = options;
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
      return await createOrFind(request, fence);
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

  async function createOrFind(request: SyncPersonRequest, fence: WriteFence | undefined): Promise<SyncPersonResult> {
    const existing = await findLink(db.prisma, { marketoId: request.marketoId });
    if (existing && existing.status !== 'DELETED_IN_DYNAMICS') {
      return { status: 'existing', entity: existing.entity, dynamicsId: existing.dynamicsId, linkId: existing.id };
    }
    const entity = request.entity;
    const mapping = await mappings.forEntity(entity);
    const person = (await marketo.readPersons([request.marketoId], mapping.bindings)).get(request.marketoId);
    if (!person) return { status: 'not_found', message: `Marketo has no person ${request.marketoId}` };
    const subject: ActivitySubject = {
      marketoId: request.marketoId,
      entity,
      dynamicsId: null,
      linkId: existing?.id ?? null,
      changeEventId: request.changeEventId ?? null,
    };

    if (person.email) {
      const candidates = await dynamics.findByEmail(entity, person.email, mapping.bindings);
      const taken = new Set((await findLinks(db.prisma, { dynamicsIds: candidates.map((c) => c.id) })).map((l) => l.dynamicsId));
      const match = candidates.filter((c) => !taken.has(c.id)).sort((a, b) => a.modifiedOn.localeCompare(b.modifiedOn))[0];
      if (match) {
        const target = { marketoId: request.marketoId, entity, dynamicsId: match.id, snapshot: {}, fieldOrigins: {}, dynamicsEtag: match.etag, dynamicsVersion: match.version };
        const link = await linkOrRepoint(db.prisma, existing, target, (linked) => [
          activity({ ...subject, dynamicsId: match.id, linkId: linked.id }, 'LINKED', `Sync Person to Microsoft: matched existing ${entityLabel(entity)} ${match.id} by email ${person.email ?? ''}; nothing created`),
        ]);
        await enqueueResync(link);
        return { status: 'existing', entity, dynamicsId: match.id, linkId: link.id };
      }
    }

    const fields: CanonicalRecordFields = {};
    for (const rule of mapping.rules) {
      const value = person.fields[rule.field];
      const access = mapping.access[rule.field];
      if (value === null || value === undefined || rule.direction === 'DYNAMICS_TO_MARKETO' || !access?.dynamics.canCreate) continue;
      fields[rule.field] = value;
    }
    let record;
    try {
      record = await dynamics.create(entity, fields, mapping.bindings, ownerOf(request.assignTo), fence);
    } catch (error) {
      if (error instanceof ConnectorError && (error.kind === 'validation' || error.kind === 'forbidden')) {
        await recordActivities(db.prisma, [
          activity(
            subject,
            'VALIDATION_REJECTED',
            `Sync Person to Microsoft: Dynamics refused to create the ${entityLabel(entity)}: ${error.message}`,
            Object.entries(fields).map(([field, value]) => ({ field, side: 'DYNAMICS', oldValue: null, newValue: value })),
          ),
        ]);
        return { status: 'rejected', message: error.message };
      }
      throw error;
    }

    // The base is what was created (never empty: an empty base turns a workflow's edit of the new
    // lead into a fake collision). Whatever Dynamics stored differently (a default, a plug-in's
    // rewrite) is then an ordinary change made in Dynamics, carried to Marketo by the re-sync.
    const snapshot = baseAfterCreate(mapping.rules, person.fields, fields, record.fields);
    const differs = mapping.rules.some((rule) => !sameValue(person.fields[rule.field] ?? null, record.fields[rule.field] ?? null, rule.type));
    const written: ActivityField[] = Object.entries(fields).map(([field, value]) => ({ field, side: 'DYNAMICS', oldValue: null, newValue: value }));
    const target = {
      marketoId: request.marketoId,
      entity,
      dynamicsId: record.id,
      snapshot,
      fieldOrigins: Object.fromEntries(Object.keys(snapshot).map((f) => [f, { side: 'MARKETO' as const, at: new Date().toISOString() }])),
      dynamicsEtag: record.etag,
      dynamicsVersion: record.version,
    };
    const link = await linkOrRepoint(db.prisma, existing, target, (linked) => {
      const s = { ...subject, dynamicsId: record.id, linkId: linked.id };
      return [
        activity(s, 'CREATED_IN_DYNAMICS', `Sync Person to Microsoft: created ${entityLabel(entity)} ${record.id}${request.assignTo ? `, owner ${request.assignTo}` : ''}`, written),
        activity(s, 'LINKED', `person ${request.marketoId} <-> ${entityLabel(entity)} ${record.id}`),
      ];
    });
    if (differs) await enqueueResync(link);
    return { status: 'created', entity, dynamicsId: record.id, linkId: link.id };
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
