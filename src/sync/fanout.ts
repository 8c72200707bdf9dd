import type { Database } from '../db/database.ts';
import { enqueueMany, type ClaimedChangeEvent, type NewChangeEvent } from '../inbox/inbox.ts';
import type { EventOutcome } from './engine.ts';
import { findLinks } from './links.ts';
import type { MappingService } from './mappings.ts';
import type { LinkedEntity } from './policy.ts';
import type { DynamicsPort } from './ports.ts';
import { relatedColumn, relatedEntities, type RelatedKind } from './related-fields.ts';

// A change of a row that persons only show (a contact's account, anyone's owner) reaches each
// linked person it concerns: a FANOUT event (from the account or systemuser webhook step, or the
// sweep) is expanded into one sync event per linked record that points at the row. Those events
// take the ordinary path (leases, reads, journal, fenced writes, commit, the activity log), and the
// engine's batches fill each Marketo call with up to 300 persons' writes. Expanding is repeatable:
// the events' dedupe keys are derived from the FANOUT event, so a retry queues nothing twice.

export const FANOUT = 'FANOUT';

export interface FanoutRequest {
  kind: RelatedKind;
  /** the account or systemuser */
  id: string;
  /** the columns the change touched, when the webhook said (empty: unknown, every field may have changed) */
  changedAttributes: readonly string[];
}

/** The FANOUT event for a change of an account or a systemuser. */
export function fanoutEvent(
  request: FanoutRequest,
  from: { origin: NewChangeEvent['origin']; dedupeKey: string; payload?: Record<string, unknown> },
): NewChangeEvent {
  return {
    source: 'DYNAMICS',
    origin: from.origin,
    operation: FANOUT,
    dynamicsId: request.id,
    payload: { ...from.payload, related: request.kind, changedAttributes: request.changedAttributes },
    dedupeKey: from.dedupeKey,
  };
}

export function fanoutRequestOf(event: Pick<ClaimedChangeEvent, 'dynamicsId' | 'payload'>): FanoutRequest | null {
  const payload = (event.payload ?? {}) as { related?: unknown; changedAttributes?: unknown };
  if ((payload.related !== 'account' && payload.related !== 'owner') || !event.dynamicsId) return null;
  const changed = Array.isArray(payload.changedAttributes) ? payload.changedAttributes.filter((a): a is string => typeof a === 'string') : [];
  return { kind: payload.related, id: event.dynamicsId.toLowerCase(), changedAttributes: changed };
}

/**
 * Whether the change can alter what a person shows: it touched a column some enabled mapping reads
 * from that row (an unknown set of columns always can).
 */
export function concernsPersons(request: FanoutRequest, mappedAttributes: readonly string[]): boolean {
  const read = new Set(mappedAttributes.flatMap((a) => {
    const ref = relatedColumn(a);
    return ref && ref.kind === request.kind ? [ref.column.toLowerCase()] : [];
  }));
  if (read.size === 0) return false;
  return request.changedAttributes.length === 0 || request.changedAttributes.some((a) => read.has(a.toLowerCase()));
}

/** One sync event per linked record that points at the row; unlinked records concern no person. */
export function fannedOutEvents(
  event: Pick<ClaimedChangeEvent, 'id' | 'origin'>,
  request: FanoutRequest,
  links: readonly { marketoId: number; entity: LinkedEntity; dynamicsId: string }[],
): NewChangeEvent[] {
  return links.map((link) => ({
    source: 'DYNAMICS',
    origin: event.origin,
    operation: 'UPDATE',
    marketoId: link.marketoId,
    dynamicsEntity: link.entity,
    dynamicsId: link.dynamicsId,
    payload: { fannedOutFrom: { kind: request.kind, id: request.id, eventId: event.id } },
    dedupeKey: `fanout:${event.id}:${link.dynamicsId}`,
  }));
}

export interface FanoutOptions {
  db: Database;
  dynamics: DynamicsPort;
  mappings: MappingService;
  /** wakes the inbox worker once the events are queued */
  notify: () => void;
  /** events per insert statement; default 1000 */
  pageSize?: number;
}

export function createFanout(options: FanoutOptions) {
  const { db, dynamics, mappings } = options;
  const pageSize = options.pageSize ?? 1000;

  async function mappedAttributes(kind: RelatedKind): Promise<string[]> {
    const all = await Promise.all(relatedEntities[kind].map(async (entity) => (await mappings.forEntity(entity)).bindings.map((b) => b.dynamicsAttribute)));
    return all.flat();
  }

  return {
    /** Expands a FANOUT event into the sync events of every linked record it concerns. */
    async expand(event: ClaimedChangeEvent): Promise<EventOutcome> {
      const request = fanoutRequestOf(event);
      if (!request) return { status: 'dead', reason: 'a FANOUT event without a related row (bug)' };
      if (!concernsPersons(request, await mappedAttributes(request.kind))) {
        return { status: 'done', linkId: null, note: `the ${request.kind} change touched no mapped column` };
      }
      const records = await dynamics.recordsReferencing(request.kind, request.id);
      let queued = 0;
      for (let i = 0; i < records.length; i += pageSize) {
        const page = records.slice(i, i + pageSize);
        const links = await findLinks(db.prisma, { dynamicsIds: page.map((r) => r.id) });
        const result = await enqueueMany(db.prisma, fannedOutEvents(event, request, links.map((l) => ({ marketoId: l.marketoId, entity: l.entity, dynamicsId: l.dynamicsId }))));
        queued += result.queued;
      }
      if (queued > 0) options.notify();
      return { status: 'done', linkId: null, note: `${request.kind} ${request.id}: ${records.length} records point at it, ${queued} linked persons queued` };
    },
  };
}

export type Fanout = ReturnType<typeof createFanout>;
