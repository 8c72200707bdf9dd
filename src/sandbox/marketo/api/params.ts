// Query parameters as the Marketo REST endpoints read and refuse them.
import { SimulatorError } from '../marketo.types.ts';

export const MAX_BATCH = 300;

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function parseBatchSize(params: URLSearchParams): number {
  const raw = params.get('batchSize');
  if (raw === null || raw === '') return MAX_BATCH;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_BATCH) {
    throw new SimulatorError('1003', `Invalid batchSize '${raw}', must be between 1 and ${MAX_BATCH}`);
  }
  return Number(raw);
}

/** A comma-separated parameter, possibly repeated; undefined when absent or blank. */
export function listParam(params: URLSearchParams, name: string): string[] | undefined {
  const raw = params.getAll(name).join(',');
  if (raw.trim() === '') return undefined;
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function leadIdsParam(params: URLSearchParams): Set<number> | undefined {
  const ids = listParam(params, 'leadIds');
  if (!ids) return undefined;
  if (ids.length > 30) throw new SimulatorError('1003', 'leadIds exceeds the maximum of 30');
  if (ids.some((id) => !/^\d+$/.test(id))) throw new SimulatorError('1003', 'Invalid leadIds');
  return new Set(ids.map(Number));
}
