import type { PrismaClient } from '../db/generated/client.ts';

// Fixed-window counters in the database (rate_window), so every replica counts together: a client
// that spreads its sign-in guesses over three replicas gets no more than against one. One
// statement per attempt (an upsert that returns the new count); old windows are deleted now and
// then by whoever counts, so the table holds a few windows per active key.

export type RateDecision = { allowed: true; remaining: number } | { allowed: false; retryAfterSeconds: number };

export interface RateLimiter {
  /** counts one attempt for `key` and says whether it is within the limit */
  take(key: string): Promise<RateDecision>;
}

export interface RateLimitOptions {
  limit: number;
  windowMs: number;
  now?: () => number;
}

const CLEANUP_EVERY = 200;

export function createRateLimiter(prisma: PrismaClient, options: RateLimitOptions): RateLimiter {
  const now = options.now ?? Date.now;
  let sinceCleanup = 0;
  return {
    async take(key) {
      const at = now();
      const start = new Date(Math.floor(at / options.windowMs) * options.windowMs);
      // keys come from clients (addresses) and tokens: bounded so a row stays small
      const boundedKey = key.slice(0, 200);
      const [row] = await prisma.$queryRaw<{ count: number }[]>`
        INSERT INTO rate_window (key, "windowStart", count) VALUES (${boundedKey}, ${start}, 1)
        ON CONFLICT (key, "windowStart") DO UPDATE SET count = rate_window.count + 1
        RETURNING count`;
      if ((sinceCleanup += 1) >= CLEANUP_EVERY) {
        sinceCleanup = 0;
        await prisma.$executeRaw`DELETE FROM rate_window WHERE "windowStart" < ${new Date(start.getTime() - options.windowMs)}`;
      }
      const count = row?.count ?? 1;
      if (count <= options.limit) return { allowed: true, remaining: options.limit - count };
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((start.getTime() + options.windowMs - at) / 1000)) };
    },
  };
}
