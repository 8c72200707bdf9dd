import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apportion, claimed, decide, fairShares, type BudgetSpec, type MemberRow, type MemberState } from '../../src/connectors/budget/allocation.ts';
import { createLimiter } from '../../src/connectors/budget/limiter.ts';
import { createBudgetSim, mostInAnyWindow, mostInFlight } from '../support/budget-sim.ts';

// A Marketo-like budget scaled down: 20 calls in any 1 s, 4 in flight.
const WINDOW_MS = 1_000;
const spec = (daily?: number): BudgetSpec => ({
  key: 'test',
  pools: {
    calls: { kind: 'window', total: 20, windowMs: WINDOW_MS, jitterMs: 0, burstShare: 0.1, minBurst: 1, minTotalBurst: 2 },
    concurrent: { kind: 'slots', total: 4, deadLingerMs: 200 },
    ...(daily === undefined ? {} : { daily: { kind: 'day' as const, total: daily, dayOf: () => 0 } }),
  },
});
const simOptions = { callMs: 30, leaseMs: 600, intervalMs: 200, growRetryMs: 50 };
const empty = (weight = 1): MemberState => ({ holdings: {}, released: [], weight });
const inUse = { slots: {}, dayUsed: 0 };

describe('dividing a budget among members', () => {
  it.each([
    [10, [1, 1, 1], 1, [4, 3, 3]],
    [5, [1, 1, 1], 1, [2, 2, 1]],
    [2, [1, 1, 1], 1, [1, 1, 0]],
    [10, [9, 1], 1, [8, 2]],
    [10, [9, 1], 0, [9, 1]],
    [10, [100, 1, 1], 1, [8, 1, 1]],
    [0, [1, 1], 1, [0, 0]],
  ])('apportions %i by weights %j (at least %i each while it lasts): %j', (total, weights, min, expected) => {
    expect(apportion(total, weights, min)).toEqual(expected);
    expect(apportion(total, weights, min).reduce((a, b) => a + b, 0)).toBe(total);
  });

  it('gives a busy member the capacity of idle ones, and every live member a bucket of at least one call', () => {
    const shares = fairShares(spec(), [
      { member: 'busy', weight: 60 },
      { member: 'idle', weight: 1 },
    ]);
    const busy = shares.get('busy')!['calls'] as { burst: number; rate: number };
    const idle = shares.get('idle')!['calls'] as { burst: number; rate: number };
    expect(busy.rate).toBeGreaterThan(idle.rate * 30);
    expect(idle.burst).toBeGreaterThanOrEqual(1);
    expect(busy.burst + busy.rate + idle.burst + idle.rate).toBeCloseTo(20);
  });

  it('a joining member starts with nothing while the others hold everything, and gets its share once they shrink', () => {
    const s = spec();
    const at = 10_000;
    const full: MemberRow = { member: 'a', expiresAt: at + 600, state: { holdings: { calls: { burst: 2, rate: 18 }, concurrent: { slots: 4 } }, released: [], weight: 10 } };
    const joined = decide({ spec: s, member: 'b', rows: [full], own: empty(10), at, inUse, mode: 'grow', dayChunk: 10 });
    expect(joined.state.holdings['calls']).toEqual({ burst: 0, rate: 0 });
    expect(joined.state.holdings['concurrent']).toEqual({ slots: 0 });
    expect(joined.wantsMore).toBe(true);
    // a sees b's row and gives back what is above its fair share; the rate is free at once, the bucket a window later
    const bRow: MemberRow = { member: 'b', expiresAt: at + 600, state: joined.state };
    const shrunk = decide({ spec: s, member: 'a', rows: [bRow], own: full.state, at, inUse, mode: 'shrink', dayChunk: 10 });
    const a = shrunk.state.holdings['calls'] as { burst: number; rate: number };
    expect(a.rate).toBeLessThan(10);
    const aRow: MemberRow = { member: 'a', expiresAt: at + 600, state: shrunk.state };
    const grown = decide({ spec: s, member: 'b', rows: [aRow], own: joined.state, at: at + 1, inUse, mode: 'grow', dayChunk: 10 });
    const b = grown.state.holdings['calls'] as { burst: number; rate: number };
    // b's fair share is half (a bucket of 1 and a rate of 9); a's bucket given up still counts for a window, but fits beside it
    expect(b.burst + b.rate).toBeCloseTo(9);
    expect(claimed([aRow, { member: 'b', expiresAt: at + 600, state: grown.state }], 'calls', s.pools['calls']!, at + 1)).toBeLessThanOrEqual(20);
    const later = decide({ spec: s, member: 'b', rows: [aRow], own: grown.state, at: at + WINDOW_MS + 1, inUse, mode: 'grow', dayChunk: 10 });
    expect((later.state.holdings['calls'] as { burst: number }).burst).toBeGreaterThanOrEqual(1);
  });

  it('a member whose fair share is smaller than the hysteresis still gets a rate: the others give back their excess to the exact share (a sweep starved for minutes behind two busy replicas)', () => {
    // Dataverse-like: 5,400 requests in 5 minutes, a 5% hysteresis of 270
    const s: BudgetSpec = { key: 'dv', pools: { requests: { kind: 'window', total: 5_400, windowMs: 300_000, jitterMs: 1_500, burstShare: 0.02, minBurst: 1, minTotalBurst: 2 } } };
    const at = 1_000_000;
    const alive = at + 30_000;
    const busy = (member: string, weight: number, rate: number, burst: number): MemberRow => ({ member, expiresAt: alive, state: { holdings: { requests: { burst, rate } }, released: [], weight } });
    const a = busy('a', 32, 1_969, 41);
    const b = busy('b', 49, 3_087, 62);
    // the sweep's replica: three calls waiting, a bucket of 5 already spent, no rate
    const sweeper: MemberRow = { member: 'c', expiresAt: alive, state: { holdings: { requests: { burst: 5, rate: 0 } }, released: [], weight: 3 } };
    const fair = fairShares(s, [a, b, sweeper].map((r) => ({ member: r.member, weight: r.state.weight })));
    expect((fair.get('c')!['requests'] as { rate: number }).rate).toBeLessThan(270);
    const shrunkA = decide({ spec: s, member: 'a', rows: [b, sweeper], own: a.state, at, inUse, mode: 'shrink', dayChunk: 10 });
    const shrunkB = decide({ spec: s, member: 'b', rows: [a, sweeper], own: b.state, at, inUse, mode: 'shrink', dayChunk: 10 });
    const rows = [
      { ...a, state: shrunkA.state },
      { ...b, state: shrunkB.state },
    ];
    // the rates given back are free once their jitter has passed
    const grown = decide({ spec: s, member: 'c', rows, own: sweeper.state, at: at + 1_501, inUse, mode: 'grow', dayChunk: 10 });
    const c = grown.state.holdings['requests'] as { rate: number };
    expect(c.rate).toBeGreaterThan(0);
    expect(claimed([...rows, { ...sweeper, state: grown.state }], 'requests', s.pools['requests']!, at + 1_501)).toBeLessThanOrEqual(5_400);
  });

  it("a dead member's rate comes back when its lease ends, its bucket a window later, its slots after their linger", () => {
    const s = spec();
    const dead: MemberRow = { member: 'a', expiresAt: 1_000, state: { holdings: { calls: { burst: 2, rate: 18 }, concurrent: { slots: 4 } }, released: [], weight: 1 } };
    expect(claimed([dead], 'calls', s.pools['calls']!, 999)).toBe(20);
    expect(claimed([dead], 'calls', s.pools['calls']!, 1_000)).toBe(2);
    expect(claimed([dead], 'calls', s.pools['calls']!, 1_000 + WINDOW_MS)).toBe(0);
    expect(claimed([dead], 'concurrent', s.pools['concurrent']!, 1_100)).toBe(4);
    expect(claimed([dead], 'concurrent', s.pools['concurrent']!, 1_200)).toBe(0);
  });

  it('never records fewer slots than the member has in flight', () => {
    const s = spec();
    const own: MemberState = { holdings: { calls: { burst: 2, rate: 18 }, concurrent: { slots: 4 } }, released: [], weight: 1 };
    const other: MemberRow = { member: 'b', expiresAt: 5_000, state: empty(100) };
    const d = decide({ spec: s, member: 'a', rows: [other], own, at: 0, inUse: { slots: { concurrent: 3 }, dayUsed: 0 }, mode: 'shrink', dayChunk: 10 });
    expect(d.state.holdings['concurrent']).toEqual({ slots: 3 });
  });
});

describe('the local limiter', () => {
  it('earns the tokens of a bucket it was just granted instead of spending them at once', async () => {
    let t = 0;
    const started: number[] = [];
    const limiter = createLimiter({ spec: spec(), perCall: ['calls'], now: () => t, after: () => () => undefined });
    limiter.setSlice({ holdings: { calls: { burst: 5, rate: 10 }, concurrent: { slots: 4 } }, validUntil: 10_000 });
    for (let i = 0; i < 5; i += 1) limiter.schedule({ priority: 1 }, () => Promise.resolve(started.push(t))).catch(() => undefined);
    await Promise.resolve();
    expect(started).toEqual([]);
    t = 300; // 10 per 1,000 ms: three tokens earned
    limiter.setSlice(limiter.slice());
    await Promise.resolve();
    expect(started).toHaveLength(3);
    limiter.stop();
  });

  it('spends nothing once its slice has run out, until a new one comes', async () => {
    let t = 0;
    let starved = 0;
    const limiter = createLimiter({ spec: spec(), perCall: ['calls'], now: () => t, after: () => () => undefined, onStarved: () => (starved += 1), startFull: true, slice: { holdings: { calls: { burst: 5, rate: 10 }, concurrent: { slots: 4 } }, validUntil: 100 } });
    t = 150;
    let ran = false;
    void limiter.schedule({ priority: 1 }, () => Promise.resolve((ran = true)));
    await Promise.resolve();
    expect(ran).toBe(false);
    expect(starved).toBe(1);
    limiter.setSlice({ ...limiter.slice(), validUntil: 1_000 });
    await Promise.resolve();
    expect(ran).toBe(true);
    limiter.stop();
  });
});

describe('calls overdue in the local limiter', () => {
  it('tells a call admitted and never ended from calls waiting for its slot, with the time each has waited', async () => {
    let t = 0;
    const limiter = createLimiter({ spec: spec(), perCall: ['calls'], now: () => t, after: () => () => undefined, startFull: true, slice: { holdings: { calls: { burst: 5, rate: 10 }, concurrent: { slots: 1 } }, validUntil: 1_000_000 } });
    void limiter.schedule({ priority: 1 }, () => new Promise<void>(() => undefined)).catch(() => undefined);
    t = 1_000;
    void limiter.schedule({ priority: 1 }, () => Promise.resolve()).catch(() => undefined);
    await Promise.resolve();
    expect(limiter.overdue(60_000)).toBeNull();
    t = 62_000;
    expect(limiter.overdue(60_000)).toEqual({ waiting: 1, inFlight: 1, slots: 1, oldestWaitingMs: 61_000, oldestInFlightMs: 62_000, blocked: {} });
    limiter.stop();
  });

  it('says a member with no slice is starved', () => {
    let t = 0;
    const limiter = createLimiter({ spec: spec(), perCall: ['calls'], now: () => t, after: () => () => undefined });
    void limiter.schedule({ priority: 1 }, () => Promise.resolve()).catch(() => undefined);
    t = 61_000;
    expect(limiter.overdue(60_000)).toMatchObject({ waiting: 1, inFlight: 0, oldestWaitingMs: 61_000, blocked: { starved: true } });
    limiter.stop();
  });
});

describe('members of one budget on a shared clock', () => {
  type Event = { kind: 'join' | 'kill' | 'freeze' | 'thaw' | 'demand'; who: number; demand: number; stepMs: number };
  const event = fc.record({
    kind: fc.constantFrom<Event['kind']>('join', 'kill', 'freeze', 'thaw', 'demand', 'demand'),
    who: fc.nat(5),
    demand: fc.integer({ min: 0, max: 12 }),
    stepMs: fc.integer({ min: 10, max: 1_500 }),
  });

  it('never spend more than the budget in any window, nor hold more calls in flight, through joins, kills, freezes and demand changes', async () => {
    let runsWithCalls = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(event, { minLength: 5, maxLength: 25 }), async (events) => {
        const sim = createBudgetSim(spec(), simOptions);
        try {
          await sim.join('m0', 8);
          for (const e of events) {
            const m = sim.members[e.who % sim.members.length]!;
            if (e.kind === 'join' && sim.members.length < 6) await sim.join(`m${sim.members.length}`, e.demand);
            else if (e.kind === 'kill') sim.kill(m);
            else if (e.kind === 'freeze') sim.freeze(m);
            else if (e.kind === 'thaw') sim.thaw(m);
            else sim.setDemand(m, e.demand);
            await sim.step(e.stepMs);
          }
          await sim.step(2_000);
          if (sim.calls.length > 0) runsWithCalls += 1;
          expect(mostInAnyWindow(sim.calls.map((c) => c.at), WINDOW_MS)).toBeLessThanOrEqual(20);
          expect(mostInFlight(sim.calls)).toBeLessThanOrEqual(4);
        } finally {
          await sim.stop();
        }
      }),
      { numRuns: 40 },
    );
    // the property is about calls made: most runs make some
    expect(runsWithCalls).toBeGreaterThan(30);
  }, 120_000);

  it('three busy members spend the whole budget between them, and a member that joins gets a share', async () => {
    const sim = createBudgetSim(spec(), simOptions);
    try {
      const [a, b] = [await sim.join('a', 10), await sim.join('b', 10)];
      await sim.step(3_000);
      const c = await sim.join('c', 10);
      await sim.step(3_000);
      const from = sim.now() - 2_000;
      const recent = sim.calls.filter((x) => x.at > from);
      // 20 a window: 40 in two, less what the hysteresis leaves unspent (5% of the pool per member)
      expect(recent.length).toBeGreaterThanOrEqual(32);
      for (const m of [a, b, c]) expect(recent.filter((x) => x.member === m.name).length).toBeGreaterThan(5);
      expect(mostInAnyWindow(sim.calls.map((x) => x.at), WINDOW_MS)).toBeLessThanOrEqual(20);
    } finally {
      await sim.stop();
    }
  }, 60_000);

  it("a frozen member that wakes after its lease spends nothing of its old slice before it is granted again", async () => {
    const sim = createBudgetSim(spec(), simOptions);
    try {
      const a = await sim.join('a', 10);
      const b = await sim.join('b', 10);
      await sim.step(2_000);
      sim.freeze(a);
      await sim.step(3_000); // past a's lease: b takes a's share
      const before = sim.calls.filter((x) => x.member === 'a').length;
      sim.thaw(a);
      await sim.step(1);
      // a's timers ran on waking: no call before a new grant
      expect(sim.calls.filter((x) => x.member === 'a').length).toBe(before);
      await sim.step(3_000);
      expect(sim.calls.filter((x) => x.member === 'a').length).toBeGreaterThan(before);
      expect(sim.calls.filter((x) => x.member === b.name).length).toBeGreaterThan(0);
      expect(mostInAnyWindow(sim.calls.map((x) => x.at), WINDOW_MS)).toBeLessThanOrEqual(20);
    } finally {
      await sim.stop();
    }
  }, 60_000);

  it('a member that stops hands its rate over before its lease would have run out', async () => {
    const sim = createBudgetSim(spec(), simOptions);
    try {
      const a = await sim.join('a', 10);
      const b = await sim.join('b', 10);
      await sim.step(2_000);
      const half = (b.budget.limiter.slice().holdings['calls'] as { rate: number }).rate;
      sim.kill(a);
      await a.coordinator.stop();
      // well within a's lease (600 ms): b already holds more than half the rate
      await sim.step(300);
      expect((b.budget.limiter.slice().holdings['calls'] as { rate: number }).rate).toBeGreaterThan(half * 1.5);
      expect(mostInAnyWindow(sim.calls.map((x) => x.at), WINDOW_MS)).toBeLessThanOrEqual(20);
    } finally {
      await sim.stop();
    }
  }, 60_000);

  it("never passes the deployment's daily quota, whoever spends it and whoever dies holding a grant", async () => {
    const sim = createBudgetSim(spec(150), simOptions);
    try {
      const a = await sim.join('a', 10);
      await sim.join('b', 10);
      await sim.step(2_000);
      sim.kill(a);
      await sim.join('c', 10);
      await sim.step(20_000);
      expect(sim.calls.length).toBeLessThanOrEqual(150);
      expect(sim.calls.length).toBeGreaterThan(100);
    } finally {
      await sim.stop();
    }
  }, 60_000);

  it('costs one statement per member beat at a steady load, whatever the number of calls', async () => {
    const sim = createBudgetSim(spec(), simOptions);
    try {
      await sim.join('a', 10);
      await sim.join('b', 10);
      await sim.step(3_000);
      const statements = sim.statements();
      const calls = sim.calls.length;
      await sim.step(4_000); // 20 beats of the two members (every 200 ms)
      expect(sim.calls.length - calls).toBeGreaterThan(70);
      expect(sim.statements() - statements).toBeLessThanOrEqual(2 * 20 + 5);
    } finally {
      await sim.stop();
    }
  }, 60_000);
});
