// Run by test/connectors/timeouts.test.ts as `node --expose-gc --import tsx`: vendor calls made the
// way the clients make them (a timeout signal, combined with the shutdown signal by fetchUntil)
// against a server that never answers, or never finishes its body, while the heap is collected
// every 20 ms. Prints, per call, how it ended: a TimeoutError, or "hung" past a generous bound.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchUntil, withTimeout } from '../../src/lifecycle.ts';

const server = createServer((req, res) => {
  if (req.url === '/body') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"partial":');
  }
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const shutdown = new AbortController();
const vendorFetch = fetchUntil(shutdown.signal);
const gc = (globalThis as { gc?: () => void }).gc!;
const collecting = setInterval(gc, 20);

const call = (path: string) =>
  Promise.race([
    withTimeout(200, async (signal) => (await vendorFetch(base + path, { signal })).text())
      .then(
        () => 'answered',
        (error: unknown) => (error instanceof Error ? error.name : 'error'),
      ),
    new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 15_000).unref()),
  ]);

const outcomes = await Promise.all([...Array.from({ length: 8 }, () => call('/none')), ...Array.from({ length: 8 }, () => call('/body'))]);
clearInterval(collecting);
server.close();
server.closeAllConnections();
process.stdout.write(JSON.stringify(outcomes));
