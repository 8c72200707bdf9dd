import type { BudgetSpec, MemberRow, MemberState } from '../../src/connectors/budget/allocation.ts';
import { createBudgetCoordinator, type BudgetCoordinator, type MemberStore } from '../../src/connectors/budget/coordinator.ts';
import type { VendorBudget } from '../../src/connectors/budget/vendors.ts';

// A deployment of budget members on one hand-moved clock, for properties: the database is a map
// (each call is atomic, as the lock makes `grow` on PostgreSQL), every member spends whatever its
// limiter admits, and the vendor records when each call arrived and ended. Frozen members' timers
// wait until they thaw; killed members never run again (their calls in flight still end).

type Timer = { at: number; fn: () => void; owner: SimMember | undefined; live: boolean };

export type SimMember = {
  name: string;
  coordinator: BudgetCoordinator;
  budget: VendorBudget;
  frozen: boolean;
  killed: boolean;
  /** calls this member keeps waiting for the budget */
  demand: number;
  waiting: number;
};

export function createBudgetSim(spec: BudgetSpec, options: { callMs: number; leaseMs: number; intervalMs: number; growRetryMs: number }) {
  let t = 0;
  const timers: Timer[] = [];
  const rows = new Map<string, MemberRow>();
  const calls: { member: string; at: number; end: number }[] = [];
  const members: SimMember[] = [];
  let statements = 0;

  const flush = async () => {
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
  };

  function after(owner: SimMember | undefined, ms: number, fn: () => void) {
    const timer: Timer = { at: t + Math.max(0, ms), fn, owner, live: true };
    timers.push(timer);
    return () => (timer.live = false);
  }

  const snapshot = (row: MemberRow): MemberRow => structuredClone(row);

  function storeFor(): MemberStore {
    return {
      statements: () => statements,
      leave(member) {
        statements += 1;
        for (const row of rows.values()) if (row.member === member) row.expiresAt = Math.min(row.expiresAt, t);
        return Promise.resolve();
      },
      renew(member, leaseMs, states, budgets) {
        statements += 1;
        const renewed: string[] = [];
        for (const { budget, state } of states) {
          const row = rows.get(`${budget}/${member}`);
          if (row && row.expiresAt > t) {
            row.state = structuredClone(state);
            row.expiresAt = t + leaseMs;
            renewed.push(budget);
          }
        }
        const out = new Map<string, MemberRow[]>(budgets.map((b) => [b, []]));
        for (const [key, row] of rows) out.get(key.slice(0, key.indexOf('/')))?.push(snapshot(row));
        return Promise.resolve({ at: t, renewed, rows: out });
      },
      grow(budget, member, leaseMs, next: (rows: MemberRow[], at: number) => { state: MemberState; rewrite?: MemberRow[] }) {
        statements += 5;
        const current = [...rows.entries()].filter(([key]) => key.startsWith(`${budget}/`)).map(([, row]) => snapshot(row));
        const { state } = next(current, t);
        rows.set(`${budget}/${member}`, { member, expiresAt: t + leaseMs, state: structuredClone(state) });
        return Promise.resolve({ at: t, rows: [...rows.values()].map(snapshot), state });
      },
    };
  }

  function spend(m: SimMember): void {
    while (!m.killed && m.waiting < m.demand) {
      m.waiting += 1;
      m.budget.limiter
        .schedule({ priority: 1 }, () => {
          const call = { member: m.name, at: t, end: t + options.callMs };
          calls.push(call);
          return new Promise<void>((resolve) => after(undefined, options.callMs, resolve));
        })
        .then(
          () => {
            m.waiting -= 1;
            spend(m);
          },
          () => (m.waiting -= 1),
        );
    }
  }

  return {
    calls,
    members,
    now: () => t,
    statements: () => statements,
    /** the budget rows as the database holds them */
    rows: () => [...rows.values()].map(snapshot),
    async join(name: string, demand: number): Promise<SimMember> {
      const m = { name, frozen: false, killed: false, demand, waiting: 0 } as SimMember;
      m.coordinator = createBudgetCoordinator({
        store: storeFor(),
        member: name,
        leaseMs: options.leaseMs,
        intervalMs: options.intervalMs,
        growRetryMs: options.growRetryMs,
        clock: { now: () => t, after: (ms, fn) => after(m, ms, fn) },
      });
      m.budget = m.coordinator.join(spec, ['calls']);
      members.push(m);
      await m.coordinator.start();
      spend(m);
      await flush();
      return m;
    },
    setDemand(m: SimMember, demand: number): void {
      m.demand = demand;
      spend(m);
    },
    /** SIGKILL: it never runs again; its calls in flight end at the vendor as they would */
    kill(m: SimMember): void {
      m.killed = true;
      m.frozen = true;
      m.budget.limiter.stop();
    },
    freeze(m: SimMember): void {
      m.frozen = true;
    },
    thaw(m: SimMember): void {
      if (!m.killed) m.frozen = false;
    },
    /** Moves the clock by `ms`, running every due timer of a member that is not frozen, in order. */
    async step(ms: number): Promise<void> {
      const until = t + ms;
      for (;;) {
        await flush();
        const due = timers.filter((x) => x.live && x.at <= until && !x.owner?.frozen).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        t = Math.max(t, due.at);
        due.live = false;
        timers.splice(timers.indexOf(due), 1);
        due.fn();
      }
      t = until;
      await flush();
    },
    async stop(): Promise<void> {
      for (const m of members) m.killed = true;
      for (const m of members) m.budget.limiter.stop();
      timers.length = 0;
      await flush();
    },
  };
}

/** The most calls that arrived in any window of `windowMs` (a window (t - windowMs, t]). */
export function mostInAnyWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to += 1) {
    while (sorted[from]! <= sorted[to]! - windowMs) from += 1;
    most = Math.max(most, to - from + 1);
  }
  return most;
}

/** The most calls in flight at once. */
export function mostInFlight(calls: readonly { at: number; end: number }[]): number {
  const edges = calls.flatMap((c) => [
    { at: c.at, d: 1 },
    { at: c.end, d: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of edges) {
    now += e.d;
    most = Math.max(most, now);
  }
  return most;
}
