import { vendorReadAllowed } from './vendor-reads.ts';
import type { Activity, ChangeEvent, FieldMapping, Prisma, SyncLink } from '../db/generated/client.ts';
import { fieldSyncState, type FieldSyncState } from '../console/lineage.ts';
import type { BlockedValue } from '../sync/merge.ts';
import type { FieldAccess } from '../sync/mappings.ts';
import type { FieldOrigin } from '../sync/links.ts';
import { shownActivities } from '../sync/journal.ts';
import { readThroughput, type Throughput } from '../inbox/throughput.ts';
import { fullScope } from '../sweep/cursors.ts';
import { badInput, type Builder } from './builder.ts';
import { isUuid } from './connection.ts';
import type { GraphQLContext, LiveRecords } from './context.ts';
import { activityFields, parseDynamicsId, parseMarketoId } from './links.schema.ts';
import type { Refs } from './refs.ts';

// What the operator console asks that the rest of the API did not answer: find a person by
// email or either id, each mapped field's lineage (both live values, the agreed value, who set it
// last, when and through which event, and why a field does not sync), sweep figures, back-fill
// progress, and throughput and latency from the per-minute tallies the inbox keeps.

interface LineageRow {
  mapping: FieldMapping;
  state: FieldSyncState;
  reason: string | null;
  agreed: unknown;
  origin: FieldOrigin | null;
  blocked: BlockedValue | null;
  live: LiveRecords | null;
  lastChange: (Activity & { changeEvent: ChangeEvent | null }) | null;
}

type ThroughputRow = Throughput;

const WRITE_TYPES = ['CREATED_IN_DYNAMICS', 'CREATED_IN_MARKETO', 'UPDATED_IN_DYNAMICS', 'UPDATED_IN_MARKETO', 'COLLISION_RESOLVED'] as const;
/** how far back the lineage looks for the entry that last wrote each field */
const LINEAGE_DEPTH = 200;

const asRecord = <T>(json: Prisma.JsonValue): Record<string, T> =>
  json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, T>) : {};
const numberIn = (counts: Prisma.JsonValue, names: string[]) => {
  const record = asRecord<unknown>(counts);
  return names.reduce((sum, name) => sum + (typeof record[name] === 'number' ? record[name] : 0), 0);
};

export async function findPeople(prisma: GraphQLContext['prisma'], query: string, first: number): Promise<SyncLink[]> {
  const q = query.trim();
  if (/^\d{1,10}$/.test(q)) return prisma.syncLink.findMany({ where: { marketoId: parseMarketoId(q) }, take: first });
  if (isUuid(q.replace(/^\{|\}$/g, ''))) return prisma.syncLink.findMany({ where: { dynamicsId: parseDynamicsId(q) }, take: first });
  if (!q.includes('@')) throw badInput('search by an email address, a Marketo person id (digits) or a Dynamics record id (GUID)');
  // uses sync_link_snapshot_email_idx; canonical emails are lower-cased
  const ids = await prisma.$queryRaw<{ id: string }[]>`
    SELECT id::text AS id FROM sync_link WHERE snapshot->>'email' = ${q.toLowerCase()} ORDER BY "createdAt" DESC LIMIT ${first}`;
  return ids.length ? prisma.syncLink.findMany({ where: { id: { in: ids.map((r) => r.id) } }, orderBy: { createdAt: 'desc' } }) : [];
}

// one live read per link and request, however many fields ask for it
const liveReads = new WeakMap<GraphQLContext, Map<string, Promise<LiveRecords | null>>>();
function liveRecords(link: SyncLink, ctx: GraphQLContext): Promise<LiveRecords | null> {
  const perRequest = liveReads.get(ctx) ?? new Map<string, Promise<LiveRecords | null>>();
  liveReads.set(ctx, perRequest);
  let read = perRequest.get(link.id);
  if (!read) {
    const live = ctx.deps.live;
    read = live
      ? vendorReadAllowed(ctx).then((allowed) =>
          allowed.ok
            ? live.records({ marketoId: link.marketoId, entity: link.dynamicsEntity, dynamicsId: link.dynamicsId }).catch(
                (error: unknown): LiveRecords => ({ marketo: null, dynamics: null, dynamicsSyncFilter: null, errors: [error instanceof Error ? error.message : String(error)] }),
              )
            : { marketo: null, dynamics: null, dynamicsSyncFilter: null, errors: [allowed.message] },
        )
      : Promise.resolve(null);
    perRequest.set(link.id, read);
  }
  return read;
}

async function fieldLineage(link: SyncLink, ctx: GraphQLContext): Promise<LineageRow[]> {
  const [mappings, recent, live] = await Promise.all([
    ctx.prisma.fieldMapping.findMany({ where: { entity: link.dynamicsEntity }, orderBy: { canonicalField: 'asc' } }),
    ctx.prisma.activity.findMany({
      where: { type: { in: [...WRITE_TYPES] }, OR: [{ linkId: link.id }, { marketoId: link.marketoId }], ...shownActivities },
      orderBy: { id: 'desc' },
      take: LINEAGE_DEPTH,
      include: { changeEvent: true },
    }),
    liveRecords(link, ctx),
  ]);
  const snapshot = asRecord<unknown>(link.snapshot);
  const origins = asRecord<FieldOrigin>(link.fieldOrigins);
  const blocked = asRecord<BlockedValue>(link.rejectedValues);
  const created = recent.find((a) => a.type === 'CREATED_IN_MARKETO' || a.type === 'CREATED_IN_DYNAMICS');
  return mappings.map((mapping) => {
    const field = mapping.canonicalField;
    const { state, reason } = fieldSyncState({
      enabled: mapping.enabled,
      direction: mapping.direction,
      marketoField: mapping.marketoField,
      dynamicsAttribute: mapping.dynamicsAttribute,
      access: (mapping.access as FieldAccess | null) ?? null,
      linkStatus: link.status,
      blocked: blocked[field] ?? null,
    });
    return {
      mapping,
      state,
      reason,
      agreed: snapshot[field] ?? null,
      origin: origins[field] ?? null,
      blocked: blocked[field] ?? null,
      live,
      // a person created from the other side's record: its CREATED_IN_MARKETO entry lists no fields
      lastChange: recent.find((a) => activityFields(a).some((f) => f.field === field)) ?? (snapshot[field] != null ? (created ?? null) : null),
    };
  });
}

/** Where the agreed value came from: the link's own record, else the activity that last wrote the field. */
export function setBy(r: Pick<LineageRow, 'origin' | 'lastChange' | 'mapping'>): { side: 'MARKETO' | 'DYNAMICS'; at: Date } | null {
  if (r.origin && (r.origin.side === 'MARKETO' || r.origin.side === 'DYNAMICS')) return { side: r.origin.side, at: new Date(r.origin.at) };
  if (!r.lastChange) return null;
  const written = activityFields(r.lastChange).find((f) => f.field === r.mapping.canonicalField);
  // a write to one side carries the other side's value; a collision's value is the winner's
  const type = r.lastChange.type;
  const writtenTo = written?.side ?? (type === 'CREATED_IN_MARKETO' ? 'MARKETO' : type === 'CREATED_IN_DYNAMICS' ? 'DYNAMICS' : undefined);
  const side = type === 'COLLISION_RESOLVED' ? written?.winner : writtenTo === 'MARKETO' ? 'DYNAMICS' : writtenTo === 'DYNAMICS' ? 'MARKETO' : undefined;
  return side ? { side, at: r.lastChange.occurredAt } : null;
}

export function addConsoleSchema(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const FieldSyncStateEnum = builder.enumType('FieldSyncState', {
    description: 'Whether a mapped field syncs for one person, and if not, why.',
    values: {
      SYNCED: { description: 'syncs in its direction(s)' },
      DISABLED: { description: 'the mapping is disabled' },
      MISSING: { description: 'the Marketo field or the Dynamics column does not exist' },
      NOT_READABLE: { description: 'the Dynamics sync user may not read the column: the field never syncs' },
      NOT_UPDATABLE: { description: 'one side may not be written by the sync: changes stay on the other side' },
      REFUSED_BY_DYNAMICS: { description: 'Dynamics refused the value (business rule, plugin); not retried until it changes' },
      FILTERED: { description: 'the Dynamics record fails the sync filter' },
      LINK_ENDED: { description: 'the record was deleted on one side' },
      UNCHECKED: { description: "the sync has not read both systems' metadata for it yet" },
    } as const,
  });

  const FieldLineage = builder.objectRef<LineageRow>('FieldLineage').implement({
    description: "One mapped field of a person, side by side: both systems' values now, the value they last agreed on, who set it last, when and through which event, and whether it syncs.",
    fields: (t) => ({
      field: t.string({ description: 'canonical field name', resolve: (r) => r.mapping.canonicalField }),
      marketoField: t.string({ resolve: (r) => r.mapping.marketoField }),
      dynamicsAttribute: t.string({ resolve: (r) => r.mapping.dynamicsAttribute }),
      direction: t.field({ type: enums.SyncDirection, resolve: (r) => r.mapping.direction }),
      marketoValue: t.field({ type: 'FieldValue', nullable: true, description: "Marketo's value now (read live; null when unread or empty)", resolve: (r) => (r.live?.marketo?.[r.mapping.canonicalField] ?? null) as never }),
      dynamicsValue: t.field({ type: 'FieldValue', nullable: true, description: "Dynamics' value now (read live; null when unread or empty)", resolve: (r) => (r.live?.dynamics?.[r.mapping.canonicalField] ?? null) as never }),
      liveRead: t.boolean({ description: 'false when the live values could not be read (see SyncLink.liveErrors)', resolve: (r) => r.live !== null && r.live.errors.length === 0 }),
      agreedValue: t.field({ type: 'FieldValue', nullable: true, description: 'the value both sides last agreed on (the merge base)', resolve: (r) => r.agreed as never }),
      inAgreement: t.boolean({
        nullable: true,
        description: 'true when both live values equal the agreed value; null when the live values are unknown',
        resolve: (r) => {
          if (!r.live || r.live.errors.length) return null;
          const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
          return same(r.live.marketo?.[r.mapping.canonicalField], r.agreed) && same(r.live.dynamics?.[r.mapping.canonicalField], r.agreed);
        },
      }),
      lastSetBy: t.field({
        type: enums.SyncSide,
        nullable: true,
        description: 'the side the agreed value came from (recorded on the link, else read from the activity that last wrote it)',
        resolve: (r) => setBy(r)?.side ?? null,
      }),
      lastSetAt: t.field({ type: 'DateTime', nullable: true, description: 'when it came from there', resolve: (r) => setBy(r)?.at ?? null }),
      lastChange: t.field({ type: refs.Activity, nullable: true, description: 'the newest activity that wrote this field (within the last 200 writes of this person)', resolve: (r) => r.lastChange }),
      lastChangeEvent: t.field({ type: refs.ChangeEvent, nullable: true, description: 'the change event behind lastChange (webhook, sweep, flow action or operator)', resolve: (r) => r.lastChange?.changeEvent ?? null }),
      state: t.field({ type: FieldSyncStateEnum, resolve: (r) => r.state }),
      reason: t.string({ nullable: true, description: 'why it does not sync, in words', resolve: (r) => r.reason }),
      heldBackValue: t.field({ type: 'FieldValue', nullable: true, description: 'a value a side refused, held back until it changes', resolve: (r) => (r.blocked?.value ?? null) as never }),
    }),
  });

  builder.objectFields(refs.SyncLink, (t) => ({
    fieldLineage: t.field({
      type: [FieldLineage],
      description: "Every mapped field of the person's entity, side by side (reads both records live: one call to each system).",
      resolve: (link, _args, ctx) => fieldLineage(link, ctx),
    }),
    liveErrors: t.stringList({
      description: 'why the live values could not be read, per system (empty when both were read)',
      resolve: async (link, _args, ctx) => (await liveRecords(link, ctx))?.errors ?? ['live reads are not configured'],
    }),
  }));

  builder.objectFields(refs.SyncRun, (t) => ({
    durationSeconds: t.float({ nullable: true, description: 'finishedAt - startedAt; null while running', resolve: (r) => (r.finishedAt ? (r.finishedAt.getTime() - r.startedAt.getTime()) / 1000 : null) }),
    changesFound: t.int({
      description: 'changes and deletes the sweep discovered on both sides',
      resolve: (r) => numberIn(r.counts, ['marketoChanges', 'dynamicsChanges', 'marketoDeletes', 'dynamicsDeletes']),
    }),
    apiCalls: t.int({ description: 'Marketo and Dataverse calls the sweep made', resolve: (r) => numberIn(r.counts, ['marketoCalls', 'dynamicsCalls']) }),
  }));

  const BackfillProgress = builder
    .objectRef<{ requestedAt: Date; linksDone: number; linksTotal: number; running: boolean }>('BackfillProgress')
    .implement({
      description: "Where a field's back-fill is: the next sweep reconciles every link of the entity, in link id order.",
      fields: (t) => ({
        requestedAt: t.field({ type: 'DateTime', resolve: (p) => p.requestedAt }),
        running: t.exposeBoolean('running', { description: 'false: waiting for the next sweep to start it' }),
        linksDone: t.exposeInt('linksDone', { description: 'links of the entity already queued for reconciliation' }),
        linksTotal: t.exposeInt('linksTotal'),
      }),
    });

  builder.objectFields(refs.FieldMapping, (t) => ({
    backfill: t.field({
      type: BackfillProgress,
      nullable: true,
      description: 'the pending back-fill of this field, if any',
      resolve: async (m, _args, ctx) => {
        if (!m.backfillRequestedAt) return null;
        const cursor = await ctx.prisma.syncCursor.findUnique({ where: { system_scope: { system: 'DYNAMICS', scope: fullScope(m.entity) } } });
        const position = cursor?.token ?? null;
        // one index-only pass over sync_link_entity_id_idx (entity, id), up to the keyset position
        const [counts] = await ctx.prisma.$queryRaw<{ total: number; done: number }[]>`
          SELECT count(*)::int AS total, count(*) FILTER (WHERE ${position}::uuid IS NOT NULL AND id <= ${position}::uuid)::int AS done
            FROM sync_link WHERE "dynamicsEntity" = ${m.entity}::"DynamicsEntity"`;
        const [total, done] = [counts?.total ?? 0, counts?.done ?? 0];
        return { requestedAt: m.backfillRequestedAt, running: position !== null, linksDone: done, linksTotal: total };
      },
    }),
  }));

  const ThroughputPoint = builder.objectRef<ThroughputRow['perMinute'][number]>('ThroughputPoint').implement({
    description: 'Change events completed in one minute, by direction.',
    fields: (t) => ({
      minute: t.field({ type: 'DateTime', resolve: (p) => p.minute }),
      marketoToDynamics: t.exposeInt('marketoToDynamics', { description: 'events that came from Marketo' }),
      dynamicsToMarketo: t.exposeInt('dynamicsToMarketo', { description: 'events that came from Dynamics' }),
      operator: t.exposeInt('operator', { description: 'operator re-syncs and sweep reconciliations' }),
    }),
  });
  const LatencyStat = builder.objectRef<ThroughputRow['latency'][number]>('LatencyStat').implement({
    description: 'From a webhook arriving to its change being done on the other side (receivedAt to completedAt), per source.',
    fields: (t) => ({
      source: t.field({ type: enums.ChangeSource, resolve: (l) => l.source }),
      events: t.exposeInt('events'),
      p50Seconds: t.exposeFloat('p50Seconds', { description: 'median, from a histogram with 10% buckets: within 10% of the exact value' }),
      p99Seconds: t.exposeFloat('p99Seconds', { description: '99th percentile, within 10% of the exact value' }),
    }),
  });
  const Throughput = builder.objectRef<ThroughputRow>('Throughput').implement({
    description: 'Changes per minute by direction and webhook-to-other-side latency, from per-minute tallies the service keeps as events complete (pruned with done events).',
    fields: (t) => ({
      hours: t.exposeInt('hours'),
      perMinute: t.field({ type: [ThroughputPoint], description: 'minutes with at least one completed event, oldest first', resolve: (r) => r.perMinute }),
      latency: t.field({ type: [LatencyStat], description: 'webhook events completed in the window', resolve: (r) => r.latency }),
    }),
  });

  builder.queryFields((t) => ({
    findPeople: t.field({
      type: [refs.SyncLink],
      description: 'Finds linked persons by an email address, a Marketo person id or a Dynamics record id (GUID); newest link first.',
      args: { query: t.arg.string({ required: true }), first: t.arg.int({ required: false, description: 'at most this many, 1-20 (default 10)' }) },
      resolve: (_root, args, ctx) => findPeople(ctx.prisma, args.query, Math.min(20, Math.max(1, args.first ?? 10))),
    }),
    throughput: t.field({
      type: Throughput,
      description: 'Changes per minute by direction and webhook latency p50/p99 over the last hours (1-48, default 6).',
      args: { hours: t.arg.int({ required: false }) },
      resolve: (_root, args, ctx) => {
        const hours = args.hours ?? 6;
        if (!Number.isInteger(hours) || hours < 1 || hours > 48) throw badInput('hours must be from 1 to 48');
        return readThroughput(ctx.prisma, hours);
      },
    }),
  }));
}
