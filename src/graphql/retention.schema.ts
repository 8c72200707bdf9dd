import { readLastPrune, type LastPrune } from '../retention/index.ts';
import type { Builder } from './builder.ts';
import type { Refs } from './refs.ts';

// syncStatus.lastPrune: the most recent retention pass of any replica (stored in service_setting).

export function addRetentionSchema(builder: Builder, refs: Refs) {
  const Removed = builder.objectRef<LastPrune['removed']>('PrunedRows').implement({
    description: 'Rows a retention pass deleted, per table.',
    fields: (t) => ({
      changeEvents: t.int({ description: 'DONE change events past RETENTION_DONE_EVENTS_DAYS', resolve: (r) => r.change_event }),
      activities: t.int({ description: 'activity log entries past RETENTION_ACTIVITY_DAYS', resolve: (r) => r.activity }),
      syncRuns: t.int({ description: 'finished sweeps past RETENTION_SYNC_RUN_DAYS', resolve: (r) => r.sync_run }),
      auditEntries: t.int({ description: 'audit entries past RETENTION_AUDIT_DAYS', resolve: (r) => r.audit_entry }),
      throughputMinutes: t.int({ description: 'per-minute throughput tallies past RETENTION_DONE_EVENTS_DAYS', resolve: (r) => r.throughput_minute ?? 0 }),
    }),
  });
  const LastPruneRef = builder.objectRef<LastPrune>('RetentionPass').implement({
    description: 'One retention pass.',
    fields: (t) => ({
      at: t.field({ type: 'DateTime', description: 'when it started (its cutoffs count back from here)', resolve: (p) => p.at }),
      removed: t.field({ type: Removed, resolve: (p) => p.removed }),
      durationMs: t.exposeInt('durationMs'),
      interrupted: t.exposeBoolean('interrupted', { description: 'stopped early (lease lost, shutdown); the next pass continues' }),
    }),
  });
  builder.objectField(refs.SyncStatus, 'lastPrune', (t) =>
    t.field({
      type: LastPruneRef,
      nullable: true,
      description: 'The most recent retention pass (any replica); null before the first.',
      resolve: (_s, _args, ctx) => readLastPrune(ctx.prisma),
    }),
  );
}
