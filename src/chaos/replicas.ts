import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { createServiceProcess, freePort, type ServiceProcess, type ServiceProcessOptions } from './service-process.ts';

// Production is several replicas (DESIGN.md): the campaign runs N service processes on one
// database, all reached by the vendors' webhooks through a small round-robin front (a load
// balancer that health-checks: it skips a replica that is down or frozen), all running their inbox
// workers. The campaign can SIGKILL or SIGSTOP any of them, and can tell which replica sent a
// vendor call from the caller's TCP port (Linux /proc), so a fault can hit the one with work in hand.

export interface Replica {
  /** 1-based, for logs */
  index: number;
  process: ServiceProcess;
  /** SIGSTOPped until this moment (ms), or null */
  pausedUntil: number | null;
  pauseTimer: NodeJS.Timeout | null;
}

export interface ReplicaSetOptions {
  count: number;
  /** the options of replica i (1-based): its own port and log file */
  processOptions: (index: number, port: number) => ServiceProcessOptions;
}

export async function startReplicaSet(options: ReplicaSetOptions) {
  const replicas: Replica[] = [];
  for (let index = 1; index <= options.count; index++) {
    replicas.push({ index, process: createServiceProcess(options.processOptions(index, await freePort())), pausedUntil: null, pauseTimer: null });
  }
  let turn = 0;
  const serving = () => replicas.filter((r) => r.process.running() && r.pausedUntil === null);

  /**
   * The next replica that can answer (round-robin). With none serving, a frozen one: its kernel
   * still accepts the connection and it answers when it wakes, as a lone frozen process does.
   * Undefined when every replica is down.
   */
  function pick(): Replica | undefined {
    const live = serving();
    if (live.length === 0) return replicas.find((r) => r.process.running());
    turn = (turn + 1) % live.length;
    return live[turn];
  }

  /** A serving replica to ask, waiting (bounded) while all are down or frozen. */
  async function anyServing(maxMs = 120_000): Promise<Replica> {
    const deadline = Date.now() + maxMs;
    for (;;) {
      const replica = serving().length > 0 ? pick() : undefined;
      if (replica) return replica;
      if (Date.now() > deadline) throw new Error(`no replica was serving for ${maxMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  const front: Server = createServer((req, res) => void forward(req, res));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  const address = front.address();
  const frontUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;

  async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string' && !['host', 'content-length', 'connection', 'transfer-encoding'].includes(name)) headers[name] = value;
    }
    // a replica killed under the request is retried once on another, as a balancer does on a
    // connection error (the service deduplicates webhooks); a frozen one times out
    for (let attempt = 1; attempt <= 2; attempt++) {
      const target = pick();
      if (!target) break;
      try {
        const answer = await fetch(`${target.process.url}${req.url ?? '/'}`, {
          method: req.method ?? 'POST',
          headers,
          body: chunks.length ? Buffer.concat(chunks) : null,
          signal: AbortSignal.timeout(30_000),
        });
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await answer.arrayBuffer()));
        return;
      } catch (error) {
        if (error instanceof Error && error.name === 'TimeoutError') break;
      }
    }
    // marked as the front's own answer: the service never said this
    res.writeHead(502, { 'content-type': 'text/plain', [FRONT_ANSWER_HEADER]: 'no replica answered' }).end('no replica answered');
  }

  /** Which replica holds the client socket with this local port (the port a server saw as remote). */
  function ofPort(port: number | undefined): Replica | undefined {
    if (port === undefined) return undefined;
    const inodes = socketInodesOfLocalPort(port);
    if (inodes.size === 0) return undefined;
    for (const replica of replicas) {
      const pid = replica.process.pid();
      if (pid === undefined) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          const target = readlinkSync(join(`/proc/${pid}/fd`, fd));
          if (target.startsWith('socket:[') && inodes.has(target.slice(8, -1))) return replica;
        } catch {
          // the descriptor closed while we looked
        }
      }
    }
    return undefined;
  }

  /** SIGSTOP now, SIGCONT after `ms`; true when the signal reached a live, running replica. */
  function pause(replica: Replica, ms: number, onResume?: () => void): boolean {
    const pid = replica.process.pid();
    if (pid === undefined || replica.pausedUntil !== null) return false;
    process.kill(pid, 'SIGSTOP');
    replica.pausedUntil = Date.now() + ms;
    replica.pauseTimer = setTimeout(() => resume(replica, onResume), ms);
    return true;
  }

  function resume(replica: Replica, onResume?: () => void): void {
    if (replica.pauseTimer) clearTimeout(replica.pauseTimer);
    replica.pauseTimer = null;
    replica.pausedUntil = null;
    const pid = replica.process.pid();
    if (pid !== undefined) process.kill(pid, 'SIGCONT');
    onResume?.();
  }

  /** SIGKILL at once (synchronously, e.g. inside a simulator hook); true when it hit a live process. */
  function killNow(replica: Replica): boolean {
    const pid = replica.process.pid();
    if (pid === undefined) return false;
    if (replica.pauseTimer) clearTimeout(replica.pauseTimer);
    replica.pauseTimer = null;
    replica.pausedUntil = null;
    process.kill(pid, 'SIGKILL');
    return true;
  }

  /** Starts every replica that is not running (after kills); waits until each answers. */
  async function startMissing(): Promise<void> {
    await Promise.all(replicas.filter((r) => !r.process.running()).map((r) => r.process.start()));
  }

  /** Waits until no replica is frozen (pending SIGCONTs), then starts the dead ones again. */
  async function recover(maxMs = 120_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (replicas.some((r) => r.pausedUntil !== null) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await startMissing();
  }

  async function stopAll(): Promise<void> {
    for (const replica of replicas) if (replica.pauseTimer) resume(replica);
    await Promise.all(replicas.map((r) => r.process.stop()));
  }

  async function killAll(): Promise<void> {
    for (const replica of replicas) if (replica.pauseTimer) resume(replica);
    await Promise.all(replicas.map((r) => r.process.kill().catch(() => undefined)));
  }

  async function close(): Promise<void> {
    await new Promise<void>((resolve) => front.close(() => resolve()));
  }

  return { replicas, frontUrl, pick, anyServing, ofPort, pause, resume, killNow, startMissing, recover, stopAll, killAll, close };
}

export type ReplicaSet = Awaited<ReturnType<typeof startReplicaSet>>;

/** Set on an answer the front gave itself because no replica answered (down, killed, frozen too long). */
export const FRONT_ANSWER_HEADER = 'x-chaos-front';

/** Inodes of the TCP sockets (IPv4 and IPv6) whose local port is `port`, from /proc/net. */
function socketInodesOfLocalPort(port: number): Set<string> {
  const inodes = new Set<string>();
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 10) continue;
      if (columns[1]?.endsWith(`:${hex}`) && columns[9] !== '0') inodes.add(columns[9]!);
    }
  }
  return inodes;
}
