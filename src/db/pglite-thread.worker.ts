// The embedded PostgreSQL (PGlite) in a thread of its own: its WebAssembly runs beside the service's
// event loop instead of on it, as a PostgreSQL server's backends run beside a replica. This side only
// executes what pglite-thread.ts asks, in the order asked; PGlite's own mutex keeps a transaction's
// statements together, exactly as it does for callers on one thread.
import { parentPort, workerData } from 'node:worker_threads';
import { messages, PGlite, type Transaction } from '@electric-sql/pglite';
import type { PGliteReply, PGliteRequest, PGliteThreadOptions, WireError, WireResults } from './pglite-thread.ts';

interface OpenTransaction {
  tx: Transaction;
  end: (commit: boolean) => void;
  /** PGlite's transaction() promise: settles once COMMIT or ROLLBACK ran */
  settled: Promise<unknown>;
  /** a transaction's requests run one after another, in the order they were sent */
  chain: Promise<unknown>;
}

const port = parentPort!;
const options = workerData as PGliteThreadOptions;
const transactions = new Map<number, OpenTransaction>();
let db: PGlite | undefined;

/** The error as data: a DatabaseError's fields (code, detail, constraint...) survive the crossing. */
function wire(error: unknown): WireError {
  if (error instanceof Error) {
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(error)) if (typeof value !== 'function' && typeof value !== 'object') fields[key] = value;
    return { name: error.name, message: error.message, stack: error.stack, database: error instanceof messages.DatabaseError, fields };
  }
  return { name: 'Error', message: String(error), database: false, fields: {} };
}

/** Values of the types the caller parses itself stay text: its parsers run on its own thread. */
function rawParsers(types: readonly number[]): Record<number, (value: string) => string> {
  return Object.fromEntries(types.map((type) => [type, (value: string) => value]));
}

function results(r: { rows: unknown[]; fields: { name: string; dataTypeID: number }[]; affectedRows?: number }): WireResults {
  return { rows: r.rows, fields: r.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })), ...(r.affectedRows === undefined ? {} : { affectedRows: r.affectedRows }) };
}

async function begin(txId: number): Promise<void> {
  const open = db!;
  await new Promise<void>((inside, failed) => {
    const settled = open
      .transaction(
        (tx) =>
          new Promise<void>((commit, rollback) => {
            transactions.set(txId, {
              tx,
              end: (ok) => (ok ? commit() : rollback(new Error('rolled back by the caller'))),
              settled,
              chain: Promise.resolve(),
            });
            inside();
          }),
      )
      .finally(() => transactions.delete(txId));
    // BEGIN itself failed: the callback never ran
    settled.catch(failed);
  });
}

/** Runs a transaction's request after the ones sent before it. */
function inTransaction<T>(txId: number, fn: (open: OpenTransaction) => Promise<T>): Promise<T> {
  const open = transactions.get(txId);
  if (!open) return Promise.reject(new Error(`transaction ${txId} is not open`));
  const run = open.chain.then(() => fn(open));
  open.chain = run.catch(() => undefined);
  return run;
}

async function handle(request: PGliteRequest): Promise<unknown> {
  switch (request.op) {
    case 'open': {
      const loadDataDir = request.startFrom ? new Blob([request.startFrom]) : undefined;
      const { dataDir, ...pgliteOptions } = options;
      db = await PGlite.create(dataDir, { ...pgliteOptions, ...(loadDataDir ? { loadDataDir } : {}) });
      return null;
    }
    case 'query': {
      const queryOptions = { ...(request.rowMode ? { rowMode: request.rowMode } : {}), parsers: rawParsers(request.rawTypes) };
      if (request.txId === undefined) return results(await db!.query(request.sql, request.params, queryOptions));
      return inTransaction(request.txId, async ({ tx }) => results(await tx.query(request.sql, request.params, queryOptions)));
    }
    case 'exec': {
      if (request.txId === undefined) return (await db!.exec(request.sql)).map(results);
      return inTransaction(request.txId, async ({ tx }) => (await tx.exec(request.sql)).map(results));
    }
    case 'begin':
      return begin(request.txId);
    case 'rollback':
      return inTransaction(request.txId, ({ tx }) => tx.rollback());
    case 'end':
      // after the transaction's last statement; answers once COMMIT (or ROLLBACK) ran
      return inTransaction(request.txId, async (open) => {
        open.end(request.commit);
        await open.settled.catch((error: unknown) => {
          if (request.commit) throw error;
        });
        return null;
      });
    case 'dump': {
      const tarball = await db!.dumpDataDir('none');
      return tarball.arrayBuffer();
    }
    case 'close':
      await db?.close();
      db = undefined;
      return null;
  }
}

port.on('message', (request: PGliteRequest) => {
  handle(request).then(
    (value) => {
      const reply: PGliteReply = { id: request.id, ok: true, value };
      port.postMessage(reply, value instanceof ArrayBuffer ? [value] : []);
    },
    (error: unknown) => port.postMessage({ id: request.id, ok: false, error: wire(error) } satisfies PGliteReply),
  );
});
