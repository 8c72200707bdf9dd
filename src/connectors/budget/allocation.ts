// How the members of a deployment (its replicas) divide one vendor budget. Pure: data in, data out;
// the clocks are the database's (ms since the epoch, `now()` of the statement that read the rows).
// Why the sum never passes a limit, whatever joins, leaves, dies or freezes: docs/budgets.md.
//
// A budget has pools, each with a total that belongs to the whole deployment:
// - `window`: a count per sliding window (Marketo calls per 20 s, Dataverse requests or execution
//   ms per 5 min). A member holds a `burst` (its token bucket's size) and a `rate` (what refills it,
//   per window). Its spend in any window is at most burst + rate, so that sum is its claim. A rate
//   given up stops counting at once (plus network jitter); a burst given up counts for one more
//   window, since the tokens it held at a window's start may be spent inside that window.
// - `slots`: calls in flight (concurrency). A member never records fewer than it has in flight.
// - `day`: a daily quota (Marketo's, per Marketo day). Members are granted chunks; a grant is
//   never returned, so a dead member's unused chunk is lost for the day, never spent twice.
// A dead member (its lease ran out on the database's clock) keeps its claim until its lease plus
// what its last calls may still occupy: a rate until the lease plus jitter, a burst a window more,
// slots until the lease plus `deadLingerMs` (a call still being served after its caller died).

export type WindowPool = {
  kind: 'window';
  total: number;
  windowMs: number;
  /** how much later than admitted a call may reach the vendor: counted as part of the window */
  jitterMs: number;
  /** the part of the total held as bursts (the rest as rates) */
  burstShare: number;
  /** each live member's least burst (a bucket smaller than one call never admits one) */
  minBurst: number;
  /** the least of all bursts together */
  minTotalBurst: number;
};
export type SlotPool = { kind: 'slots'; total: number; deadLingerMs: number };
export type DayPool = { kind: 'day'; total: number; dayOf: (ms: number) => number };
export type PoolSpec = WindowPool | SlotPool | DayPool;
export type BudgetSpec = { key: string; pools: Record<string, PoolSpec> };

export type WindowHolding = { burst: number; rate: number };
export type DayHolding = { day: number; granted: number; used: number };
export type Holding = WindowHolding | { slots: number } | DayHolding;

/** An amount given up that still counts until `until` (database ms). */
export type Release = { pool: string; amount: number; until: number };

export type MemberState = {
  holdings: Record<string, Holding>;
  released: Release[];
  /** the member's demand (1 + recent spend + what waits); capacity is shared in proportion to it */
  weight: number;
};

export type MemberRow = { member: string; expiresAt: number; state: MemberState };

/** What a member has in use now, which it may not give up yet. */
export type InUse = { slots: Record<string, number>; dayUsed: number };

/** Shares smaller than this part of a pool are not worth a change (no churn at a steady load). */
export const HYSTERESIS = 0.05;

export function emptyHolding(pool: PoolSpec, at: number): Holding {
  if (pool.kind === 'window') return { burst: 0, rate: 0 };
  if (pool.kind === 'slots') return { slots: 0 };
  return { day: pool.dayOf(at), granted: 0, used: 0 };
}

export function holdingOf(state: MemberState | undefined, name: string, pool: PoolSpec, at: number): Holding {
  return state?.holdings[name] ?? emptyHolding(pool, at);
}

/** A holding's claim on its pool at `at` while its member is alive. */
function liveClaim(pool: PoolSpec, holding: Holding, at: number): number {
  if (pool.kind === 'window') {
    const h = holding as WindowHolding;
    return h.burst + h.rate;
  }
  if (pool.kind === 'slots') return (holding as { slots: number }).slots;
  const h = holding as DayHolding;
  return h.day === pool.dayOf(at) ? h.granted : 0;
}

/** The releases a holding becomes when its member's lease runs out at `expiresAt`. */
export function deadReleases(name: string, pool: PoolSpec, holding: Holding, expiresAt: number): Release[] {
  if (pool.kind === 'window') {
    const h = holding as WindowHolding;
    return [
      { pool: name, amount: h.rate, until: expiresAt + pool.jitterMs },
      { pool: name, amount: h.burst, until: expiresAt + pool.windowMs + pool.jitterMs },
    ].filter((r) => r.amount > 0);
  }
  if (pool.kind === 'slots') {
    const slots = (holding as { slots: number }).slots;
    return slots > 0 ? [{ pool: name, amount: slots, until: expiresAt + pool.deadLingerMs }] : [];
  }
  // a day's grant is spent or lost, never returned: it stays a holding
  return [];
}

/** What a member row claims of pool `name` at `at` (database ms). */
export function claimOf(row: MemberRow, name: string, pool: PoolSpec, at: number): number {
  const holding = holdingOf(row.state, name, pool, at);
  const lingering = row.state.released.filter((r) => r.pool === name && r.until > at).reduce((sum, r) => sum + r.amount, 0);
  if (at < row.expiresAt || pool.kind === 'day') return liveClaim(pool, holding, at) + lingering;
  return deadReleases(name, pool, holding, row.expiresAt).filter((r) => r.until > at).reduce((sum, r) => sum + r.amount, 0) + lingering;
}

/** Everything claimed of a pool at `at`. */
export function claimed(rows: readonly MemberRow[], name: string, pool: PoolSpec, at: number): number {
  return rows.reduce((sum, row) => sum + claimOf(row, name, pool, at), 0);
}

/**
 * Integers in proportion to `weights`, summing to `total`, each at least `min` while the total
 * allows (largest remainder; ties go to the earlier index). Every member computes the same answer
 * from the same rows.
 */
export function apportion(total: number, weights: readonly number[], min: number): number[] {
  const n = weights.length;
  if (n === 0) return [];
  const floorMin = Math.min(min, Math.floor(total / n));
  const rest = Math.max(0, total - floorMin * n);
  const sum = weights.reduce((a, b) => a + b, 0) || n;
  const exact = weights.map((w) => (rest * (w || (sum === n ? 1 : 0))) / sum);
  const out = exact.map((x) => floorMin + Math.floor(x));
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0; left > 0 && n > 0; k = (k + 1) % n, left -= 1) out[order[k]!.i]! += 1;
  return out;
}

/**
 * Every live member's fair share of each pool, in proportion to its weight (the same table on every
 * member given the same rows). Window pools: bursts apportioned (at least `minBurst` each), the
 * rest of the total as rates in proportion to weight.
 */
export function fairShares(spec: BudgetSpec, live: readonly { member: string; weight: number }[]): Map<string, Record<string, Holding>> {
  const members = [...live].sort((a, b) => (a.member < b.member ? -1 : a.member > b.member ? 1 : 0));
  const weights = members.map((m) => Math.max(1, m.weight));
  const sum = weights.reduce((a, b) => a + b, 0);
  const out = new Map<string, Record<string, Holding>>(members.map((m) => [m.member, {}]));
  for (const [name, pool] of Object.entries(spec.pools)) {
    if (pool.kind === 'window') {
      const bursts = apportion(Math.min(pool.total, Math.max(members.length * pool.minBurst, pool.minTotalBurst, Math.floor(pool.total * pool.burstShare))), weights, pool.minBurst);
      const burstSum = bursts.reduce((a, b) => a + b, 0);
      const rateTotal = Math.max(0, pool.total - burstSum);
      members.forEach((m, i) => (out.get(m.member)![name] = { burst: bursts[i]!, rate: (rateTotal * weights[i]!) / sum }));
    } else if (pool.kind === 'slots') {
      const slots = apportion(pool.total, weights, 1);
      members.forEach((m, i) => (out.get(m.member)![name] = { slots: slots[i]! }));
    }
  }
  return out;
}

export type Decision = {
  state: MemberState;
  /** true when a share is still below its fair share by more than the hysteresis */
  wantsMore: boolean;
};

export type DecideInput = {
  spec: BudgetSpec;
  member: string;
  /** every row of the budget as read at `at`; this member's own row is replaced by `own` */
  rows: readonly MemberRow[];
  /** the member's state now (its own view; what its row says once this decision is written) */
  own: MemberState;
  /** database ms: the statement's now() (renew: an estimate never earlier than the database's clock) */
  at: number;
  inUse: InUse;
  /** `shrink`: give up what is above the fair share (needs no lock); `grow`: also take free capacity (under the budget's lock) */
  mode: 'shrink' | 'grow';
  /** how many calls the member may spend until its next beat, for the size of a daily grant */
  dayChunk: number;
};

const live = (row: MemberRow, at: number) => at < row.expiresAt;

/** The member's next state: shrunk to its fair share, and (in `grow` mode) grown into what is free. */
export function decide(input: DecideInput): Decision {
  const { spec, member, at, own } = input;
  const others = input.rows.filter((r) => r.member !== member);
  const shares = fairShares(spec, [...others.filter((r) => live(r, at)).map((r) => ({ member: r.member, weight: r.state.weight })), { member, weight: own.weight }]);
  const fair = shares.get(member)!;
  const released = own.released.filter((r) => r.until > at);
  const holdings: Record<string, Holding> = {};
  let wantsMore = false;
  for (const [name, pool] of Object.entries(spec.pools)) {
    const current = holdingOf(own, name, pool, at);
    // The hysteresis spares churn among members that all earn something. A live member holding no
    // rate earns nothing (its bucket, once spent, never refills) and its fair share can be smaller
    // than the margin: then every member moves to its exact share, or it would starve for good.
    const starving = pool.kind === 'window' && [own, ...others.filter((r) => live(r, at)).map((r) => r.state)].some((state) => (holdingOf(state, name, pool, at) as WindowHolding).rate === 0);
    const margin = starving ? 0 : HYSTERESIS * pool.total;
    // free for this member: the total less every other member's claim and its own lingering releases
    const free = () =>
      pool.total - claimed(others, name, pool, at) - released.filter((r) => r.pool === name).reduce((sum, r) => sum + r.amount, 0);
    if (pool.kind === 'day') {
      const h = current as DayHolding;
      const today = pool.dayOf(at);
      const base: DayHolding = h.day === today ? { ...h, used: Math.max(h.used, input.inUse.dayUsed) } : { day: today, granted: 0, used: 0 };
      if (input.mode === 'grow' && base.granted - base.used < input.dayChunk / 2) {
        const room = Math.max(0, Math.floor(free() - base.granted));
        base.granted += Math.min(room, Math.max(0, input.dayChunk - (base.granted - base.used)));
      }
      if (base.granted - base.used < input.dayChunk / 2 && input.mode === 'shrink') wantsMore = true;
      holdings[name] = base;
      continue;
    }
    if (pool.kind === 'slots') {
      const have = (current as { slots: number }).slots;
      const target = (fair[name] as { slots: number }).slots;
      const floor = input.inUse.slots[name] ?? 0;
      let next = have > target ? Math.max(target, floor) : have;
      if (input.mode === 'grow') {
        const room = Math.floor(free() - have);
        if (room < 0) next = Math.max(floor, have + room);
        else if (target > next) next = next + Math.min(room, target - next);
      }
      if (next < have) released.push({ pool: name, amount: have - next, until: at + 1 });
      if (target > next) wantsMore = true;
      holdings[name] = { slots: next };
      continue;
    }
    const have = current as WindowHolding;
    const target = fair[name] as WindowHolding;
    let burst = have.burst;
    let rate = have.rate;
    // shrink what is above the fair share (a burst by whole units, a rate past the hysteresis)
    if (burst > target.burst) burst = target.burst;
    if (rate > target.rate + margin) rate = target.rate;
    if (input.mode === 'grow') {
      let room = free() - burst - rate;
      if (room < 0) {
        // the pool shrank under us (a smaller total configured): give back until it fits
        const cut = Math.min(rate, -room);
        rate -= cut;
        room += cut;
        if (room < 0) burst = Math.max(0, burst + Math.floor(room));
        room = 0;
      }
      const addBurst = Math.max(0, Math.min(target.burst - burst, Math.floor(room)));
      burst += addBurst;
      room -= addBurst;
      if (target.rate > rate + margin) rate += Math.max(0, Math.min(target.rate - rate, room));
    }
    if (burst < have.burst) released.push({ pool: name, amount: have.burst - burst, until: at + pool.windowMs + pool.jitterMs });
    if (rate < have.rate) released.push({ pool: name, amount: have.rate - rate, until: at + pool.jitterMs });
    if (target.burst > burst || target.rate > rate + margin) wantsMore = true;
    holdings[name] = { burst, rate };
  }
  return { state: { holdings, released, weight: own.weight }, wantsMore };
}

/** The state of a member whose lease ran out at `expiresAt`: everything it held lingers as releases. */
export function afterExpiry(spec: BudgetSpec, state: MemberState, expiresAt: number, at: number): MemberState {
  const holdings: Record<string, Holding> = {};
  const released = state.released.filter((r) => r.until > at);
  for (const [name, pool] of Object.entries(spec.pools)) {
    const holding = holdingOf(state, name, pool, at);
    if (pool.kind === 'day') holdings[name] = holding;
    else {
      released.push(...deadReleases(name, pool, holding, expiresAt).filter((r) => r.until > at));
      holdings[name] = emptyHolding(pool, at);
    }
  }
  return { holdings, released, weight: state.weight };
}
