import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

// The service as a real child process (node + tsx, src/main.ts), so that a campaign can SIGKILL it
// mid-batch and start it again on the same database and port while the simulators (in the
// campaign's process) keep their state and keep calling it.

export interface ServiceProcessOptions {
  projectRoot: string;
  env: Record<string, string>;
  /** PATH, HOME and such for the child (the caller's environment; the service reads nothing else) */
  baseEnv: Record<string, string | undefined>;
  port: number;
  /** stdout and stderr of every run are appended here */
  logFile: string;
}

export interface ServiceProcess {
  url: string;
  start(): Promise<void>;
  /** SIGKILL: no shutdown hook runs, in-flight work and leases are left as they are */
  kill(): Promise<void>;
  /** SIGTERM and wait for the graceful exit */
  stop(): Promise<number | null>;
  running(): boolean;
  /** the live process's id, for signals and for telling which process holds a socket */
  pid(): number | undefined;
  starts: number;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function createServiceProcess(options: ServiceProcessOptions): ServiceProcess {
  const url = `http://127.0.0.1:${options.port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;
  let log: WriteStream | undefined;

  const handle: ServiceProcess = {
    url,
    starts: 0,
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
    pid: () => (handle.running() ? child?.pid : undefined),
    async start() {
      log ??= createWriteStream(options.logFile, { flags: 'a' });
      log.write(`\n===== start #${handle.starts + 1} at ${new Date().toISOString()} =====\n`);
      // node directly (not the tsx CLI, which forks): the pid we kill is the service itself
      const proc = spawn(process.execPath, ['--import', 'tsx', join(options.projectRoot, 'src/main.ts')], {
        cwd: options.projectRoot,
        env: { PATH: options.baseEnv.PATH, HOME: options.baseEnv.HOME, ...options.env, PORT: String(options.port), HOST: '127.0.0.1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      proc.stdout?.pipe(log, { end: false });
      proc.stderr?.pipe(log, { end: false });
      exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
      handle.starts++;
      // generous: on a loaded machine tsx and the migrations alone have taken over a minute
      const deadline = Date.now() + 180_000;
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`the service exited with ${proc.exitCode} while starting; see ${options.logFile}`);
        try {
          const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
          if (response.ok) return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) throw new Error(`the service did not start within 180 s; see ${options.logFile}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    async kill() {
      if (!child || !handle.running()) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!child || !handle.running()) return child?.exitCode ?? null;
      // a stopped (SIGSTOP) process only acts on SIGTERM once it runs again
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const code = await exited!;
      return code;
    },
  };
  return handle;
}
