import type { BatchSync, BatchSyncItem } from '../db/generated/client.ts';
import type { Builder } from './builder.ts';
import type { Refs } from './refs.ts';

// Batch Sync Person: push a Marketo static list to Dynamics (sync/batch-sync-person.ts). Starting
// one queues it; a runner on some replica works through it page by page, and its progress and
// every person's outcome (as the Sync Person webhook would answer) are read here.

type StartPayload = { ok: boolean; error: string | null; batch: BatchSync | null };
type CancelPayload = { ok: boolean; error: string | null };

const MAX_ITEMS = 300;

export function addBatchSchema(builder: Builder, refs: Refs) {
  const Item = builder.objectRef<BatchSyncItem>('BatchSyncItem').implement({
    description: "One person's outcome in a batch: created, linked (already linked, or matched by email) or refused (with Dynamics' or Marketo's reason).",
    fields: (t) => ({
      marketoId: t.id({ resolve: (i) => i.marketoId }),
      outcome: t.exposeString('outcome', { description: 'created | linked | refused' }),
      dynamicsId: t.id({ nullable: true, resolve: (i) => i.dynamicsId }),
      message: t.exposeString('message', { nullable: true }),
      at: t.field({ type: 'DateTime', resolve: (i) => i.at }),
    }),
  });

  const Batch = builder.objectRef<BatchSync>('BatchSyncPerson').implement({
    description: 'A Batch Sync Person: a Marketo static list pushed to Dynamics through Sync Person, page by page (300 persons a page).',
    fields: (t) => ({
      id: t.exposeID('id'),
      listId: t.exposeInt('listId'),
      syncAs: t.field({ type: refs.enums.DynamicsEntity, resolve: (b) => b.dynamicsEntity }),
      assignTo: t.exposeString('assignTo', { nullable: true }),
      status: t.exposeString('status', { description: 'RUNNING | DONE | FAILED | CANCELLED' }),
      pages: t.exposeInt('pages', { description: 'list pages done' }),
      persons: t.exposeInt('persons', { description: 'persons done so far' }),
      created: t.exposeInt('created'),
      linked: t.exposeInt('linked'),
      refused: t.exposeInt('refused'),
      error: t.exposeString('error', { nullable: true, description: 'the last failure (a failed page is resumed from its cursor unless the status is FAILED)' }),
      requestedBy: t.exposeString('requestedBy'),
      createdAt: t.field({ type: 'DateTime', resolve: (b) => b.createdAt }),
      finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (b) => b.finishedAt }),
      items: t.field({
        type: [Item],
        description: `persons' outcomes, newest first (at most ${MAX_ITEMS})`,
        args: { outcome: t.arg.string({ required: false, description: 'only this outcome' }), first: t.arg.int({ required: false }) },
        resolve: (b, args, ctx) =>
          ctx.prisma.batchSyncItem.findMany({
            where: { batchId: b.id, ...(args.outcome ? { outcome: args.outcome } : {}) },
            orderBy: [{ at: 'desc' }, { marketoId: 'asc' }],
            take: Math.min(Math.max(args.first ?? 50, 1), MAX_ITEMS),
          }),
      }),
    }),
  });

  builder.queryFields((t) => ({
    batchSyncs: t.field({
      type: [Batch],
      description: 'Batch Sync Person runs, newest first (at most 50).',
      args: { first: t.arg.int({ required: false }) },
      resolve: (_root, args, ctx) => ctx.prisma.batchSync.findMany({ orderBy: { createdAt: 'desc' }, take: Math.min(Math.max(args.first ?? 20, 1), 50) }),
    }),
    batchSync: t.field({
      type: Batch,
      nullable: true,
      args: { id: t.arg.id({ required: true }) },
      resolve: (_root, args, ctx) => (/^[0-9a-f-]{36}$/i.test(String(args.id)) ? ctx.prisma.batchSync.findUnique({ where: { id: String(args.id) } }) : null),
    }),
  }));

  const StartBatchSyncPersonPayload = builder.objectRef<StartPayload>('StartBatchSyncPersonPayload').implement({
    description: 'The answer to startBatchSyncPerson.',
    fields: (t) => ({
      ok: t.exposeBoolean('ok'),
      error: t.exposeString('error', { nullable: true }),
      batch: t.field({ type: Batch, nullable: true, resolve: (p) => p.batch }),
    }),
  });
  const CancelBatchSyncPersonPayload = builder.objectRef<CancelPayload>('CancelBatchSyncPersonPayload').implement({
    description: 'The answer to cancelBatchSyncPerson.',
    fields: (t) => ({ ok: t.exposeBoolean('ok'), error: t.exposeString('error', { nullable: true }) }),
  });

  builder.mutationFields((t) => ({
    startBatchSyncPerson: t.field({
      type: StartBatchSyncPersonPayload,
      description:
        'Pushes every person of a Marketo static list to Dynamics, as "Sync Person to Microsoft" does one: each created (a lead by default) or linked to the record with its email. Runs in the background; follow it with batchSync.',
      args: {
        listId: t.arg.int({ required: true, description: 'the static list id (the number in its Marketo URL, #ST1001A1 -> 1001)' }),
        syncAs: t.arg({ type: refs.enums.DynamicsEntity, required: false, description: 'LEAD (default) or CONTACT' }),
        assignTo: t.arg.string({ required: false, description: 'owner of the records created: a systemuser id or domain name' }),
      },
      resolve: async (_root, args, ctx) => {
        const start = ctx.deps.actions.startBatchSyncPerson;
        if (!start) return { ok: false, error: 'this service runs no batch syncs', batch: null };
        if (args.listId < 1) return { ok: false, error: `listId must be a positive list id, got ${args.listId}`, batch: null };
        const { batchId } = await start({ listId: args.listId, entity: args.syncAs ?? 'LEAD', assignTo: args.assignTo ?? null, requestedBy: ctx.caller.name });
        return { ok: true, error: null, batch: await ctx.prisma.batchSync.findUnique({ where: { id: batchId } }) };
      },
    }),
    cancelBatchSyncPerson: t.field({
      type: CancelBatchSyncPersonPayload,
      description: 'Stops a running batch within seconds, between two persons (the persons already in hand finish); what it did stays, and the unfinished page is not counted.',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) => {
        const cancel = ctx.deps.actions.cancelBatchSyncPerson;
        if (!cancel) return { ok: false, error: 'this service runs no batch syncs' };
        if (!/^[0-9a-f-]{36}$/i.test(String(args.id))) return { ok: false, error: `no batch ${String(args.id)}` };
        return (await cancel(String(args.id))) ? { ok: true, error: null } : { ok: false, error: `batch ${String(args.id)} is not running` };
      },
    }),
  }));
}
