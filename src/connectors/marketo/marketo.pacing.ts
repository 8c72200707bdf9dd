import { BudgetExhausted } from '../budget/limiter.ts';
import { marketoBudgetSpec, nextMarketoMidnight, perCallPools, soloBudget, type VendorBudget } from '../budget/vendors.ts';
import { sleepMs } from '../../retry.ts';
import { MarketoApiError } from './marketo.errors.ts';

// When a Marketo call may go: the deployment's budget (src/connectors/budget/) admits it, and two
// holds the server imposes on every caller of this client at once: a 606 pauses them all for the
// backoff of the call that saw it, and a 607 (the instance's daily quota) refuses them all until
// the next Marketo midnight. One budget for every call this client makes: the instance's limits are
// shared anyway. A token bucket rather than a per-window refill: a refill lets a burst spend the
// whole window's budget in a second and then stalls everything for the rest of it, while a steady
// drip keeps calls flowing and lets callers batch more per call under load. The bucket is part of
// the share, so no 20 s holds more than the share.

export type MarketoLimits = {
  /** calls started per window; default 50, half the instance's 100 because all integrations share it */
  callsPer20s?: number;
  /** the rate window in ms; default 20000 (Marketo's) — shorter only in tests */
  windowMs?: number;
  /** calls in flight; default 5 (Adobe's advice per integration; the instance allows 10) */
  maxConcurrent?: number;
  /** calls per Marketo day (00:00 US Central); default unlimited (the server's 607 still applies) */
  dailyQuota?: number;
};

// Reads queue behind writes: a write finishes a change whose read was already spent, a read
// starts a new one.
const WRITE_PRIORITY = 3;
const READ_PRIORITY = 5;
// A read is admitted only while the bucket holds one more call than it spends: a sync that has
// read a record then writes it at once instead of waiting for the next drip (under load, a
// read-then-write cycle takes two drips back to back rather than one drip apart). Reads alone
// lose no throughput by it; a bucket of one admits reads with one token.
const READ_NEED = 2;

/**
 * The token bucket of one member holding the whole share: `bucket` calls at once, then one every
 * `dripMs`. Any 20 s then holds at most the share (docs/budgets.md): the bucket is part of it.
 */
export function marketoDripPlan(callsPerWindow: number, windowMs: number): { bucket: number; dripMs: number } {
  const spec = marketoBudgetSpec('plan', { callsPerWindow, windowMs, maxConcurrent: 1 });
  const held = soloBudget(spec, perCallPools.marketo).limiter.slice().holdings['calls'] as { burst: number; rate: number };
  const pool = spec.pools['calls'] as { windowMs: number; jitterMs: number };
  return { bucket: held.burst, dripMs: Math.ceil((pool.windowMs + pool.jitterMs) / held.rate) };
}

export function createMarketoPacer(options: { host: string; limits?: MarketoLimits | undefined; budget?: VendorBudget | undefined; now: () => number }) {
  const { now, limits } = options;
  const budget =
    options.budget ??
    soloBudget(
      marketoBudgetSpec(`marketo:${options.host}`, {
        callsPerWindow: limits?.callsPer20s ?? 50,
        windowMs: limits?.windowMs ?? 20_000,
        maxConcurrent: limits?.maxConcurrent ?? 5,
        dailyQuota: limits?.dailyQuota,
      }),
      perCallPools.marketo,
    );
  const limiter = budget.limiter;
  let pausedUntil = 0;
  let quotaBlockedUntil = 0;

  return {
    budget,
    /** Runs `send` once the holds are over and the budget admits the call (writes first). */
    async admit<T>(endpoint: string, method: 'GET' | 'POST', send: () => Promise<T>): Promise<T> {
      const at = now();
      if (at < quotaBlockedUntil) {
        throw new MarketoApiError('quota_exhausted', { code: '607', message: 'Daily quota reached (until the next reset)', endpoint });
      }
      if (pausedUntil > at) await sleepMs(pausedUntil - at);
      const read = method === 'GET';
      try {
        return await limiter.schedule({ priority: read ? READ_PRIORITY : WRITE_PRIORITY, need: read ? READ_NEED : 1 }, send);
      } catch (error) {
        if (error instanceof BudgetExhausted) {
          throw new MarketoApiError('quota_exhausted', { code: '607', message: `the deployment's daily budget of ${limits?.dailyQuota ?? 'unlimited'} calls is used`, endpoint });
        }
        // the instance's quota is spent: nobody calls again before it resets
        if (error instanceof MarketoApiError && error.kind === 'quota_exhausted') quotaBlockedUntil = nextMarketoMidnight(now());
        throw error;
      }
    },
    /** a 606: every caller holds back at least `ms` */
    pauseEveryone(ms: number): void {
      pausedUntil = Math.max(pausedUntil, now() + ms);
    },
    /** calls the budget would admit at once now (its bucket) */
    available: (): number => limiter.available('calls'),
    dayUsed: (): number => budget.deploymentDayUsed(),
    /** stops the budget's limiter; calls still queued are rejected */
    close(): void {
      limiter.stop(new MarketoApiError('transient', { message: 'the Marketo client is closed', endpoint: 'client' }));
    },
  };
}

export type MarketoPacer = ReturnType<typeof createMarketoPacer>;
