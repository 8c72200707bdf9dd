// PGlite in a worker thread, seen from the service as the PGlite client the Prisma adapter drives:
// query, exec and transaction with the same semantics. PGlite is PostgreSQL compiled to
// WebAssembly; on the service's thread its statements ran between webhooks and syncs (a third of
// that thread's time under a burst), where a PostgreSQL server's backends run beside it. Requests
// are sent as they come (the thread queues them on PGlite's own mutex), so it is never idle while
// work waits here; results cross as structured clones.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { messages, type PGlite, type Results, type Transaction } from '@electric-sql/pglite';

export interface PGliteThreadOptions {
  dataDir: string;
  postgresqlconf: string[];
  /** PGlite's PostgreSQL and initdb, compiled once per process and shared by its threads */
  pgliteWasmModule?: WebAssembly.Module;
  initdbWasmModule?: WebAssembly.Module;
  fsBundle?: Blob;
}

export type PGliteRequest = { id: number } & (
  | { op: 'open'; startFrom?: ArrayBuffer }
  | { op: 'query'; sql: string; params: unknown[]; rowMode?: 'array' | 'object'; rawTypes: number[]; txId?: number }
  | { op: 'exec'; sql: string; txId?: number }
  | { op: 'begin' | 'rollback'; txId: number }
  | { op: 'end'; txId: number; commit: boolean }
  | { op: 'dump' | 'close' }
);

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never;
type Request = Distribute<PGliteRequest>;

export interface WireError {
  name: string;
  message: string;
  stack?: string | undefined;
  /** a PostgreSQL error (DatabaseError): the adapter maps its code to Prisma's errors */
  database: boolean;
  fields: Record<string, unknown>;
}

export interface WireResults {
  rows: unknown[];
  fields: { name: string; dataTypeID: number }[];
  affectedRows?: number;
}

export type PGliteReply = { id: number } & ({ ok: true; value: unknown } | { ok: false; error: WireError });

type Parsers = Record<number, (value: string, typeId: number) => unknown>;
interface QueryOptions {
  rowMode?: 'array' | 'object';
  parsers?: Parsers;
}

function unwire(error: WireError): Error {
  const rebuilt = error.database ? new messages.DatabaseError(error.message, 0, 'error') : new Error(error.message);
  Object.assign(rebuilt, error.fields, { name: error.name }, error.stack ? { stack: error.stack } : {});
  return rebuilt;
}

/** The caller's parsers, for the types the thread left as text. */
function parsed<T>(r: WireResults, options: QueryOptions | undefined): Results<T> {
  const parsers = options?.parsers;
  if (parsers) {
    const columns = r.fields.flatMap((field, index) => (parsers[field.dataTypeID] ? [{ index, name: field.name, parse: parsers[field.dataTypeID]!, type: field.dataTypeID }] : []));
    if (columns.length > 0) {
      for (const row of r.rows as (unknown[] | Record<string, unknown>)[]) {
        for (const { index, name, parse, type } of columns) {
          const key = Array.isArray(row) ? index : name;
          const value = (row as Record<string | number, unknown>)[key];
          if (typeof value === 'string') (row as Record<string | number, unknown>)[key] = parse(value, type);
        }
      }
    }
  }
  return r as Results<T>;
}

/**
 * The worker's module, beside this one: compiled, the .js file itself; from source, the .ts file
 * through tsx's API (a worker thread does not inherit the loader the service was started with).
 */
function startWorker(options: PGliteThreadOptions): Worker {
  const extension = extname(fileURLToPath(import.meta.url));
  const url = new URL(`./pglite-thread.worker${extension}`, import.meta.url);
  if (extension !== '.ts') return new Worker(url, { workerData: options });
  const boot = `const { tsImport } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))});
await tsImport(${JSON.stringify(url.href)}, ${JSON.stringify(import.meta.url)});`;
  return new Worker(boot, { eval: true, workerData: options });
}

// Compiling PGlite's 9 MB of WebAssembly took most of a thread's start; a process that opens
// several databases (the tests: one per file) compiles it once.
let compiled: Promise<Pick<PGliteThreadOptions, 'pgliteWasmModule' | 'initdbWasmModule' | 'fsBundle'>> | undefined;
function compiledPGlite() {
  compiled ??= (async () => {
    const dist = new URL('.', import.meta.resolve('@electric-sql/pglite'));
    const [pgliteWasmModule, initdbWasmModule, fsBundle] = await Promise.all([
      readFile(new URL('pglite.wasm', dist)).then((bytes) => WebAssembly.compile(bytes)),
      readFile(new URL('initdb.wasm', dist)).then((bytes) => WebAssembly.compile(bytes)),
      readFile(new URL('pglite.data', dist)).then((bytes) => new Blob([bytes])),
    ]);
    return { pgliteWasmModule, initdbWasmModule, fsBundle };
  })();
  // a failed read is not remembered: the next database tries again
  compiled.catch(() => (compiled = undefined));
  return compiled;
}

export class PGliteThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private nextId = 0;
  private nextTxId = 0;
  private failure: Error | undefined;

  private constructor(options: PGliteThreadOptions) {
    this.worker = startWorker(options);
    // an idle thread does not keep the process alive; one with work in flight does
    this.worker.unref();
    this.worker.on('message', (reply: PGliteReply) => this.settle(reply));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new Error(`the embedded database's thread exited (code ${code})`)));
  }

  static async open(options: PGliteThreadOptions & { startFrom?: Blob | undefined }): Promise<PGliteThread> {
    // A new data directory is made by initdb, a second WebAssembly instance whose memory (~450 MB
    // of RSS) a thread left idle afterwards never collects: a thread of its own makes it and ends.
    if (!options.dataDir.startsWith('memory://') && !existsSync(join(options.dataDir, 'PG_VERSION'))) {
      await (await PGliteThread.start(options)).close();
    }
    return PGliteThread.start(options);
  }

  private static async start(options: PGliteThreadOptions & { startFrom?: Blob | undefined }): Promise<PGliteThread> {
    const thread = new PGliteThread({ dataDir: options.dataDir, postgresqlconf: options.postgresqlconf, ...(await compiledPGlite()) });
    try {
      await thread.send(options.startFrom ? { op: 'open', startFrom: await options.startFrom.arrayBuffer() } : { op: 'open' });
    } catch (error) {
      await thread.worker.terminate();
      throw error;
    }
    return thread;
  }

  private send(request: Request): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = ++this.nextId;
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const transfer = request.op === 'open' && request.startFrom ? [request.startFrom] : [];
      this.worker.postMessage({ ...request, id }, transfer);
    });
  }

  private settle(reply: PGliteReply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.ok) waiting.resolve(reply.value);
    else waiting.reject(unwire(reply.error));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }

  private async run<T>(sql: string, params: unknown[] | undefined, options: QueryOptions | undefined, txId?: number): Promise<Results<T>> {
    const rawTypes = options?.parsers ? Object.keys(options.parsers).map(Number) : [];
    const request: Request = { op: 'query', sql, params: params ?? [], rawTypes, ...(options?.rowMode ? { rowMode: options.rowMode } : {}), ...(txId === undefined ? {} : { txId }) };
    return parsed<T>((await this.send(request)) as WireResults, options);
  }

  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>> {
    return this.run<T>(sql, params, options);
  }

  async exec(sql: string): Promise<Results[]> {
    return (await this.send({ op: 'exec', sql })) as Results[];
  }

  /** As PGlite's: COMMIT when `fn` returns (unless it rolled back), ROLLBACK when it throws. */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    const txId = ++this.nextTxId;
    await this.send({ op: 'begin', txId });
    let closed = false;
    const ensureOpen = () => {
      if (closed) throw new Error('Transaction is closed');
    };
    const tx = {
      query: <R>(sql: string, params?: unknown[], options?: QueryOptions) => (ensureOpen(), this.run<R>(sql, params, options, txId)),
      exec: async (sql: string) => (ensureOpen(), (await this.send({ op: 'exec', sql, txId })) as Results[]),
      rollback: async () => {
        ensureOpen();
        closed = true;
        await this.send({ op: 'rollback', txId });
      },
      get closed() {
        return closed;
      },
    };
    let result: T;
    try {
      result = await fn(tx as unknown as Transaction);
    } catch (error) {
      closed = true;
      await this.send({ op: 'end', txId, commit: false });
      throw error;
    }
    closed = true;
    await this.send({ op: 'end', txId, commit: true });
    return result;
  }

  /** The data directory as an uncompressed tarball (PGlite's dumpDataDir). */
  async dumpDataDir(): Promise<Blob> {
    return new Blob([(await this.send({ op: 'dump' })) as ArrayBuffer]);
  }

  async close(): Promise<void> {
    try {
      await this.send({ op: 'close' });
    } finally {
      this.fail(new Error('the embedded database is closed'));
      await this.worker.terminate();
    }
  }

  /** What the Prisma adapter drives: it is typed for the PGlite class, and uses only these methods. */
  asPGlite(): PGlite {
    return this as unknown as PGlite;
  }
}
