import { randomUUID } from 'node:crypto';
import type { Database } from '../db/database.ts';
import { ConnectorError } from '../connectors/errors.ts';
import { enqueue } from '../inbox/inbox.ts';
import { activity, recordActivities, type ActivityField } from './activities.ts';
import { findLink } from './links.ts';
import { lockHolder, lockWithin, personKey, recordKey, unlock } from './locks.ts';
import type { MappingService } from './mappings.ts';
import type { Side } from './merge.ts';
import type { LinkedEntity } from './policy.ts';
import { FencedOutError, type Fencing } from './fence.ts';
import type { DynamicsPort, MarketoPort } from './ports.ts';
import type { CanonicalValue } from './values.ts';

// What operators ask for through GraphQL: a re-sync of one person, a collision resolved the other
// way, a field mapping checked against both systems. Each goes through the same conflict-safe
// path as any other change: the inbox, the record lease, the merge.

export interface OperatorActionsOptions {
  db: Database;
  marketo: MarketoPort;
  dynamics: DynamicsPort;
  mappings: MappingService;
  owner: string;
  /** wakes the inbox worker */
  notify: () => void;
  /** fences the operator's writes on the person's leases (sync/fence.ts) */
  fencing?: Fencing;
}

export interface FieldMappingCheck {
  entity: LinkedEntity;
  marketoField: string;
  dynamicsAttribute: string;
  direction: 'BOTH' | 'MARKETO_TO_DYNAMICS' | 'DYNAMICS_TO_MARKETO';
  enabled: boolean;
}

export function createOperatorActions(options: OperatorActionsOptions) {
  const { db, marketo, dynamics, mappings } = options;

  async function requestPersonSync(marketoId: number): Promise<{ eventId: string }> {
    const link = await findLink(db.prisma, { marketoId });
    const result = await enqueue(db, {
      source: 'OPERATOR',
      origin: 'OPERATOR',
      operation: 'RESYNC',
      marketoId,
      ...(link ? { dynamicsEntity: link.entity, dynamicsId: link.dynamicsId } : {}),
      dedupeKey: `operator:resync:${marketoId}:${randomUUID()}`,
    });
    options.notify();
    return { eventId: result.id };
  }

  /**
   * Keeps the losing value of a collision after all: it is written to the side that won, and the
   * queued re-sync then carries it to the other side as an ordinary one-sided change.
   */
  async function resolveCollision(activityId: string, keep: Side): Promise<{ ok: boolean; error?: string }> {
    if (!/^\d+$/.test(activityId)) return { ok: false, error: `no activity ${activityId}` };
    const entry = await db.prisma.activity.findUnique({ where: { id: BigInt(activityId) } });
    if (!entry || entry.type !== 'COLLISION_RESOLVED') return { ok: false, error: `activity ${activityId} is not a collision` };
    const [field] = entry.fields as unknown as ActivityField[];
    if (!field?.winner || entry.marketoId === null) return { ok: false, error: `activity ${activityId} does not name a winner` };
    if (field.winner === keep) return { ok: true };
    const link = await findLink(db.prisma, { marketoId: entry.marketoId });
    if (!link || link.status !== 'ACTIVE') return { ok: false, error: `person ${entry.marketoId} is not actively linked any more` };
    const value: CanonicalValue = (keep === 'MARKETO' ? field.marketoValue : field.dynamicsValue) ?? null;
    const mapping = await mappings.forEntity(link.entity);
    const binding = mapping.bindings.find((b) => b.field === field.field);
    if (!binding) return { ok: false, error: `${field.field} is not synced for ${link.entity.toLowerCase()}s any more` };

    const holder = lockHolder(options.owner);
    const keys = [personKey(link.marketoId), recordKey(link.dynamicsId)];
    if (!(await lockWithin(db.prisma, keys, holder, { leaseMs: 60_000, waitMs: 10_000 }))) {
      return { ok: false, error: 'the person is being synced right now; try again in a moment' };
    }
    const fence = options.fencing?.hold(holder, keys);
    try {
      const winnerSide = field.winner;
      if (winnerSide === 'MARKETO') {
        const [result] = await marketo.updatePersons([{ id: link.marketoId, fields: { [field.field]: value } }], mapping.bindings, fence);
        if (result?.status === 'skipped') return { ok: false, error: `Marketo refused: ${result.reasons.map((r) => r.message).join('; ')}` };
      } else {
        const record = (await dynamics.readRecords(link.entity, [link.dynamicsId], mapping.bindings)).get(link.dynamicsId);
        if (!record) return { ok: false, error: 'the Dynamics record no longer exists' };
        await dynamics.update(link.entity, link.dynamicsId, { [field.field]: value }, mapping.bindings, record, fence);
      }
      await recordActivities(db.prisma, [
        activity(
          { marketoId: link.marketoId, entity: link.entity, dynamicsId: link.dynamicsId, linkId: link.id, changeEventId: null },
          winnerSide === 'MARKETO' ? 'UPDATED_IN_MARKETO' : 'UPDATED_IN_DYNAMICS',
          `operator resolved collision ${activityId}: keeping the ${keep === 'MARKETO' ? 'Marketo' : 'Dynamics'} value of ${field.field}`,
          [{ field: field.field, side: winnerSide, oldValue: field.newValue, newValue: value }],
        ),
      ]);
    } catch (error) {
      if (error instanceof ConnectorError || error instanceof FencedOutError) return { ok: false, error: error.message };
      throw error;
    } finally {
      options.fencing?.release(holder);
      await unlock(db.prisma, keys, holder);
    }
    await requestPersonSync(link.marketoId);
    return { ok: true };
  }

  /** Refuses, with the reason, a mapping that Dynamics or Marketo would not let the sync honour. */
  async function validateFieldMapping(draft: FieldMappingCheck): Promise<{ ok: true } | { ok: false; reason: string }> {
    if (!draft.enabled) return { ok: true };
    const [marketoFields, columns] = await Promise.all([marketo.fieldAccess({ refresh: true }), dynamics.columnAccess(draft.entity)]);
    const field = marketoFields.get(draft.marketoField);
    const column = columns.get(draft.dynamicsAttribute.toLowerCase());
    const entity = draft.entity === 'LEAD' ? 'lead' : 'contact';
    if (!field) return { ok: false, reason: `Marketo has no person field with the REST name ${draft.marketoField}` };
    if (!column) return { ok: false, reason: `the Dynamics ${entity} table has no column ${draft.dynamicsAttribute}` };
    if (!column.canRead) return { ok: false, reason: `the Dynamics sync user cannot read ${entity}.${draft.dynamicsAttribute} (column security)` };
    if (draft.direction !== 'DYNAMICS_TO_MARKETO' && !column.canUpdate) {
      return { ok: false, reason: `the Dynamics sync user cannot update ${entity}.${draft.dynamicsAttribute}; map it DYNAMICS_TO_MARKETO or grant update` };
    }
    if (draft.direction !== 'MARKETO_TO_DYNAMICS' && !field.updateable) {
      return { ok: false, reason: `Marketo's ${draft.marketoField} is read-only over the API; map it MARKETO_TO_DYNAMICS` };
    }
    return { ok: true };
  }

  return { requestPersonSync, resolveCollision, validateFieldMapping };
}

export type OperatorActions = ReturnType<typeof createOperatorActions>;
