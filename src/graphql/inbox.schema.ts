import type { ChangeEventStatus } from '../db/generated/client.ts';
import { replay } from '../inbox/inbox.ts';
import type { Builder } from './builder.ts';
import { decodeCursor, isUuid, pageSize, toConnection } from './connection.ts';
import { parseMarketoId } from './links.schema.ts';
import type { Refs } from './refs.ts';

// The inbox as operators see it: what is waiting, what failed and why, and replaying dead events.

/** replayChangeEvents(allDead: true) replays at most this many per call; call again for more. */
export const MAX_REPLAY = 500;

export function addInboxSchema(builder: Builder, refs: Refs) {
  const { enums } = refs;

  refs.ChangeEvent.implement({
    description: 'One inbox entry: an accepted webhook, a sweep discovery or an operator request.',
    fields: (t) => ({
      id: t.exposeID('id'),
      status: t.field({ type: enums.ChangeEventStatus, resolve: (e) => e.status }),
      source: t.field({ type: enums.ChangeSource, resolve: (e) => e.source }),
      origin: t.field({ type: enums.ChangeOrigin, resolve: (e) => e.origin }),
      operation: t.exposeString('operation', { description: 'CREATE | UPDATE | DELETE | SYNC_PERSON | RESYNC' }),
      marketoId: t.id({ nullable: true, resolve: (e) => e.marketoId }),
      dynamicsEntity: t.field({ type: enums.DynamicsEntity, nullable: true, resolve: (e) => e.dynamicsEntity }),
      dynamicsId: t.id({ nullable: true, resolve: (e) => e.dynamicsId }),
      attempts: t.exposeInt('attempts', { description: 'attempts so far (reset by a replay)' }),
      reason: t.string({ nullable: true, description: 'why the last attempt failed (FAILED and DEAD events)', resolve: (e) => e.lastError }),
      receivedAt: t.field({ type: 'DateTime', resolve: (e) => e.receivedAt }),
      nextAttemptAt: t.field({ type: 'DateTime', description: 'when it may next be tried (PENDING, FAILED); lease expiry while PROCESSING', resolve: (e) => e.nextAttemptAt }),
      completedAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => e.completedAt }),
      updatedAt: t.field({ type: 'DateTime', resolve: (e) => e.updatedAt }),
      payload: t.field({ type: 'JSON', description: 'the event as received (webhook hints, operator request)', resolve: (e) => e.payload }),
      link: t.field({ type: refs.SyncLink, nullable: true, resolve: (e, _args, ctx) => ctx.loaders.linkFor(e) }),
    }),
  });

  builder.queryFields((t) => ({
    changeEvents: t.field({
      type: refs.connections.ChangeEvent,
      description: 'Inbox entries, newest received first, optionally by status (e.g. [FAILED, DEAD] for the Sync Errors view).',
      args: {
        status: t.arg({ type: [enums.ChangeEventStatus], required: false }),
        marketoId: t.arg.id({ required: false }),
        source: t.arg({ type: enums.ChangeSource, required: false }),
        entity: t.arg({ type: enums.DynamicsEntity, required: false, description: 'events about a lead or a contact' }),
        first: t.arg.int({ required: false, description: 'page size, 1-100 (default 20)' }),
        after: t.arg.string({ required: false }),
      },
      resolve: async (_root, args, ctx) => {
        const size = pageSize(args.first);
        const after = decodeCursor('event', args.after);
        const marketoId = args.marketoId ? parseMarketoId(args.marketoId) : undefined;
        // receivedAt has microseconds: Prisma's cursor compares against the cursor row in SQL,
        // so no precision is lost through a JavaScript Date.
        const rows = await ctx.prisma.changeEvent.findMany({
          where: {
            ...(args.status?.length ? { status: { in: [...args.status] as ChangeEventStatus[] } } : {}),
            ...(marketoId !== undefined ? { marketoId } : {}),
            ...(args.source ? { source: args.source } : {}),
            ...(args.entity ? { dynamicsEntity: args.entity } : {}),
          },
          orderBy: [{ receivedAt: 'desc' }, { id: 'desc' }],
          take: size + 1,
          ...(after ? { cursor: { id: after }, skip: 1 } : {}),
        });
        return toConnection(rows, size, 'event', (e) => e.id);
      },
    }),
  }));

  const ReplayPayload = builder.objectRef<{ ok: boolean; error: string | null; replayed: string[]; skipped: string[] }>('ReplayChangeEventsPayload').implement({
    description: 'The answer to replayChangeEvent(s).',
    fields: (t) => ({
      ok: t.exposeBoolean('ok', { description: 'true when every requested event was replayed' }),
      error: t.exposeString('error', { nullable: true }),
      replayed: t.exposeIDList('replayed', { description: 'events set back to PENDING with their attempts reset' }),
      skipped: t.exposeIDList('skipped', { description: 'events not replayed: unknown, or not DEAD' }),
    }),
  });

  async function replayAll(prisma: Parameters<typeof replay>[0], ids: readonly string[]) {
    const replayed: string[] = [];
    const skipped: string[] = [];
    for (const id of ids) {
      if (isUuid(id) && (await replay(prisma, id.toLowerCase()))) replayed.push(id);
      else skipped.push(id);
    }
    return { replayed, skipped };
  }

  builder.mutationFields((t) => ({
    replayChangeEvent: t.field({
      type: ReplayPayload,
      description: 'Replays one DEAD change event: back to PENDING with its attempts reset.',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        const result = await replayAll(ctx.prisma, [args.id]);
        if (result.replayed.length) return { ok: true, error: null, ...result };
        const event = isUuid(args.id) ? await ctx.prisma.changeEvent.findUnique({ where: { id: args.id.toLowerCase() } }) : null;
        const error = event ? `change event ${args.id} is ${event.status}; only DEAD events can be replayed` : `no change event ${args.id}`;
        return { ok: false, error, ...result };
      },
    }),
    replayChangeEvents: t.field({
      type: ReplayPayload,
      description: `Replays DEAD change events: the given ids, or with allDead every dead event (narrowed by source and entity when given; at most ${MAX_REPLAY} per call, oldest first).`,
      args: {
        ids: t.arg.idList({ required: false }),
        allDead: t.arg.boolean({ required: false }),
        source: t.arg({ type: enums.ChangeSource, required: false, description: 'with allDead: only events from this source' }),
        entity: t.arg({ type: enums.DynamicsEntity, required: false, description: 'with allDead: only events about this entity' }),
      },
      resolve: async (_root, args, ctx) => {
        if (!args.allDead && !args.ids?.length) return { ok: false, error: 'pass ids or allDead: true', replayed: [], skipped: [] };
        const matching = { status: 'DEAD' as const, ...(args.source ? { source: args.source } : {}), ...(args.entity ? { dynamicsEntity: args.entity } : {}) };
        const ids = args.allDead
          ? (await ctx.prisma.changeEvent.findMany({ where: matching, select: { id: true }, orderBy: { receivedAt: 'asc' }, take: MAX_REPLAY })).map((e) => e.id)
          : [...new Set(args.ids ?? [])];
        const result = await replayAll(ctx.prisma, ids);
        const ok = result.skipped.length === 0;
        return { ok, error: ok ? null : `${result.skipped.length} event(s) were not replayed: unknown or not DEAD`, ...result };
      },
    }),
  }));
}
