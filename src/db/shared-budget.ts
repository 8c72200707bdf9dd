import type { SharedBudget } from '../connectors/shared-budget.ts';
import type { PrismaClient } from './generated/client.ts';

// The shared budget of a vendor's sliding window in PostgreSQL (table vendor_budget_slot). Calls
// are counted per slot of the window; a reservation, under a transaction-scoped advisory lock per
// vendor, sums the slots that may still hold calls of the window ending now and adds one to the
// current slot only if the sum stays within the limit. The slot holding the window's start counts
// whole, so the sum can only overstate the calls in the window: replicas together never pass the
// limit, and lose at most one slot's worth of throughput for it. Reservations are ordered by the
// lock; `at` comes from each replica's clock, so keep slots well above the replicas' clock skew.

export type SharedBudgetOptions = {
  /** e.g. "marketo", "dataverse:<application user>" */
  vendor: string;
  /** calls every replica together may make per window */
  limit: number;
  windowMs: number;
  /** counting granularity; default a twentieth of the window */
  slotMs?: number;
};

/** Advisory-lock key of a vendor's budget: a stable 32-bit hash of its name (FNV-1a). */
function lockKey(vendor: string): number {
  let hash = 0x811c9dc5;
  for (const char of `vendor-budget:${vendor}`) {
    hash ^= char.codePointAt(0)!;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash | 0;
}

export function createPostgresSharedBudget(prisma: PrismaClient, options: SharedBudgetOptions): SharedBudget {
  const slotMs = options.slotMs ?? Math.max(1, Math.floor(options.windowMs / 20));
  const key = lockKey(options.vendor);
  let reservations = 0;
  return {
    async reserve(at) {
      const slot = Math.floor(at / slotMs) * slotMs;
      // every slot that may hold a call of the window (at - windowMs, at]
      const floor = slot - options.windowMs;
      const wait = await prisma.$transaction(async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(${key}::int)`;
        const slots = await tx.$queryRaw<{ slot_start: bigint; used: number }[]>`
          SELECT slot_start, used FROM vendor_budget_slot
          WHERE vendor = ${options.vendor} AND slot_start >= ${BigInt(floor)} ORDER BY slot_start`;
        const used = slots.reduce((sum, s) => sum + s.used, 0);
        if (used + 1 > options.limit) {
          // until enough of the oldest slots stop counting: a slot counts while slot(at) - windowMs <= its start
          let freed = 0;
          for (const s of slots) {
            freed += s.used;
            if (used + 1 - freed <= options.limit) return Math.max(1, Number(s.slot_start) + options.windowMs + slotMs - at);
          }
          return slotMs;
        }
        await tx.$executeRaw`
          INSERT INTO vendor_budget_slot (vendor, slot_start, used) VALUES (${options.vendor}, ${BigInt(slot)}, 1)
          ON CONFLICT (vendor, slot_start) DO UPDATE SET used = vendor_budget_slot.used + 1`;
        return 0;
      });
      // slots out of every window are dropped now and then, by whichever replica passes by
      if (wait === 0 && ++reservations % 500 === 0) {
        await prisma.$executeRaw`DELETE FROM vendor_budget_slot WHERE vendor = ${options.vendor} AND slot_start < ${BigInt(floor - options.windowMs)}`;
      }
      return wait;
    },
  };
}
