import type { MemberStore } from '../connectors/budget/coordinator.ts';
import type { MemberRow, MemberState } from '../connectors/budget/allocation.ts';
import type { Database } from './database.ts';

// The rows of the vendor budgets' members (table budget_member, one per budget and replica): the
// member's lease on the database's clock and its state (what it holds, what it gave up that still
// counts, its demand). Decisions are made by src/connectors/budget/allocation.ts; this file only
// reads and writes. Rows of a dead member stay a day: its grant of the daily quota is spent or lost,
// and dropping the row would let the quota be granted twice.

const KEEP_DEAD_ROWS_HOURS = 26;

/** Advisory-lock key of a budget: a stable 32-bit hash of its key (FNV-1a). */
export function budgetLockKey(budget: string): number {
  let hash = 0x811c9dc5;
  for (const char of `budget:${budget}`) {
    hash ^= char.codePointAt(0)!;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash | 0;
}

type Raw = { budget: string | null; member: string | null; expires_at: number | null; state: MemberState | string | null; at: number; renewed?: string[] | null };

function toRow(raw: Raw): MemberRow | undefined {
  if (raw.member === null || raw.expires_at === null || raw.state === null) return undefined;
  const state = typeof raw.state === 'string' ? (JSON.parse(raw.state) as MemberState) : raw.state;
  return { member: raw.member, expiresAt: Number(raw.expires_at), state };
}

export function createMemberStore(db: Database): MemberStore {
  let statements = 0;
  let grows = 0;
  return {
    statements: () => statements,

    async renew(member, leaseMs, states, budgets) {
      statements += 1;
      const raws = await db.prisma.$queryRaw<Raw[]>`
        WITH renewed AS (
          UPDATE budget_member b
             SET state = x.state, expires_at = now() + make_interval(secs => ${leaseMs / 1000}::float8)
            FROM jsonb_to_recordset(${JSON.stringify(states)}::jsonb) AS x(budget text, state jsonb)
           WHERE b.member = ${member} AND b.budget = x.budget AND b.expires_at > now()
          RETURNING b.budget)
        SELECT m.budget, m.member, (extract(epoch FROM m.expires_at) * 1000)::float8 AS expires_at, m.state,
               (extract(epoch FROM h.at) * 1000)::float8 AS at, h.renewed
          FROM (SELECT now() AS at, ARRAY(SELECT budget FROM renewed) AS renewed) h
          LEFT JOIN budget_member m ON m.budget = ANY(${[...budgets]}::text[])`;
      const rows = new Map<string, MemberRow[]>(budgets.map((b) => [b, []]));
      for (const raw of raws) {
        const row = toRow(raw);
        if (row && raw.budget) rows.get(raw.budget)?.push(row);
      }
      return { at: Number(raws[0]?.at ?? Date.now()), renewed: raws[0]?.renewed ?? [], rows };
    },

    async leave(member) {
      statements += 1;
      await db.prisma.$executeRaw`UPDATE budget_member SET expires_at = least(expires_at, now()) WHERE member = ${member}`;
    },

    async grow(budget, member, leaseMs, next) {
      // BEGIN, the lock, the read, the write, COMMIT
      statements += 5;
      return db.prisma.$transaction(async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(${budgetLockKey(budget)}::int)`;
        const raws = await tx.$queryRaw<Raw[]>`
          SELECT m.budget, m.member, (extract(epoch FROM m.expires_at) * 1000)::float8 AS expires_at, m.state,
                 (extract(epoch FROM h.at) * 1000)::float8 AS at
            FROM (SELECT now() AS at) h
            LEFT JOIN budget_member m ON m.budget = ${budget}`;
        const at = Number(raws[0]?.at);
        const rows = raws.flatMap((raw) => toRow(raw) ?? []);
        const { state, rewrite } = next(rows, at);
        await tx.$executeRaw`
          INSERT INTO budget_member (budget, member, expires_at, state)
          VALUES (${budget}, ${member}, now() + make_interval(secs => ${leaseMs / 1000}::float8), ${JSON.stringify(state)}::jsonb)
          ON CONFLICT (budget, member) DO UPDATE SET expires_at = EXCLUDED.expires_at, state = EXCLUDED.state`;
        for (const row of rewrite ?? []) {
          statements += 1;
          await tx.$executeRaw`
            UPDATE budget_member SET state = ${JSON.stringify(row.state)}::jsonb, expires_at = least(expires_at, to_timestamp(${row.expiresAt / 1000}::float8))
             WHERE budget = ${budget} AND member = ${row.member}`;
        }
        // dead rows past their day are dropped now and then, by whichever member grows
        if (++grows % 20 === 0) {
          statements += 1;
          await tx.$executeRaw`
            DELETE FROM budget_member
             WHERE budget = ${budget} AND member <> ${member} AND expires_at < now() - make_interval(hours => ${KEEP_DEAD_ROWS_HOURS})`;
        }
        const mine = { member, expiresAt: at + leaseMs, state };
        return { at, rows: [...rows.filter((r) => r.member !== member), mine], state };
      });
    },
  };
}
