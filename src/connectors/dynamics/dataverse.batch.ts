import { randomUUID } from 'node:crypto';

// The $batch wire format (reference §2.7) for the writes of all work in flight.
//
// Each operation is its own top-level part, sent with `Prefer: odata.continue-on-error` and no
// change sets. Why: a change set is one transaction, so a 412 (stale ETag) or a plug-in's refusal
// of one record would roll back every other record in it; and without continue-on-error the first
// failure stops the batch and the answer holds only that failure, leaving the other records'
// outcomes unknown. Top-level parts with continue-on-error give every record its own answer, in
// order, and a record's write is still atomic on its own (one operation is one transaction). One
// change set per operation would give the same outcomes with a bigger payload and nested parsing.

export type BatchOperation = {
  method: 'POST' | 'PATCH' | 'GET';
  /** path relative to the Web API root, e.g. "leads(<id>)?$select=..." */
  url: string;
  headers: Record<string, string>;
  body?: unknown;
};

export type BatchOperationAnswer = {
  status: number;
  headers: Record<string, string>;
  json: unknown;
};

/** The multipart body of a $batch request and its Content-Type. */
export function encodeBatch(apiPath: string, operations: readonly BatchOperation[]): { contentType: string; body: string } {
  const boundary = `batch_${randomUUID()}`;
  const lines: string[] = [];
  operations.forEach((op, i) => {
    lines.push(`--${boundary}`, 'Content-Type: application/http', 'Content-Transfer-Encoding: binary', `Content-ID: ${i + 1}`, '');
    lines.push(`${op.method} ${apiPath}${op.url} HTTP/1.1`);
    for (const [k, v] of Object.entries(op.headers)) lines.push(`${k}: ${v}`);
    if (op.body !== undefined) lines.push('Content-Type: application/json; type=entry');
    lines.push('', op.body === undefined ? '' : JSON.stringify(op.body));
  });
  lines.push(`--${boundary}--`, '');
  return { contentType: `multipart/mixed; boundary=${boundary}`, body: lines.join('\r\n') };
}

function boundaryOf(contentType: string | null | undefined): string | undefined {
  return /boundary\s*=\s*"?([^";]+)"?/i.exec(contentType ?? '')?.[1];
}

function split(body: string, boundary: string): string[] {
  const parts: string[] = [];
  let current: string[] | undefined;
  for (const line of body.split(/\r?\n/)) {
    const trimmed = line.trimEnd();
    if (trimmed === `--${boundary}` || trimmed === `--${boundary}--`) {
      if (current) parts.push(current.join('\n'));
      current = trimmed.endsWith('--') && trimmed !== `--${boundary}` ? undefined : [];
      if (current === undefined) break;
      continue;
    }
    current?.push(line);
  }
  return parts;
}

function headerBlock(text: string): { headers: Record<string, string>; rest: string } {
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length && lines[i]!.trim() === '') i += 1;
  const headers: Record<string, string> = {};
  for (; i < lines.length && lines[i]!.trim() !== ''; i += 1) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, rest: lines.slice(i + 1).join('\n') };
}

/** The answers of a $batch response in order; change-set answers are flattened in place. */
export function decodeBatch(body: string, contentType: string | null): BatchOperationAnswer[] {
  const boundary = boundaryOf(contentType);
  if (boundary === undefined) return [];
  const answers: BatchOperationAnswer[] = [];
  for (const part of split(body, boundary)) {
    const outer = headerBlock(part);
    const type = outer.headers['content-type'] ?? '';
    if (/^multipart\/mixed/i.test(type)) {
      answers.push(...decodeBatch(outer.rest, type));
      continue;
    }
    const rest = outer.rest.trimStart();
    const statusLine = /^HTTP\/1\.1 (\d{3})/.exec(rest);
    if (!statusLine) continue;
    const inner = headerBlock(rest.slice(rest.indexOf('\n') + 1));
    const text = inner.rest.trim();
    let json: unknown;
    try {
      json = text === '' ? undefined : (JSON.parse(text) as unknown);
    } catch {
      json = { unparsed: text.slice(0, 500) };
    }
    answers.push({ status: Number(statusLine[1]), headers: inner.headers, json });
  }
  return answers;
}

/**
 * How many operations the next $batch of writes may carry. Microsoft advises small batches (start
 * around 10): a batch's operations run one after the other and their execution time adds up
 * against the 20-minute-per-5-minutes limit, so a big batch is slow and costly when the server is.
 * A full batch that answers within the target time grows the size to what its measured time per
 * operation says fits in four fifths of the target (at most eightfold a step; the measure includes
 * the request's own latency, so it errs small); one that takes longer, or a refusal for execution
 * time, halves it. A batch that was not full says nothing about a bigger one.
 */
/** operations one $batch may carry (the platform's limit) */
export const MAX_BATCH_OPERATIONS = 1000;

export function createBatchSizer(options: { initial: number; targetMs: number; max?: number }) {
  const max = options.max ?? MAX_BATCH_OPERATIONS;
  let size = Math.max(1, Math.min(max, options.initial));
  return {
    size: () => size,
    observe(operations: number, elapsedMs: number): void {
      if (elapsedMs > options.targetMs) size = Math.max(1, Math.floor(size / 2));
      else if (operations >= size) {
        const fits = Math.floor((options.targetMs * 0.8) / Math.max(elapsedMs / operations, 0.001));
        size = Math.min(max, size * 8, Math.max(size, fits));
      }
    },
    shrink(): void {
      size = Math.max(1, Math.floor(size / 2));
    },
  };
}
