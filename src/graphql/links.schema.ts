import type { Activity, ActivityType, Prisma, SyncLink } from '../db/generated/client.ts';
import type { ActivityField } from '../sync/activities.ts';
import type { BlockedValue } from '../sync/merge.ts';
import type { FieldOrigin } from '../sync/links.ts';
import { shownActivities } from '../sync/journal.ts';
import type { CanonicalValue } from '../sync/values.ts';
import { badInput, type Builder } from './builder.ts';
import { decodeCursor, isUuid, pageSize, toConnection } from './connection.ts';
import type { CollisionRow, Refs } from './refs.ts';

// The "why did (or didn't) this person sync" part: links with their snapshot and its origins,
// the activity log, and collisions.

export function parseMarketoId(value: string): number {
  const id = /^\d{1,10}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(id) || id < 1 || id > 2_147_483_647) throw badInput(`marketoId must be a positive integer, got ${JSON.stringify(value)}`);
  return id;
}

export function parseDynamicsId(value: string): string {
  const id = value.trim().replace(/^\{|\}$/g, '').toLowerCase();
  if (!isUuid(id)) throw badInput(`dynamicsId must be a GUID, got ${JSON.stringify(value)}`);
  return id;
}

const asRecord = <T>(json: Prisma.JsonValue): Record<string, T> =>
  json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, T>) : {};

export function activityFields(activity: Activity): Partial<ActivityField>[] {
  return Array.isArray(activity.fields)
    ? activity.fields.filter((f): f is Prisma.JsonObject => f !== null && typeof f === 'object' && !Array.isArray(f)).map((f) => f as Partial<ActivityField>)
    : [];
}

interface LinkFieldRow {
  field: string;
  value: CanonicalValue;
  origin: FieldOrigin | null;
  blocked: BlockedValue | null;
}

function linkFields(link: SyncLink): LinkFieldRow[] {
  const snapshot = asRecord<CanonicalValue>(link.snapshot);
  const origins = asRecord<FieldOrigin>(link.fieldOrigins);
  const blocked = asRecord<BlockedValue>(link.rejectedValues);
  const names = [...new Set([...Object.keys(snapshot), ...Object.keys(origins), ...Object.keys(blocked)])].sort();
  return names.map((field) => ({ field, value: snapshot[field] ?? null, origin: origins[field] ?? null, blocked: blocked[field] ?? null }));
}

const knownSide = (side: unknown) => (side === 'MARKETO' || side === 'DYNAMICS' ? side : null);
const knownRule = (rule: unknown) =>
  rule === 'LEAD_MARKETO_WINS' || rule === 'CONTACT_DYNAMICS_WINS' || rule === 'FIELD_OVERRIDE' || rule === 'ONE_WAY' ? rule : null;
const instant = (at: string) => {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? null : date;
};

export function addLinkSchema(builder: Builder, refs: Refs) {
  const linkField = addLinkFieldTypes(builder, refs);
  addActivityTypes(builder, refs);
  addSyncLinkType(builder, refs, linkField);
  addLinkQueries(builder, refs);
  addLinkMutations(builder, refs);
}

/** A link's fields: the agreed value, where it came from, and a value held back from one side. */
function addLinkFieldTypes(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const FieldOriginRef = builder.objectRef<FieldOrigin>('FieldOrigin').implement({
    description: 'Where the synced value of a field last came from.',
    fields: (t) => ({
      side: t.field({ type: enums.SyncSide, description: 'the system the value came from', resolve: (o) => knownSide(o.side) ?? 'MARKETO' }),
      at: t.field({ type: 'DateTime', nullable: true, description: 'when it came from there', resolve: (o) => instant(o.at) }),
    }),
  });

  const BlockedValueRef = builder.objectRef<BlockedValue>('BlockedValue').implement({
    description: 'A value a side refused or cannot take; it is not retried until it changes.',
    fields: (t) => ({
      side: t.field({ type: enums.SyncSide, description: 'the side that refused it', resolve: (b) => knownSide(b.side) ?? 'DYNAMICS' }),
      value: t.field({ type: 'FieldValue', nullable: true, resolve: (b) => b.value }),
      reason: t.field({ type: enums.BlockReason, resolve: (b) => (b.reason === 'read_only' ? 'READ_ONLY' : 'VALIDATION') }),
      message: t.string({ nullable: true, description: "Dynamics' own message for a validation rejection", resolve: (b) => b.message ?? null }),
    }),
  });

  const LinkFieldRef = builder.objectRef<LinkFieldRow>('LinkField').implement({
    description: 'One field of a link: the value both sides last agreed on (the merge base), and its origin.',
    fields: (t) => ({
      field: t.exposeString('field', { description: 'canonical field name (see fieldMappings)' }),
      value: t.field({ type: 'FieldValue', nullable: true, description: 'the last synced value, normalised', resolve: (f) => f.value }),
      origin: t.field({ type: FieldOriginRef, nullable: true, description: 'which side the value came from and when; null when unknown', resolve: (f) => f.origin }),
      blocked: t.field({ type: BlockedValueRef, nullable: true, description: 'a value held back from one side, if any', resolve: (f) => f.blocked }),
    }),
  });
  return LinkFieldRef;
}

/** The activity log's entries, their fields, and the collisions among them. */
function addActivityTypes(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const ActivityFieldRef = builder.objectRef<Partial<ActivityField>>('ActivityField').implement({
    description:
      'One field an activity is about. Values are FieldValue scalars (JSON string, number, boolean or null); ' +
      'null also stands for "no value" (e.g. a base for a field never synced before).',
    fields: (t) => ({
      field: t.string({ description: 'canonical field name', resolve: (f) => f.field ?? '' }),
      side: t.field({ type: enums.SyncSide, nullable: true, description: 'the side that was (or would have been) written', resolve: (f) => knownSide(f.side) }),
      oldValue: t.field({ type: 'FieldValue', nullable: true, description: 'the value on `side` before the write', resolve: (f) => f.oldValue ?? null }),
      newValue: t.field({ type: 'FieldValue', nullable: true, description: 'the value written to `side`', resolve: (f) => f.newValue ?? null }),
      baseValue: t.field({ type: 'FieldValue', nullable: true, description: 'the last value both sides agreed on (the merge base)', resolve: (f) => f.baseValue ?? null }),
      losingValue: t.field({ type: 'FieldValue', nullable: true, description: 'for a collision: the overwritten value, kept here so nothing is lost', resolve: (f) => f.losingValue ?? null }),
      marketoValue: t.field({ type: 'FieldValue', nullable: true, description: "for a collision: Marketo's value", resolve: (f) => f.marketoValue ?? null }),
      dynamicsValue: t.field({ type: 'FieldValue', nullable: true, description: "for a collision: Dynamics' value", resolve: (f) => f.dynamicsValue ?? null }),
      winner: t.field({ type: enums.SyncSide, nullable: true, description: 'for a collision: the side whose value won', resolve: (f) => knownSide(f.winner) }),
      rule: t.field({ type: enums.CollisionRule, nullable: true, description: 'for a collision: why that side won', resolve: (f) => knownRule(f.rule) }),
    }),
  });

  refs.Activity.implement({
    description: 'One entry of a person\'s activity log.',
    fields: (t) => ({
      id: t.id({ description: 'increasing with time', resolve: (a) => a.id.toString() }),
      type: t.field({ type: enums.ActivityType, resolve: (a) => a.type }),
      state: t.field({ type: enums.ActivityState, resolve: (a) => a.state }),
      occurredAt: t.field({ type: 'DateTime', resolve: (a) => a.occurredAt }),
      message: t.exposeString('message', { nullable: true, description: "a sentence for people; Dynamics' own message for VALIDATION_REJECTED" }),
      marketoId: t.id({ nullable: true, resolve: (a) => a.marketoId }),
      dynamicsEntity: t.field({ type: enums.DynamicsEntity, nullable: true, resolve: (a) => a.dynamicsEntity }),
      dynamicsId: t.id({ nullable: true, resolve: (a) => a.dynamicsId }),
      changeEventId: t.id({ nullable: true, description: 'the change event that caused this entry', resolve: (a) => a.changeEventId }),
      fields: t.field({ type: [ActivityFieldRef], resolve: (a) => activityFields(a) }),
      link: t.field({
        type: refs.SyncLink,
        nullable: true,
        description: 'the link this entry belongs to now (found by the ids on the entry if its link moved)',
        resolve: (a, _args, ctx) => ctx.loaders.linkFor(a),
      }),
    }),
  });

  refs.Collision.implement({
    description: 'A field that changed on both sides since the last sync, and how it was settled.',
    fields: (t) => ({
      id: t.id({ description: 'the COLLISION_RESOLVED activity id (pass it to resolveCollision)', resolve: (c) => c.activity.id.toString() }),
      occurredAt: t.field({ type: 'DateTime', resolve: (c) => c.activity.occurredAt }),
      marketoId: t.id({ nullable: true, resolve: (c) => c.activity.marketoId }),
      dynamicsEntity: t.field({ type: enums.DynamicsEntity, nullable: true, resolve: (c) => c.activity.dynamicsEntity }),
      dynamicsId: t.id({ nullable: true, resolve: (c) => c.activity.dynamicsId }),
      field: t.string({ resolve: (c) => c.field.field ?? '' }),
      marketoValue: t.field({ type: 'FieldValue', nullable: true, resolve: (c) => c.field.marketoValue ?? null }),
      dynamicsValue: t.field({ type: 'FieldValue', nullable: true, resolve: (c) => c.field.dynamicsValue ?? null }),
      baseValue: t.field({ type: 'FieldValue', nullable: true, description: 'the value both sides had agreed on before', resolve: (c) => c.field.baseValue ?? null }),
      winner: t.field({ type: enums.SyncSide, nullable: true, resolve: (c) => knownSide(c.field.winner) }),
      rule: t.field({ type: enums.CollisionRule, nullable: true, resolve: (c) => knownRule(c.field.rule) }),
      keptValue: t.field({ type: 'FieldValue', nullable: true, description: 'the winning value, now on both sides', resolve: (c) => c.field.newValue ?? null }),
      losingValue: t.field({ type: 'FieldValue', nullable: true, description: 'the overwritten value (never lost)', resolve: (c) => c.field.losingValue ?? null }),
      overwrittenSide: t.field({ type: enums.SyncSide, nullable: true, description: 'the side whose value was overwritten', resolve: (c) => knownSide(c.field.side) }),
      message: t.string({ nullable: true, resolve: (c) => c.activity.message }),
      link: t.field({ type: refs.SyncLink, nullable: true, resolve: (c, _args, ctx) => ctx.loaders.linkFor(c.activity) }),
    }),
  });
}

/** The person view: a link with its fields, activities and open events. */
function addSyncLinkType(builder: Builder, refs: Refs, LinkFieldRef: ReturnType<typeof addLinkFieldTypes>) {
  const { enums } = refs;

  refs.SyncLink.implement({
    description: 'A Marketo person linked to one Dynamics lead or contact: the person view.',
    fields: (t) => ({
      id: t.exposeID('id'),
      marketoId: t.id({ resolve: (l) => l.marketoId }),
      dynamicsEntity: t.field({ type: enums.DynamicsEntity, resolve: (l) => l.dynamicsEntity }),
      dynamicsId: t.exposeID('dynamicsId'),
      status: t.field({ type: enums.LinkStatus, resolve: (l) => l.status }),
      lastSyncedAt: t.field({ type: 'DateTime', nullable: true, resolve: (l) => l.lastSyncedAt }),
      createdAt: t.field({ type: 'DateTime', resolve: (l) => l.createdAt }),
      updatedAt: t.field({ type: 'DateTime', resolve: (l) => l.updatedAt }),
      fields: t.field({
        type: [LinkFieldRef],
        description: 'the current snapshot: per field, the last synced value, which side it came from and when, and any value held back',
        resolve: (l) => linkFields(l),
      }),
      activities: t.field({
        type: refs.connections.Activity,
        description: "this person's activity log, newest first (entries of this link, its person or its Dynamics record)",
        args: {
          types: t.arg({ type: [enums.ActivityType], required: false }),
          first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
          after: t.arg.string({ required: false }),
        },
        resolve: async (l, args, ctx) => {
          const size = pageSize(args.first);
          const after = decodeCursor('activity', args.after);
          const rows = await ctx.loaders.linkActivities.load({
            linkId: l.id,
            take: size + 1,
            before: after !== undefined ? BigInt(after) : null,
            types: args.types?.length ? [...args.types].sort() : null,
          });
          return toConnection(rows, size, 'activity', (a) => a.id.toString());
        },
      }),
      openChangeEvents: t.field({
        type: [refs.ChangeEvent],
        description: 'change events about this person that are not done yet (pending, processing, failed, dead), newest first, at most 20',
        resolve: (l, _args, ctx) => ctx.loaders.linkOpenEvents.load(l.id),
      }),
    }),
  });
}

const timeRange = (since: Date | null | undefined, until: Date | null | undefined) =>
  since || until ? { occurredAt: { ...(since ? { gte: since } : {}), ...(until ? { lt: until } : {}) } } : {};

/** link, links, activities and collisions: what an operator asks about a person. */
function addLinkQueries(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const LinkFilter = builder.inputType('LinkFilter', {
    description: 'Narrows `links`; all given conditions must hold.',
    fields: (t) => ({
      status: t.field({ type: [enums.LinkStatus], required: false, description: 'any of these statuses' }),
      entity: t.field({ type: enums.DynamicsEntity, required: false }),
      updatedSince: t.field({ type: 'DateTime', required: false, description: 'links changed at or after this instant' }),
      hasFailures: t.boolean({
        required: false,
        description: 'true: links with a FAILED or DEAD change event or a value Dynamics refused; false: links with neither',
      }),
    }),
  });

  builder.queryFields((t) => ({
    link: t.field({
      type: refs.SyncLink,
      nullable: true,
      description: 'The link of a Marketo person or of a Dynamics record (both given: both must match). Null when there is none.',
      args: { marketoId: t.arg.id({ required: false }), dynamicsId: t.arg.id({ required: false }) },
      resolve: async (_root, args, ctx) => {
        if (!args.marketoId && !args.dynamicsId) throw badInput('pass marketoId or dynamicsId');
        return ctx.prisma.syncLink.findFirst({
          where: {
            ...(args.marketoId ? { marketoId: parseMarketoId(args.marketoId) } : {}),
            ...(args.dynamicsId ? { dynamicsId: parseDynamicsId(args.dynamicsId) } : {}),
          },
        });
      },
    }),
    links: t.field({
      type: refs.connections.SyncLink,
      description: 'Links, newest first.',
      args: {
        filter: t.arg({ type: LinkFilter, required: false }),
        first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
        after: t.arg.string({ required: false }),
      },
      resolve: async (_root, args, ctx) => {
        const size = pageSize(args.first);
        const after = decodeCursor('link', args.after);
        const filter = args.filter;
        const where: Prisma.SyncLinkWhereInput = {
          ...(filter?.status?.length ? { status: { in: [...filter.status] } } : {}),
          ...(filter?.entity ? { dynamicsEntity: filter.entity } : {}),
          ...(filter?.updatedSince ? { updatedAt: { gte: filter.updatedSince } } : {}),
        };
        if (typeof filter?.hasFailures === 'boolean') {
          const failing = await ctx.prisma.$queryRaw<{ id: string }[]>`
            SELECT l.id::text AS id FROM sync_link l
             WHERE l."rejectedValues" <> '{}'::jsonb
                OR EXISTS (SELECT 1 FROM change_event e
                            WHERE e.status IN ('FAILED', 'DEAD')
                              AND (e."linkId" = l.id OR e."marketoId" = l."marketoId" OR e."dynamicsId" = l."dynamicsId"))`;
          const ids = failing.map((row) => row.id);
          where.id = filter.hasFailures ? { in: ids } : { notIn: ids };
        }
        const rows = await ctx.prisma.syncLink.findMany({
          where,
          orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
          take: size + 1,
          ...(after ? { cursor: { id: after }, skip: 1 } : {}),
        });
        return toConnection(rows, size, 'link', (l) => l.id);
      },
    }),
    activities: t.field({
      type: refs.connections.Activity,
      description: 'The activity log, newest first: by person, by Dynamics record, by type and by time range (all given filters must hold).',
      args: {
        marketoId: t.arg.id({ required: false }),
        dynamicsId: t.arg.id({ required: false }),
        types: t.arg({ type: [enums.ActivityType], required: false }),
        since: t.arg({ type: 'DateTime', required: false, description: 'at or after this instant' }),
        until: t.arg({ type: 'DateTime', required: false, description: 'before this instant' }),
        first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
        after: t.arg.string({ required: false }),
      },
      resolve: async (_root, args, ctx) => {
        const size = pageSize(args.first);
        const after = decodeCursor('activity', args.after);
        const rows = await ctx.prisma.activity.findMany({
          where: {
            ...shownActivities,
            ...(args.marketoId ? { marketoId: parseMarketoId(args.marketoId) } : {}),
            ...(args.dynamicsId ? { dynamicsId: parseDynamicsId(args.dynamicsId) } : {}),
            ...(args.types?.length ? { type: { in: [...args.types] as ActivityType[] } } : {}),
            ...timeRange(args.since, args.until),
            ...(after !== undefined ? { id: { lt: BigInt(after) } } : {}),
          },
          orderBy: { id: 'desc' },
          take: size + 1,
        });
        return toConnection(rows, size, 'activity', (a) => a.id.toString());
      },
    }),
    collisions: t.field({
      type: refs.connections.Collision,
      description: 'Collisions (COLLISION_RESOLVED entries), newest first, with both values, the base, the winner and the rule.',
      args: {
        marketoId: t.arg.id({ required: false }),
        since: t.arg({ type: 'DateTime', required: false, description: 'at or after this instant' }),
        until: t.arg({ type: 'DateTime', required: false, description: 'before this instant' }),
        first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
        after: t.arg.string({ required: false }),
      },
      resolve: async (_root, args, ctx) => {
        const size = pageSize(args.first);
        const after = decodeCursor('activity', args.after);
        const rows = await ctx.prisma.activity.findMany({
          where: {
            type: 'COLLISION_RESOLVED',
            ...shownActivities,
            ...(args.marketoId ? { marketoId: parseMarketoId(args.marketoId) } : {}),
            ...timeRange(args.since, args.until),
            ...(after !== undefined ? { id: { lt: BigInt(after) } } : {}),
          },
          orderBy: { id: 'desc' },
          take: size + 1,
        });
        return toConnection(rows.map(toCollision), size, 'activity', (c) => c.activity.id.toString());
      },
    }),
  }));
}

/** requestPersonSync and resolveCollision. */
function addLinkMutations(builder: Builder, refs: Refs) {
  const { enums } = refs;

  const RequestPersonSyncPayload = builder
    .objectRef<{ ok: boolean; error: string | null; eventId: string | null }>('RequestPersonSyncPayload')
    .implement({
      description: 'The answer to requestPersonSync.',
      fields: (t) => ({
        ok: t.exposeBoolean('ok'),
        error: t.exposeString('error', { nullable: true }),
        eventId: t.exposeID('eventId', { nullable: true, description: 'the queued change event; follow it with changeEvents' }),
      }),
    });

  const ResolveCollisionPayload = builder
    .objectRef<{ ok: boolean; error: string | null; collision: CollisionRow | null }>('ResolveCollisionPayload')
    .implement({
      description: 'The answer to resolveCollision.',
      fields: (t) => ({
        ok: t.exposeBoolean('ok'),
        error: t.exposeString('error', { nullable: true }),
        collision: t.field({ type: refs.Collision, nullable: true, resolve: (p) => p.collision }),
      }),
    });

  builder.mutationFields((t) => ({
    requestPersonSync: t.field({
      type: RequestPersonSyncPayload,
      description: 'Re-syncs one person now, through the same conflict-safe path as webhooks (an OPERATOR change event).',
      args: { marketoId: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        let marketoId: number;
        try {
          marketoId = parseMarketoId(args.marketoId);
        } catch (error) {
          return { ok: false, error: (error as Error).message, eventId: null };
        }
        const { eventId } = await ctx.deps.actions.requestPersonSync(marketoId);
        return { ok: true, error: null, eventId };
      },
    }),
    resolveCollision: t.field({
      type: ResolveCollisionPayload,
      description: "Re-applies a collision's value on purpose: `keep` names the side whose value both systems should end up with.",
      args: { activityId: t.arg.id({ required: true }), keep: t.arg({ type: enums.SyncSide, required: true }) },
      resolve: async (_root, args, ctx) => {
        const refused = (error: string) => ({ ok: false, error, collision: null });
        if (!/^\d{1,19}$/.test(args.activityId)) return refused(`activityId must be an activity id, got ${JSON.stringify(args.activityId)}`);
        const activity = await ctx.prisma.activity.findUnique({ where: { id: BigInt(args.activityId) } });
        if (!activity) return refused(`no activity ${args.activityId}`);
        if (activity.type !== 'COLLISION_RESOLVED') return refused(`activity ${args.activityId} is ${activity.type}, not a collision`);
        const result = await ctx.deps.actions.resolveCollision(args.activityId, args.keep);
        return result.ok ? { ok: true, error: null, collision: toCollision(activity) } : refused(result.error ?? 'the collision could not be resolved');
      },
    }),
  }));
}

function toCollision(activity: Activity): CollisionRow {
  return { activity, field: activityFields(activity)[0] ?? {} };
}
