import { describe, expect, it } from 'vitest';
import type { PrismaClient } from '../../src/db/generated/client.ts';
import { createSuppressions } from '../../src/security/suppression.ts';

/** A suppression table in memory that counts the statements reading it; `hold` keeps the next read from answering. */
function table() {
  const rows: { hash: string }[] = [];
  const statements: string[][] = [];
  let gate: Promise<void> | undefined;
  const prisma = {
    suppression: {
      findMany: async ({ where }: { where: { hash: { in: string[] } } }) => {
        statements.push(where.hash.in);
        // the rows as they are when the statement runs
        const seen = rows.filter((r) => where.hash.in.includes(r.hash)).map((r) => ({ hash: r.hash }));
        if (gate) await gate;
        return seen;
      },
      createMany: ({ data }: { data: { hash: string }[] }) => {
        rows.push(...data.map((d) => ({ hash: d.hash })));
        return Promise.resolve({ count: data.length });
      },
    },
  };
  return {
    prisma: prisma as unknown as PrismaClient,
    statements,
    hold() {
      let open!: () => void;
      gate = new Promise<void>((resolve) => (open = resolve));
      return () => {
        gate = undefined;
        open();
      };
    },
  };
}

describe('the erasure list read fresh', () => {
  it('answers the checks made at once (the items one vendor answer carried) with one database statement', async () => {
    const t = table();
    const suppressions = createSuppressions(t.prisma, 'k'.repeat(32));
    await suppressions.add({ marketoIds: [7], emails: ['gone@example.com'] });
    const checks = Array.from({ length: 30 }, (_, i) => suppressions.listed({ marketoIds: [i + 1], dynamicsIds: [`d-${i}`] }));
    const listed = await Promise.all(checks);
    expect(t.statements).toHaveLength(1);
    expect(listed.map((set) => set.size)).toEqual(Array.from({ length: 30 }, (_, i) => (i === 6 ? 1 : 0)));
    expect(await suppressions.suppressed({ emails: ['GONE@example.com '] }, { fresh: true })).toBe(true);
    expect(t.statements).toHaveLength(2);
  });

  it('never answers a check with a statement that started before it: an erasure made in between is seen', async () => {
    const t = table();
    const suppressions = createSuppressions(t.prisma, 'k'.repeat(32));
    const open = t.hold();
    const early = suppressions.suppressed({ marketoIds: [42] }, { fresh: true });
    await new Promise((resolve) => setImmediate(resolve));
    expect(t.statements).toHaveLength(1); // in flight, without person 42 listed
    await suppressions.add({ marketoIds: [42] });
    const late = suppressions.suppressed({ marketoIds: [42] }, { fresh: true });
    open();
    expect(await early).toBe(false);
    expect(await late).toBe(true);
    expect(t.statements).toHaveLength(2);
  });
});
