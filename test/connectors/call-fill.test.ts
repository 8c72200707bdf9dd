import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { holdsToFill, JoinWindow, type FillPolicy, type FillState } from '../../src/connectors/call-fill.ts';
import { createRideAlong } from '../../src/connectors/ride-along.ts';

const base: FillState = { waiting: 50, maxItems: 300, nextForMs: 0, joinedInWindow: 0, rateWindowMs: 1000, maxHoldMs: 1000, feeding: 0 };

describe('when a part-full call waits to fill', () => {
  it.each([
    ['a lone change on an idle service goes at once', { waiting: 1, joinedInWindow: 1 }, false],
    ['a steady 100 records a second would not fill a call within the hold: it goes', { waiting: 80, joinedInWindow: 100 }, false],
    ['a burst arriving at 400 a second fills it within the hold: it waits', { waiting: 60, joinedInWindow: 400 }, true],
    ['the same burst once the hold has run out: it goes', { waiting: 60, joinedInWindow: 400, nextForMs: 1000 }, false],
    ['late in the hold the rest would not come in time: it goes', { waiting: 60, joinedInWindow: 400, nextForMs: 500 }, false],
    ['a full call never waits', { waiting: 300, joinedInWindow: 5000, feeding: 300 }, false],
    ['the feeding calls carry enough to fill it: it waits (a read about to become writes)', { waiting: 40, feeding: 300 }, true],
    ['the feeding calls carry too little to fill it, at no rate: it goes', { waiting: 40, feeding: 100 }, false],
  ] as const)('%s', (_name, state, holds) => {
    expect(holdsToFill({ ...base, ...state })).toBe(holds);
  });

  it('never holds a call past the hold, however fast records come or however much feeds it', () => {
    fc.assert(
      fc.property(fc.nat(299), fc.nat(100_000), fc.nat(1000), fc.integer({ min: 1000, max: 10_000 }), (waiting, joined, feeding, waited) => {
        expect(holdsToFill({ ...base, waiting, joinedInWindow: joined, feeding, nextForMs: waited })).toBe(false);
      }),
    );
  });

  it('counts the records that joined within the window only', () => {
    const window = new JoinWindow(1000);
    window.add(0, 100);
    window.add(600, 50);
    window.add(700, 10);
    expect(window.rateCount(900)).toBe(160);
    expect(window.rateCount(1000)).toBe(60);
    // one request alone is not a rate
    expect(window.countWithin(1650, 1000)).toBe(10);
    expect(window.rateCount(1650)).toBe(0);
    expect(window.countWithin(1800, 1000)).toBe(0);
  });
});

/** A clock and timers the test moves by hand. */
function manualTime() {
  let t = 0;
  const timers: { at: number; fn: () => void }[] = [];
  const policy = (feeding: () => number = () => 0): FillPolicy => ({
    maxHoldMs: 1000,
    rateWindowMs: 1000,
    feeding,
    now: () => t,
    after: (ms, fn) => {
      const timer = { at: t + ms, fn };
      timers.push(timer);
      return () => {
        const at = timers.indexOf(timer);
        if (at >= 0) timers.splice(at, 1);
      };
    },
  });
  return {
    policy,
    advance(ms: number) {
      const until = t + ms;
      for (;;) {
        const next = timers.filter((x) => x.at <= until).sort((a, b) => a.at - b.at)[0];
        if (!next) break;
        timers.splice(timers.indexOf(next), 1);
        t = next.at;
        next.fn();
      }
      t = until;
    },
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('ride-along calls with a fill policy', () => {
  function recorder(fill: FillPolicy) {
    const sent: number[] = [];
    const rides = createRideAlong<number, null>({
      maxItems: 300,
      fill,
      send: (_key, bind) => {
        sent.push(bind().length);
        return Promise.resolve(null);
      },
    });
    return { sent, rides };
  }

  it('sends a lone request at once', async () => {
    const time = manualTime();
    const { sent, rides } = recorder(time.policy());
    await rides.ride('k', [1]);
    expect(sent).toEqual([1]);
  });

  it('holds the call a burst is filling and sends it the moment it is full, not at the end of the hold', async () => {
    const time = manualTime();
    const { sent, rides } = recorder(time.policy());
    const first = rides.ride('k', range(0, 250)); // goes: nothing joined before it
    await tick();
    await first;
    const burst: Promise<unknown>[] = [];
    for (let i = 0; i < 6; i++) {
      burst.push(rides.ride('k', range(1000 + i * 50, 50)));
      await tick();
      time.advance(100);
      await tick();
    }
    await Promise.all(burst);
    // 250 + 300 at ~350/s: the second call waited for its 300th record instead of going with 50
    expect(sent).toEqual([250, 300]);
  });

  it('lets a held call go when its hold runs out, with what has come', async () => {
    const time = manualTime();
    const { sent, rides } = recorder(time.policy());
    await rides.ride('k', range(0, 280));
    const late = rides.ride('k', range(1000, 20));
    await tick();
    expect(sent).toEqual([280]);
    time.advance(1000);
    await late;
    expect(sent).toEqual([280, 20]);
  });

  it('holds a call while the calls feeding it carry enough to fill it, and lets it go once they have answered and nothing came', async () => {
    const time = manualTime();
    let feeding = 300;
    const { sent, rides } = recorder(time.policy(() => feeding));
    const write = rides.ride('k', range(0, 40));
    await tick();
    time.advance(300);
    expect(sent).toEqual([]);
    feeding = 0;
    time.advance(100);
    await write;
    expect(sent).toEqual([40]);
  });

  it('reports the records it carries: waiting, in calls not answered, and answered a moment ago', async () => {
    const time = manualTime();
    const answers = new Map<string, () => void>();
    const rides = createRideAlong<number, null>({
      maxItems: 300,
      fill: time.policy(),
      send: (key, bind) => {
        bind();
        return new Promise((resolve) => answers.set(key, () => resolve(null)));
      },
    });
    const call = rides.ride('a', [1, 2, 3]);
    void rides.ride('b', [4]);
    expect(rides.carrying()).toBe(4);
    expect(rides.carrying((key) => key === 'a')).toBe(3);
    await tick();
    answers.get('a')!();
    await call;
    expect(rides.carrying((key) => key === 'a')).toBe(3);
    time.advance(1000);
    expect(rides.carrying((key) => key === 'a')).toBe(0);
    // a stage whose work comes back later asks for a longer memory
    expect(rides.carrying((key) => key === 'a', 2000)).toBe(3);
  });

  it('holds each key as long as the policy gives that key', async () => {
    const time = manualTime();
    const sent: string[] = [];
    const rides = createRideAlong<number, null>({
      maxItems: 300,
      fill: { ...time.policy(() => 300), maxHoldMs: (key) => (key === 'patient' ? 2000 : 500) },
      send: (key, bind) => {
        sent.push(`${key}:${bind().length}`);
        return Promise.resolve(null);
      },
    });
    const quick = rides.ride('quick', [1]);
    const patient = rides.ride('patient', [2]);
    await tick();
    time.advance(500);
    await quick;
    expect(sent).toEqual(['quick:1']);
    time.advance(1500);
    await patient;
    expect(sent).toEqual(['quick:1', 'patient:1']);
  });
});

function range(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}
