import type { Prisma, PrismaClient } from '../db/generated/client.ts';
import type { Caller } from './caller.ts';

// The audit log: one entry per operator action (every GraphQL mutation, token changes from the
// CLI), written after the action with how it ended. Entries hold the arguments an operator passed
// (ids, mapping settings), never a secret and never a person's field values; forgetPerson keeps
// even its arguments out, so its entry is an anonymous tombstone.

export type AuditOutcome = 'OK' | 'REFUSED' | 'FORBIDDEN' | 'FAILED';

/** Who acted: a token (GraphQL) or the command line, which has no token. */
export type AuditActor = Pick<Caller, 'tokenId' | 'name'> | { tokenId: null; name: 'cli' };

export const CLI_ACTOR: AuditActor = { tokenId: null, name: 'cli' };

export interface AuditRecord {
  action: string;
  actor: AuditActor;
  outcome: AuditOutcome;
  detail?: Record<string, unknown>;
  at?: Date;
}

export async function recordAudit(prisma: PrismaClient, record: AuditRecord): Promise<void> {
  await prisma.auditEntry.create({
    data: {
      action: record.action,
      tokenId: record.actor.tokenId,
      tokenName: record.actor.name,
      outcome: record.outcome,
      detail: (record.detail ?? {}) as Prisma.InputJsonValue,
      ...(record.at ? { at: record.at } : {}),
    },
  });
}
