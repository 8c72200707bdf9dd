import type { PrismaClient } from '../../src/db/generated/client.ts';
import { completeMany } from '../../src/inbox/inbox.ts';

/**
 * Completes an event the way a worker does (claimed, then completeMany), so its throughput tally is
 * written too; `receivedSecondsAgo` sets its arrival before now, which becomes its latency.
 */
export async function completeEvent(prisma: PrismaClient, id: string, receivedSecondsAgo?: number): Promise<void> {
  await prisma.changeEvent.update({
    where: { id },
    data: {
      status: 'PROCESSING',
      leaseOwner: 'test-worker',
      ...(receivedSecondsAgo === undefined ? {} : { receivedAt: new Date(Date.now() - receivedSecondsAgo * 1000) }),
    },
  });
  if ((await completeMany(prisma, [{ id }], 'test-worker')) !== 1) throw new Error(`event ${id} was not completed`);
}
