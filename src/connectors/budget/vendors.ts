import type { BudgetSpec, Holding, WindowPool } from './allocation.ts';
import { createLimiter, type Limiter } from './limiter.ts';

// The two vendors' budgets as pools (allocation.ts), from the shares the configuration gives the
// whole deployment. Reference: Marketo 100 calls per rolling 20 s (606), 10 in flight (615), a daily
// quota that resets at 00:00 US Central (607); Dataverse per application user, a 5-minute sliding
// window of 6,000 requests and 1,200,000 ms of execution time, 52 in flight (429 with Retry-After).

const DAY_MS = 86_400_000;
// Marketo's daily quota resets at 00:00 CST
const CENTRAL_OFFSET_MS = 6 * 3_600_000;
/** the Marketo day (00:00 US Central) an instant falls in */
export const marketoDay = (ms: number) => Math.floor((ms - CENTRAL_OFFSET_MS) / DAY_MS);
export const nextMarketoMidnight = (ms: number) => (marketoDay(ms) + 1) * DAY_MS + CENTRAL_OFFSET_MS;

/** how late a call may reach the vendor after it was admitted, as a share of the window */
const JITTER_SHARE = 0.005;
// A call in flight when its member died is still being served for at most this long (a Marketo
// call takes well under a second; Dataverse ends a message at 2 minutes, most take under 10 s):
// a dead member's concurrency comes back after its lease plus this.
const DEAD_CALL_LINGER_MS = 10_000;

export type MarketoShare = { callsPerWindow: number; windowMs: number; maxConcurrent: number; dailyQuota?: number | undefined };
export type DataverseShare = { requestsPerWindow: number; windowMs: number; maxConcurrent: number; executionMsPerWindow: number };

function windowPool(total: number, windowMs: number, burstShare: number, minTotalBurst: number): WindowPool {
  return { kind: 'window', total, windowMs, jitterMs: Math.ceil(windowMs * JITTER_SHARE), burstShare, minBurst: 1, minTotalBurst };
}

export function marketoBudgetSpec(key: string, share: MarketoShare): BudgetSpec {
  return {
    key,
    pools: {
      // a bucket of 2 at least: a read is admitted with a call to spare for the write that follows it
      calls: windowPool(share.callsPerWindow, share.windowMs, 0.05, 2),
      concurrent: { kind: 'slots', total: share.maxConcurrent, deadLingerMs: DEAD_CALL_LINGER_MS },
      ...(share.dailyQuota === undefined ? {} : { daily: { kind: 'day' as const, total: share.dailyQuota, dayOf: marketoDay } }),
    },
  };
}

export function dataverseBudgetSpec(key: string, share: DataverseShare): BudgetSpec {
  return {
    key,
    pools: {
      requests: windowPool(share.requestsPerWindow, share.windowMs, 0.02, 1),
      executionMs: windowPool(share.executionMsPerWindow, share.windowMs, 0.02, 1),
      concurrent: { kind: 'slots', total: share.maxConcurrent, deadLingerMs: DEAD_CALL_LINGER_MS },
    },
  };
}

/** the pools charged one token per call, per vendor */
export const perCallPools = { marketo: ['calls'], dataverse: ['requests'] } as const;

/** A member's budget: the local limiter, and what the deployment spent of a day pool today. */
export interface VendorBudget {
  limiter: Limiter;
  /** calls the whole deployment made today (as last heard from the other members, plus this one's) */
  deploymentDayUsed(): number;
}

export type Clock = { now: () => number; after: (ms: number, fn: () => void) => () => void };

export const realClock: Clock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    timer.unref?.();
    return () => clearTimeout(timer);
  },
};

/**
 * A budget held whole by one member for good: a client on its own (tests, scripts). The service
 * always runs a coordinator (coordinator.ts), on the embedded database too.
 */
export function soloBudget(spec: BudgetSpec, perCall: readonly string[], clock: Clock = realClock): VendorBudget {
  const holdings: Record<string, Holding> = {};
  const at = Date.now();
  for (const [name, pool] of Object.entries(spec.pools)) {
    if (pool.kind === 'window') {
      const burst = Math.min(pool.total, Math.max(pool.minBurst, pool.minTotalBurst, Math.floor(pool.total * pool.burstShare)));
      holdings[name] = { burst, rate: Math.max(0, pool.total - burst) };
    } else if (pool.kind === 'slots') holdings[name] = { slots: pool.total };
    else holdings[name] = { day: pool.dayOf(at), granted: pool.total, used: 0 };
  }
  const dayPool = Object.entries(spec.pools).find(([, p]) => p.kind === 'day')?.[0];
  const limiter = createLimiter({
    spec,
    perCall,
    ...clock,
    startFull: true,
    slice: { holdings, validUntil: Number.POSITIVE_INFINITY, ...(dayPool ? { exhausted: [dayPool] } : {}) },
  });
  return { limiter, deploymentDayUsed: () => limiter.dayUsed() };
}
