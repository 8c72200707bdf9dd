import { parseArgs } from 'node:util';
import type { PrismaClient } from '../db/generated/client.ts';
import { queueBatchSync } from './batch-sync-person.ts';

// `npm run batch-sync -- start <listId> [--as lead|contact] [--assign-to <owner>] | status [<batch id>]`:
// Batch Sync Person from a shell, on the database the service uses (same DATABASE_URL / DATA_DIR).
// `start` queues the batch; a running service (any replica) works through it in the background,
// as it does for the console and GraphQL. `status` prints the batches, or one, with its counts.

export const BATCH_SYNC_USAGE = `usage:
  npm run batch-sync -- start <static list id> [--as lead|contact] [--assign-to <systemuser id or domain name>]
  npm run batch-sync -- status [<batch id>]`;

export interface BatchSyncCommandResult {
  /** 0 done, 1 not found, 2 bad usage */
  code: number;
  output: string;
}

const line = (b: { id: string; listId: number; dynamicsEntity: string; status: string; pages: number; persons: number; created: number; linked: number; refused: number; error: string | null; createdAt: Date }) =>
  [b.id, b.createdAt.toISOString(), `list ${b.listId}`, b.dynamicsEntity.toLowerCase().padEnd(7), b.status.padEnd(9), `pages ${b.pages}`, `persons ${b.persons}`, `created ${b.created}`, `linked ${b.linked}`, `refused ${b.refused}`, b.error ?? ''].join('  ').trimEnd();

export async function runBatchSyncCommand(prisma: PrismaClient, argv: string[]): Promise<BatchSyncCommandResult> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { as: { type: 'string', default: 'lead' }, 'assign-to': { type: 'string' } } });
  } catch (error) {
    return { code: 2, output: `${error instanceof Error ? error.message : String(error)}\n${BATCH_SYNC_USAGE}\n` };
  }
  const [command, arg] = parsed.positionals;
  switch (command) {
    case 'start': {
      if (!arg || !/^\d{1,9}$/.test(arg) || Number(arg) < 1) return { code: 2, output: `start needs the static list id (a number)\n${BATCH_SYNC_USAGE}\n` };
      const as = parsed.values.as;
      if (as !== 'lead' && as !== 'contact') return { code: 2, output: `--as must be lead or contact\n${BATCH_SYNC_USAGE}\n` };
      const batch = await queueBatchSync(prisma, { listId: Number(arg), entity: as === 'lead' ? 'LEAD' : 'CONTACT', assignTo: parsed.values['assign-to'] ?? null, requestedBy: 'cli' });
      return { code: 0, output: `queued ${batch.id}: list ${batch.listId} as ${as}; a running service works through it (npm run batch-sync -- status ${batch.id})\n` };
    }
    case 'status': {
      if (arg) {
        if (!/^[0-9a-f-]{36}$/i.test(arg)) return { code: 1, output: `no batch ${arg}\n` };
        const batch = await prisma.batchSync.findUnique({ where: { id: arg } });
        if (!batch) return { code: 1, output: `no batch ${arg}\n` };
        const refused = await prisma.batchSyncItem.findMany({ where: { batchId: arg, outcome: 'refused' }, orderBy: { marketoId: 'asc' }, take: 50 });
        return { code: 0, output: [line(batch), ...refused.map((i) => `  refused person ${i.marketoId}: ${i.message ?? ''}`)].join('\n') + '\n' };
      }
      const batches = await prisma.batchSync.findMany({ orderBy: { createdAt: 'desc' }, take: 20 });
      return { code: 0, output: batches.length ? `${batches.map(line).join('\n')}\n` : 'no batch has run yet\n' };
    }
    default:
      return { code: 2, output: `${BATCH_SYNC_USAGE}\n` };
  }
}
