import { describe, expect, it } from 'vitest';
import { createRideAlong } from '../../src/connectors/ride-along.ts';

/** A fake rate limiter: each call is admitted when the test says so. */
function gate() {
  const admissions: (() => void)[] = [];
  return {
    wait: () => new Promise<void>((resolve) => admissions.push(resolve)),
    admitNext: () => admissions.shift()?.(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('ride-along calls', () => {
  it('fills a call with everything that arrived until the limiter admitted it, and no more', async () => {
    const limiter = gate();
    const sent: number[][] = [];
    const rides = createRideAlong<number, number[]>({
      maxItems: 300,
      async send(_key, bind) {
        await limiter.wait();
        const items = bind();
        sent.push(items);
        return items.map((n) => n * 10);
      },
    });
    const a = rides.ride('k', [1, 2]);
    await tick();
    const b = rides.ride('k', [3]);
    limiter.admitNext();
    await tick();
    const c = rides.ride('k', [4]);
    await tick();
    limiter.admitNext();
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    expect(sent).toEqual([[1, 2, 3], [4]]);
    expect(ra).toEqual({ result: [10, 20, 30], offset: 0 });
    expect(rb).toEqual({ result: [10, 20, 30], offset: 2 });
    expect(rc).toEqual({ result: [40], offset: 0 });
  });

  it('keeps separate calls for separate keys', async () => {
    const sent: string[] = [];
    const rides = createRideAlong<number, string>({
      maxItems: 10,
      send: (key, bind) => {
        sent.push(`${key}:${bind().join(',')}`);
        return Promise.resolve(key);
      },
    });
    await Promise.all([rides.ride('a', [1]), rides.ride('b', [2]), rides.ride('a', [3])]);
    expect(sent.sort()).toEqual(['a:1,3', 'b:2']);
  });

  it('never puts more than maxItems records in a call; the rest waits for the next one', async () => {
    const sent: number[] = [];
    const rides = createRideAlong<number, null>({
      maxItems: 5,
      send: (_key, bind) => {
        sent.push(bind().length);
        return Promise.resolve(null);
      },
    });
    await Promise.all([rides.ride('k', [1, 2, 3]), rides.ride('k', [4, 5]), rides.ride('k', [6]), rides.ride('k', [7, 8, 9, 10, 11])]);
    expect(sent).toEqual([5, 1, 5]);
    await expect(rides.ride('k', [1, 2, 3, 4, 5, 6])).rejects.toThrow(RangeError);
  });

  it('fills a call to its last record with a request that rides in pieces, where whole requests leave it short', async () => {
    const sent: number[] = [];
    const make = () =>
      createRideAlong<number, Set<number>>({
        maxItems: 10,
        send: (_key, bind) => {
          const items = bind();
          sent.push(items.length);
          return Promise.resolve(new Set(items));
        },
      });
    const whole = make();
    await Promise.all([whole.ride('k', [1, 2, 3, 4]), whole.ride('k', [5, 6, 7, 8]), whole.ride('k', [9, 10, 11, 12])]);
    expect(sent).toEqual([8, 4]);
    sent.length = 0;
    const pieces = make();
    const answers = await Promise.all([pieces.rideInPieces('k', [1, 2, 3, 4], 2), pieces.rideInPieces('k', [5, 6, 7, 8], 2), pieces.rideInPieces('k', [9, 10, 11, 12], 2)]);
    expect(sent).toEqual([10, 2]);
    // the last request went in both calls: it gets both answers, and each of its records is in one
    expect(answers.map((a) => a.length)).toEqual([1, 1, 2]);
    for (const id of [9, 10, 11, 12]) expect(answers[2]?.filter((call) => call.has(id))).toHaveLength(1);
  });

  it('tells a request in pieces it was sent once its last piece is sent, and fails it with any of its calls', async () => {
    const limiter = gate();
    let calls = 0;
    const rides = createRideAlong<number, null>({
      maxItems: 3,
      async send(_key, bind) {
        await limiter.wait();
        bind();
        calls += 1;
        if (calls === 2) throw new Error('second call failed');
        return null;
      },
    });
    let told = 0;
    const request = rides.rideInPieces('k', [1, 2, 3, 4, 5], 1, () => (told += 1));
    const failed = expect(request).rejects.toThrow('second call failed');
    await tick();
    limiter.admitNext();
    await tick();
    expect(told).toBe(0);
    limiter.admitNext();
    await failed;
    expect(told).toBe(1);
    // nothing to read: told at once, no call
    let toldEmpty = false;
    expect(await rides.rideInPieces('k', [], 10, () => (toldEmpty = true))).toEqual([]);
    expect(toldEmpty).toBe(true);
    expect(calls).toBe(2);
  });

  it('fails only the requests of a call that failed', async () => {
    const limiter = gate();
    let calls = 0;
    const rides = createRideAlong<number, string>({
      maxItems: 300,
      async send(_key, bind) {
        await limiter.wait();
        bind();
        if (++calls === 1) throw new Error('606 after admission');
        return 'ok';
      },
    });
    const first = rides.ride('k', [1]);
    await tick();
    limiter.admitNext();
    await expect(first).rejects.toThrow('606');
    const second = rides.ride('k', [2]);
    await tick();
    limiter.admitNext();
    await expect(second).resolves.toEqual({ result: 'ok', offset: 0 });
  });

  it('fails every waiting request when the call is refused before admission (quota, shutdown)', async () => {
    const rides = createRideAlong<number, string>({
      maxItems: 300,
      send: () => Promise.reject(new Error('607 daily quota')),
    });
    const results = await Promise.allSettled([rides.ride('k', [1]), rides.ride('k', [2])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    // and the next request starts a new call rather than waiting forever
    await expect(rides.ride('k', [3])).rejects.toThrow('607');
  });

  it('fills a call up to the capacity asked when it is admitted, in weight units, and the rest waits for the next call', async () => {
    const limiter = gate();
    const sent: string[][] = [];
    let capacity = 10;
    const rides = createRideAlong<string, number>({
      maxItems: 1000,
      capacity: () => capacity,
      weigh: (item) => item.length,
      async send(_key, bind) {
        await limiter.wait();
        sent.push(bind());
        return sent.length;
      },
    });
    const all = ['aaaa', 'bbbb', 'cc', 'dddd', 'e'].map((item) => rides.ride('k', [item]));
    await tick();
    // the capacity in force when the call is admitted counts, not the one when it was queued
    capacity = 6;
    limiter.admitNext();
    await tick();
    limiter.admitNext();
    await tick();
    limiter.admitNext();
    await Promise.all(all);
    // in arrival order: a request that does not fit ends the call (no overtaking)
    expect(sent).toEqual([['aaaa'], ['bbbb', 'cc'], ['dddd', 'e']]);
  });

  it('weighs capacity in weight units, not records: a capacity larger than maxItems still fills a call, and maxItems bounds its records', async () => {
    const limiter = gate();
    const sent: string[][] = [];
    // an In-filter read: the room in the URL is characters, far more than the records a call may carry
    const rides = createRideAlong<string, number>({
      maxItems: 5,
      capacity: () => 40,
      weigh: (item) => item.length,
      async send(_key, bind) {
        await limiter.wait();
        sent.push(bind());
        return sent.length;
      },
    });
    const all = Array.from({ length: 7 }, (_, i) => rides.ride('k', [`id-${i}`]));
    await tick();
    // admit as many calls as it takes (at most one per request)
    for (let i = 0; i < 7; i++) {
      limiter.admitNext();
      await tick();
    }
    await Promise.all(all);
    // 5 records of 4 characters: 20 of the 40 characters, the record bound is what ends the call
    expect(sent).toEqual([['id-0', 'id-1', 'id-2', 'id-3', 'id-4'], ['id-5', 'id-6']]);
  });
});
