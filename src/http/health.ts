import type { Database } from '../db/database.ts';
import { migrationStatus } from '../db/migrate.ts';

export interface ConnectorHealth {
  ok: boolean;
  /** live: a real system; sandbox: the built-in simulator */
  mode: 'live' | 'sandbox';
  detail?: string;
}

/** A cheap check of one outside system; implementations cache, so /readyz never burns API quota. */
export interface ConnectorProbe {
  name: string;
  check(): Promise<ConnectorHealth>;
}

export interface Readiness {
  status: 'ready' | 'degraded' | 'unavailable';
  sandbox: boolean;
  draining: boolean;
  database: { ok: boolean; engine: Database['engine']; latencyMs?: number; error?: string };
  migrations: { current: boolean; pending: string[] };
  connectors: Record<string, ConnectorHealth>;
  message?: string;
}

export interface HealthOptions {
  db: Database;
  migrationsDir: string;
  sandbox: boolean;
  probes: ConnectorProbe[];
  draining: () => boolean;
  now?: () => number;
  /** how long a probe may take before it counts as failed (default 5 s) */
  probeTimeoutMs?: number;
}

/**
 * A probe's answer, or a failure once it has taken too long: its vendor call may be waiting for
 * the deployment's budget (a replica that just joined holds no slice yet), and /readyz must still
 * answer an orchestrator promptly.
 */
function bounded(probe: ConnectorProbe, ms: number, mode: ConnectorHealth['mode']): Promise<ConnectorHealth> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<ConnectorHealth>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, mode, detail: `no answer within ${ms / 1000} s (the vendor, or this replica's share of its budget, is busy)` }), ms);
    timer.unref();
  });
  return Promise.race([probe.check(), late]).finally(() => clearTimeout(timer));
}

export function createHealth(options: HealthOptions) {
  const now = options.now ?? Date.now;
  return {
    async readiness(): Promise<Readiness> {
      const database: Readiness['database'] = { ok: false, engine: options.db.engine };
      let migrations: Readiness['migrations'] = { current: false, pending: [] };
      const started = now();
      try {
        await options.db.prisma.$queryRaw`SELECT 1`;
        database.ok = true;
        database.latencyMs = now() - started;
        const status = await migrationStatus(options.db, options.migrationsDir);
        migrations = { current: status.current, pending: status.pending };
      } catch (error) {
        database.error = error instanceof Error ? error.message : String(error);
      }
      const connectors: Record<string, ConnectorHealth> = {};
      await Promise.all(
        options.probes.map(async (probe) => {
          try {
            connectors[probe.name] = await bounded(probe, options.probeTimeoutMs ?? 5_000, options.sandbox ? 'sandbox' : 'live');
          } catch (error) {
            connectors[probe.name] = {
              ok: false,
              mode: options.sandbox ? 'sandbox' : 'live',
              detail: error instanceof Error ? error.message : String(error),
            };
          }
        }),
      );
      const draining = options.draining();
      // A vendor outage does not take the replica out of rotation: intake only needs the
      // database, and refusing webhooks would lose Marketo's (it never retries). It is reported.
      const status =
        !database.ok || !migrations.current || draining
          ? 'unavailable'
          : Object.values(connectors).every((c) => c.ok)
            ? 'ready'
            : 'degraded';
      return {
        status,
        sandbox: options.sandbox,
        draining,
        database,
        migrations,
        connectors,
        ...(options.sandbox
          ? { message: 'SANDBOX MODE: no Marketo/Dynamics credentials are set; syncing between the built-in simulators' }
          : {}),
      };
    },
  };
}

export type Health = ReturnType<typeof createHealth>;
