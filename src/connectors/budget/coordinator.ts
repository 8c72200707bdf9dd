import {
  afterExpiry,
  decide,
  type BudgetSpec,
  type DayHolding,
  type MemberRow,
  type MemberState,
  type WindowHolding,
} from './allocation.ts';
import { createLimiter, type Limiter, type OverdueCalls } from './limiter.ts';
import { realClock, type Clock, type VendorBudget } from './vendors.ts';

// Each replica is a member of every vendor budget: a row per budget with a lease on the database's
// clock, renewed by this heartbeat. One statement per beat renews every row of the member, writes
// its demand and what it gave up, and reads every member's row; only a member that wants more than
// it holds takes the budget's lock (a short transaction) to grow into what is free. Vendor calls
// never touch the database: the local limiter spends the slice until a local deadline that ends
// before the lease does. The safety argument: docs/budgets.md.

/** Where members' rows live (src/db/budget-members.ts). Times are database ms. */
export interface MemberStore {
  /**
   * One statement: renews the member's rows that are still alive (lease `leaseMs` from the
   * database's now), writes their states, and reads every row of `budgets`.
   */
  renew(member: string, leaseMs: number, states: readonly { budget: string; state: MemberState }[], budgets: readonly string[]): Promise<{ at: number; renewed: string[]; rows: Map<string, MemberRow[]> }>;
  /**
   * Under the budget's lock: reads its rows and the database's now, asks `next` for this member's
   * state (and rows of others to rewrite), writes them, the member's lease renewed.
   */
  grow(
    budget: string,
    member: string,
    leaseMs: number,
    next: (rows: MemberRow[], at: number) => { state: MemberState; rewrite?: MemberRow[] },
  ): Promise<{ at: number; rows: MemberRow[]; state: MemberState }>;
  /** Ends the member's leases now (it stopped spending): what it held lingers as a dead member's. */
  leave(member: string): Promise<void>;
  /** statements sent so far (the budget's own cost) */
  statements(): number;
}

export type CoordinatorOptions = {
  store: MemberStore;
  member: string;
  /** the member's lease on the database's clock; default 30 s */
  leaseMs?: number;
  /** a beat while nothing changes; default 10 s (a third of the lease) */
  intervalMs?: number;
  /** the next beat while this member still wants more and the last try got some; default 1 s */
  growRetryMs?: number;
  clock?: Clock;
  /** the embedded database (one process): every other member's row was left by an earlier run, now gone */
  previousRunsAreGone?: boolean;
  onError?: (error: unknown) => void;
  /**
   * told, at most once per `overdueMs` a budget, of calls held back or in flight longer than
   * `overdueMs` (default 60 s): a replica stuck for budget, or on a call that never ended
   */
  onOverdue?: (budget: string, calls: OverdueCalls) => void;
  overdueMs?: number;
};

type Member = {
  spec: BudgetSpec;
  limiter: Limiter;
  perCall: readonly string[];
  state: MemberState;
  rows: MemberRow[];
  wantsMore: boolean;
  /** the last grow got something and more is wanted: ask again soon */
  gotSome: boolean;
  validUntil: number;
  /** when overdue calls of this budget were last told (onOverdue) */
  overdueToldAt: number;
};

export function createBudgetCoordinator(options: CoordinatorOptions) {
  const { store, member } = options;
  const clock = options.clock ?? realClock;
  const leaseMs = options.leaseMs ?? 30_000;
  const intervalMs = options.intervalMs ?? Math.floor(leaseMs / 3);
  const growRetryMs = options.growRetryMs ?? 1_000;
  // the local deadline ends this long before the lease, for the clocks' drift
  const marginMs = Math.min(leaseMs / 3, Math.max(1_000, leaseMs * 0.1));
  const members = new Map<string, Member>();
  // the database's clock as last seen: `dbAt` when the statement was sent at local `sentAt`; an
  // estimate from it is never earlier than the database's clock (the statement ran after it was sent)
  let seen = { dbAt: 0, sentAt: 0 };
  let timer: (() => void) | undefined;
  let beating: Promise<void> | undefined;
  let stopped = false;
  let lastStarvedBeat = Number.NEGATIVE_INFINITY;

  const dbNow = () => seen.dbAt + (clock.now() - seen.sentAt);

  function inUse(m: Member) {
    const slots: Record<string, number> = {};
    for (const [name, pool] of Object.entries(m.spec.pools)) if (pool.kind === 'slots') slots[name] = m.limiter.inFlight();
    return { slots, dayUsed: m.limiter.dayUsed() };
  }

  /** calls the member may spend until its next beat, doubled: the size of a daily grant */
  function dayChunk(m: Member): number {
    const pool = m.perCall[0];
    const held = pool ? (m.state.holdings[pool] as WindowHolding | undefined) : undefined;
    const spec = pool ? m.spec.pools[pool] : undefined;
    if (!held || !spec || spec.kind !== 'window') return 10;
    return Math.ceil(((held.burst + held.rate) * 2 * leaseMs) / spec.windowMs) + 10;
  }

  function weight(m: Member): number {
    const pool = m.perCall[0] ? m.spec.pools[m.perCall[0]] : undefined;
    const span = pool?.kind === 'window' ? pool.windowMs : 20_000;
    return 1 + m.limiter.demand(span);
  }

  function exhausted(m: Member, at: number): string[] {
    const out: string[] = [];
    for (const [name, pool] of Object.entries(m.spec.pools)) {
      if (pool.kind !== 'day') continue;
      const today = pool.dayOf(at);
      const granted = m.rows.filter((r) => r.member !== member).reduce((sum, r) => {
        const h = r.state.holdings[name] as DayHolding | undefined;
        return sum + (h && h.day === today ? h.granted : 0);
      }, 0);
      const mine = m.state.holdings[name] as DayHolding | undefined;
      if (granted + (mine?.day === today ? mine.granted : 0) >= pool.total) out.push(name);
    }
    return out;
  }

  function apply(m: Member): void {
    m.limiter.setSlice({ holdings: m.state.holdings, validUntil: m.validUntil, exhausted: exhausted(m, dbNow()) });
  }

  async function beatOnce(): Promise<void> {
    const sentAt = clock.now();
    const at = dbNow();
    // give up what is above the fair share first, locally, before the database hears of it
    for (const m of members.values()) {
      const own = { ...m.state, weight: weight(m) };
      const d = decide({ spec: m.spec, member, rows: m.rows, own, at, inUse: inUse(m), mode: 'shrink', dayChunk: dayChunk(m) });
      m.state = d.state;
      apply(m);
    }
    const states = [...members.entries()].map(([budget, m]) => ({ budget, state: m.state }));
    const renewed = await store.renew(member, leaseMs, states, [...members.keys()]);
    seen = { dbAt: renewed.at, sentAt };
    for (const [budget, m] of members) {
      m.rows = renewed.rows.get(budget) ?? [];
      const alive = renewed.renewed.includes(budget);
      if (alive) m.validUntil = sentAt + leaseMs - marginMs;
      // the lock is taken only when the rows just read show something to gain
      const would = decide({ spec: m.spec, member, rows: m.rows, own: m.state, at: renewed.at, inUse: inUse(m), mode: 'grow', dayChunk: dayChunk(m) });
      m.wantsMore = would.wantsMore;
      m.gotSome = false;
      if (!alive || gained(m.state, would.state)) await grow(budget, m);
      else apply(m);
    }
  }

  async function grow(budget: string, m: Member): Promise<void> {
    const sentAt = clock.now();
    const before = m.state;
    const result = await store.grow(budget, member, leaseMs, (rows, at) => {
      const stored = rows.find((r) => r.member === member);
      // a lease that ran out (this member froze, or lost the database): what it held lingers, and
      // it starts again from nothing
      const own: MemberState = !stored
        ? { holdings: {}, released: [], weight: 1 }
        : stored.expiresAt <= at
          ? afterExpiry(m.spec, stored.state, stored.expiresAt, at)
          : m.state;
      // an earlier run of the embedded database's one process: its lease ends now; its calls in
      // flight ended with it (no concurrency lingers), what they spent of a window still counts
      const rewrite = options.previousRunsAreGone
        ? rows.filter((r) => r.member !== member && r.expiresAt > at).map((r) => ({ ...r, expiresAt: at, state: withoutSlots(m.spec, r.state) }))
        : [];
      const current = rows.map((r) => rewrite.find((w) => w.member === r.member) ?? r);
      const d = decide({ spec: m.spec, member, rows: current, own: { ...own, weight: weight(m) }, at, inUse: inUse(m), mode: 'grow', dayChunk: dayChunk(m) });
      m.wantsMore = d.wantsMore;
      return { state: d.state, rewrite };
    });
    seen = { dbAt: result.at, sentAt };
    m.rows = result.rows;
    m.state = result.state;
    m.validUntil = sentAt + leaseMs - marginMs;
    m.gotSome = gained(before, m.state);
    apply(m);
  }

  function schedule(ms: number): void {
    timer?.();
    if (stopped) return;
    timer = clock.after(ms, () => void beat());
  }

  function nextDelay(): number {
    for (const m of members.values()) if (m.wantsMore && m.gotSome) return growRetryMs;
    return intervalMs;
  }

  /** Tells of calls held back or in flight too long, once per bound a budget. */
  function tellOverdue(): void {
    const boundMs = options.overdueMs ?? 60_000;
    for (const m of members.values()) {
      const calls = m.limiter.overdue(boundMs);
      if (!calls || clock.now() - m.overdueToldAt < boundMs) continue;
      m.overdueToldAt = clock.now();
      options.onOverdue?.(m.spec.key, calls);
    }
  }

  function beat(): Promise<void> {
    beating ??= beatOnce()
      .catch((error: unknown) => options.onError?.(error))
      .finally(() => {
        tellOverdue();
        beating = undefined;
        schedule(nextDelay());
      });
    return beating;
  }

  return {
    /** Registers a budget; its limiter holds nothing until the first beat. */
    join(spec: BudgetSpec, perCall: readonly string[]): VendorBudget {
      const m: Member = {
        spec,
        perCall,
        rows: [],
        state: { holdings: {}, released: [], weight: 1 },
        wantsMore: true,
        gotSome: false,
        validUntil: Number.NEGATIVE_INFINITY,
        overdueToldAt: Number.NEGATIVE_INFINITY,
        limiter: createLimiter({
          spec,
          perCall,
          ...clock,
          onStarved: () => {
            // calls wait for a share this member does not hold: ask at once, at most once a retry period
            if (clock.now() - lastStarvedBeat < growRetryMs || beating) return;
            lastStarvedBeat = clock.now();
            void beat();
          },
        }),
      };
      members.set(spec.key, m);
      return {
        limiter: m.limiter,
        deploymentDayUsed() {
          const at = dbNow();
          let used = m.limiter.dayUsed();
          for (const [name, pool] of Object.entries(spec.pools)) {
            if (pool.kind !== 'day') continue;
            for (const r of m.rows) {
              const h = r.state.holdings[name] as DayHolding | undefined;
              if (r.member !== member && h && h.day === pool.dayOf(at)) used += h.used;
            }
          }
          return used;
        },
      };
    },
    /** The first beat (awaited: the service starts with its slices), then one every interval. */
    async start(): Promise<void> {
      await beat();
    },
    beat,
    statements: () => store.statements(),
    /**
     * Stops spending, then ends the leases at once, so the others need not wait for them to run out
     * (`leave: false`: they do, as after a kill).
     */
    async stop(opts: { leave?: boolean } = {}): Promise<void> {
      stopped = true;
      timer?.();
      await beating;
      for (const m of members.values()) m.limiter.stop();
      if (opts.leave ?? true) await store.leave(member).catch((error: unknown) => options.onError?.(error));
    },
  };
}

function withoutSlots(spec: BudgetSpec, state: MemberState): MemberState {
  const holdings = { ...state.holdings };
  for (const [name, pool] of Object.entries(spec.pools)) if (pool.kind === 'slots') holdings[name] = { slots: 0 };
  return { ...state, holdings, released: state.released.filter((r) => spec.pools[r.pool]?.kind !== 'slots') };
}

/** true when `next` holds more of any pool than `before` */
function gained(before: MemberState, next: MemberState): boolean {
  for (const [name, holding] of Object.entries(next.holdings)) {
    const was = before.holdings[name];
    if ('burst' in holding) {
      const w = was as WindowHolding | undefined;
      if (holding.burst > (w?.burst ?? 0) || holding.rate > (w?.rate ?? 0) + 1e-9) return true;
    } else if ('slots' in holding) {
      if (holding.slots > ((was as { slots: number } | undefined)?.slots ?? 0)) return true;
    } else if (holding.granted > ((was as DayHolding | undefined)?.granted ?? 0)) return true;
  }
  return false;
}

export type BudgetCoordinator = ReturnType<typeof createBudgetCoordinator>;
