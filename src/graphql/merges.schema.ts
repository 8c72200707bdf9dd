import type { Activity } from '../db/generated/client.ts';
import type { Builder } from './builder.ts';
import type { Refs } from './refs.ts';

// Merge conflicts: a merge in Marketo or Dynamics that would have joined two linked pairs into one
// person or record. The engine moves no link then (sync/merged-records.ts); it writes one
// MERGE_CONFLICT entry per link involved, under the merge's change event. Here they come back
// together, one conflict with every pair, for an operator to settle.

interface MergeConflictRow {
  entries: Activity[];
}

const MAX_CONFLICTS = 100;

export function addMergeSchema(builder: Builder, refs: Refs) {
  const Pair = builder.objectRef<Activity>('MergeConflictPair').implement({
    description: 'One linked pair a merge conflict involves, with its ids as they were at the merge.',
    fields: (t) => ({
      marketoId: t.id({ nullable: true, resolve: (a) => a.marketoId }),
      dynamicsEntity: t.field({ type: refs.enums.DynamicsEntity, nullable: true, resolve: (a) => a.dynamicsEntity }),
      dynamicsId: t.id({ nullable: true, resolve: (a) => a.dynamicsId }),
      link: t.field({ type: refs.SyncLink, nullable: true, description: 'the link now (its status says whether it still syncs)', resolve: (a, _args, ctx) => ctx.loaders.linkFor(a) }),
    }),
  });
  const Conflict = builder.objectRef<MergeConflictRow>('MergeConflict').implement({
    description: 'A merge that would have put two linked pairs on one person (Marketo) or one record (Dynamics): no link moved.',
    fields: (t) => ({
      id: t.id({ description: 'the first MERGE_CONFLICT activity id', resolve: (c) => c.entries[0]!.id.toString() }),
      occurredAt: t.field({ type: 'DateTime', resolve: (c) => c.entries[0]!.occurredAt }),
      message: t.string({ nullable: true, description: 'which merge, and every pair it involves', resolve: (c) => c.entries[0]!.message }),
      changeEventId: t.id({ nullable: true, description: 'the MERGED change event', resolve: (c) => c.entries[0]!.changeEventId }),
      pairs: t.field({ type: [Pair], description: 'every linked pair involved: the survivor’s (if linked) and the merged-away ones', resolve: (c) => c.entries }),
    }),
  });

  builder.queryFields((t) => ({
    mergeConflicts: t.field({
      type: [Conflict],
      description: `Merge conflicts, newest first (at most ${MAX_CONFLICTS}): each with every linked pair involved.`,
      args: { first: t.arg.int({ required: false, description: `how many, 1-${MAX_CONFLICTS} (default 20)` }) },
      resolve: async (_root, args, ctx) => {
        const wanted = Math.min(Math.max(args.first ?? 20, 1), MAX_CONFLICTS);
        // a conflict has a handful of entries: read enough of the newest to fill the page
        const rows = await ctx.prisma.activity.findMany({ where: { type: 'MERGE_CONFLICT' }, orderBy: { id: 'desc' }, take: wanted * 8 });
        const groups = new Map<string, Activity[]>();
        for (const row of rows.reverse()) {
          const key = row.changeEventId ?? `${row.message ?? ''}@${row.occurredAt.toISOString()}`;
          groups.set(key, [...(groups.get(key) ?? []), row]);
        }
        return [...groups.values()].reverse().slice(0, wanted).map((entries) => ({ entries }));
      },
    }),
  }));
}
