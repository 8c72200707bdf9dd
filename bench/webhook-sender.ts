import { Agent, request } from 'node:http';

// How the bench's vendors deliver their webhooks (Dataverse's async service, Marketo's flow steps).
// The platforms send them from their own servers; here the sender shares this machine's two cores
// with the service under test, and fetch (undici, web streams, an abort signal per request) spent a
// third of the driver's time on 10,000 deliveries. A kept-alive node:http POST does the same on the
// wire for a fraction of that.

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** The subset of fetch the webhook emitter uses: POST a body, read the status, drain the answer. */
export const webhookSender = ((input: string | URL, init?: RequestInit) =>
  new Promise<Response>((resolve, reject) => {
    const req = request(
      input,
      { method: init?.method ?? 'POST', headers: init?.headers as Record<string, string>, agent, signal: init?.signal ?? undefined },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, ok: (res.statusCode ?? 0) < 300, arrayBuffer: () => Promise.resolve(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)) } as Response);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(typeof init?.body === 'string' ? init.body : undefined);
  })) as typeof fetch;
