import { createRideAlong } from '../ride-along.ts';
import { DataverseNotFoundError, DataversePermanentError } from './dataverse.errors.ts';
import { dataverseEntitySets, encodeGuid, keyUrl, quote, selectList, toRecord, withoutKey, withRelated, type DataverseEntity, type DataverseExpansion, type DataverseRecord } from './dataverse.rows.ts';
import { collectionSchema, rowSchema, tombstoneSchema } from './dataverse.schemas.ts';
import { parse, type CallOptions, type DataverseCall, type DeferredCall } from './dataverse.transport.ts';

// The Web API reads: one row by id, pages of a query, change tracking, and reads by id or email
// that concurrent callers share. Reads of the same table and columns ride in one In-filter query
// (ride-along.ts), filled when the budget admits it with as many values as the URL length allows:
// the sync reads one record per change, and a burst of changes then costs a request per few
// hundred records instead of one each.

export type DataverseChangePage = {
  upserts: DataverseRecord[];
  /** ids of rows deleted since the previous delta link */
  deletedIds: string[];
  /** present on the last page only: persist it after processing that page */
  deltaLink?: string;
};

export type DataverseReadOptions = {
  apiUrl: string;
  /** odata.maxpagesize */
  maxPageSize: number;
  /** longest request URL sent; longer reads are split */
  maxUrlLength: number;
  /** ids per $filter when reading many rows by id; default: as many as the URL length allows */
  idChunkSize: number | undefined;
};

type ReadKey = { entity: DataverseEntity; property: string; columns: string[]; order: string; expand: DataverseExpansion[] };
const IN_VALUE_ROOM = (value: string) => encodeURIComponent(`${quote(value)},`).length;

function inQueryUrl(key: ReadKey, values: readonly string[]): string {
  const { set } = dataverseEntitySets[key.entity];
  const filter = `Microsoft.Dynamics.CRM.In(PropertyName='${key.property}',PropertyValues=[${values.map((v) => quote(v)).join(',')}])`;
  const expand = key.expand.length > 0 ? `&$expand=${key.expand.map((e) => `${e.navigation}($select=${selectList(e.table, e.columns)})`).join(',')}` : '';
  return `${set}?$select=${selectList(key.entity, key.columns)}${expand}&$filter=${encodeURIComponent(filter)}&$orderby=${key.order}`;
}

/** `values` in runs that each fit in `room` characters of URL. */
function fitInto(values: readonly string[], room: number): string[][] {
  const chunks: string[][] = [];
  let current: string[] = [];
  let used = 0;
  for (const value of values) {
    const w = IN_VALUE_ROOM(value);
    if (current.length > 0 && used + w > room) {
      chunks.push(current);
      current = [];
      used = 0;
    }
    current.push(value);
    used += w;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

export function createDataverseReads(call: DataverseCall, options: DataverseReadOptions) {
  const pageHeaders = () => ({ Prefer: `odata.maxpagesize=${options.maxPageSize}` });

  /** Pages of a query; the first URL may be built only when the budget admits it (`build`). */
  async function* pages(entity: DataverseEntity, first: string | (() => string), endpoint: string): AsyncGenerator<DataverseRecord[], void, undefined> {
    let spec: CallOptions | DeferredCall =
      typeof first === 'string'
        ? { method: 'GET', url: first, endpoint, headers: pageHeaders() }
        : { endpoint, build: () => ({ method: 'GET', url: first(), endpoint, headers: pageHeaders() }) };
    for (;;) {
      const raw = await call(spec);
      const page = parse(collectionSchema, raw, endpoint);
      yield page.value.map((row) => toRecord(entity, row, endpoint));
      const url = page['@odata.nextLink'];
      if (url === undefined) return;
      spec = { method: 'GET', url, endpoint, headers: pageHeaders() };
    }
  }

  async function collect(entity: DataverseEntity, first: () => string, endpoint: string): Promise<DataverseRecord[]> {
    const rows: DataverseRecord[] = [];
    for await (const page of pages(entity, first, endpoint)) rows.push(...page);
    return rows;
  }

  function inQueryRoom(keyText: string): number {
    const key = JSON.parse(keyText) as ReadKey;
    const room = options.maxUrlLength - (options.apiUrl.length + inQueryUrl(key, []).length);
    return options.idChunkSize === undefined ? room : Math.min(room, options.idChunkSize * IN_VALUE_ROOM('00000000-0000-0000-0000-000000000000'));
  }
  const inReads = createRideAlong<string, DataverseRecord[]>({
    maxItems: 5000,
    capacity: inQueryRoom,
    weigh: IN_VALUE_ROOM,
    send(keyText, bind) {
      const key = JSON.parse(keyText) as ReadKey;
      const endpoint = `GET ${dataverseEntitySets[key.entity].set}`;
      return collect(key.entity, () => inQueryUrl(key, [...new Set(bind())]), endpoint).then((rows) => rows.map((row) => withRelated(row, key.expand, endpoint)));
    },
  });

  /** Rows whose `property` is one of `values`, read together with other callers' values. */
  async function readIn(key: ReadKey, values: readonly string[]): Promise<DataverseRecord[]> {
    const keyText = JSON.stringify(key);
    const rides = await Promise.all(fitInto(values, inQueryRoom(keyText)).map((chunk) => inReads.ride(keyText, chunk)));
    // a shared query answers for everyone who rode it: keep one copy of each row
    const rows = new Map<string, DataverseRecord>();
    for (const ride of rides) for (const row of ride.result) rows.set(row.id.toLowerCase(), row);
    return [...rows.values()];
  }

  return {
    async getRecord(entity: DataverseEntity, id: string, columns: readonly string[]): Promise<DataverseRecord | null> {
      const endpoint = `GET ${dataverseEntitySets[entity].set}(id)`;
      try {
        const raw = await call({ method: 'GET', url: `${keyUrl(entity, id)}?$select=${selectList(entity, columns)}`, endpoint });
        return toRecord(entity, parse(rowSchema, raw, endpoint), endpoint);
      } catch (error) {
        if (error instanceof DataverseNotFoundError) return null;
        throw error;
      }
    },

    async getRecords(entity: DataverseEntity, ids: readonly string[], columns: readonly string[], expand: readonly DataverseExpansion[] = []): Promise<DataverseRecord[]> {
      const { key } = dataverseEntitySets[entity];
      const unique = [...new Set(ids.map((id) => encodeGuid(id)))];
      const wanted = new Set(unique);
      const rows = await readIn({ entity, property: key, columns: [...columns].sort(), order: `${key}%20asc`, expand: [...expand] }, unique);
      return rows.filter((row) => wanted.has(row.id.toLowerCase()));
    },

    async findByEmail(entity: DataverseEntity, email: string, columns: readonly string[], expand: readonly DataverseExpansion[] = []): Promise<DataverseRecord[]> {
      const { key } = dataverseEntitySets[entity];
      const wanted = email.toLowerCase();
      // the email column is selected to tell the rows of concurrent callers apart
      const selected = [...new Set([...columns, 'emailaddress1'])].sort();
      const rows = await readIn({ entity, property: 'emailaddress1', columns: selected, order: `createdon%20asc,${key}%20asc`, expand: [...expand] }, [email]);
      return rows
        .filter((row) => typeof row.values.emailaddress1 === 'string' && row.values.emailaddress1.toLowerCase() === wanted)
        .map((row) => (columns.includes('emailaddress1') ? row : { ...row, values: withoutKey(row.values, 'emailaddress1') }));
    },

    /** Pages of the rows whose lookup column (`_x_value`) holds `id`, e.g. an account's contacts. */
    queryByLookup(entity: DataverseEntity, lookupProperty: string, id: string, columns: readonly string[]): AsyncGenerator<DataverseRecord[], void, undefined> {
      const { set, key } = dataverseEntitySets[entity];
      if (!/^_[a-z0-9_]+_value$/.test(lookupProperty)) throw new DataversePermanentError(`Not a lookup property: ${lookupProperty}`);
      const filter = `${lookupProperty} eq ${encodeGuid(id)}`;
      const url = `${set}?$select=${selectList(entity, columns)}&$filter=${encodeURIComponent(filter)}&$orderby=${key}%20asc`;
      return pages(entity, url, `GET ${set} (by ${lookupProperty})`);
    },

    queryModifiedSince(entity: DataverseEntity, since: Date, columns: readonly string[]): AsyncGenerator<DataverseRecord[], void, undefined> {
      const { set, key } = dataverseEntitySets[entity];
      // ge, not gt: many rows share one modifiedon second; callers de-dupe by id + versionnumber
      const filter = `modifiedon ge ${since.toISOString().replace(/\.\d{3}Z$/, 'Z')}`;
      const url = `${set}?$select=${selectList(entity, columns)}&$filter=${encodeURIComponent(filter)}&$orderby=modifiedon%20asc,${key}%20asc`;
      return pages(entity, url, `GET ${set}`);
    },

    async *trackChanges(entity: DataverseEntity, columns: readonly string[], deltaLink?: string): AsyncGenerator<DataverseChangePage, void, undefined> {
      const set = dataverseEntitySets[entity].set;
      const endpoint = deltaLink === undefined ? `GET ${set} (track-changes)` : `GET ${set} (delta)`;
      let url: string | undefined = deltaLink ?? `${set}?$select=${selectList(entity, columns)}`;
      while (url !== undefined) {
        const raw = await call({ method: 'GET', url, endpoint, headers: { Prefer: `odata.track-changes,odata.maxpagesize=${options.maxPageSize}` } });
        const page = parse(collectionSchema, raw, endpoint);
        const result: DataverseChangePage = { upserts: [], deletedIds: [] };
        for (const row of page.value) {
          const tombstone = tombstoneSchema.safeParse(row);
          if (tombstone.success) result.deletedIds.push(tombstone.data.id);
          else result.upserts.push(toRecord(entity, row, endpoint));
        }
        url = page['@odata.nextLink'];
        if (url === undefined) {
          const next = page['@odata.deltaLink'];
          if (next === undefined) throw new DataversePermanentError(`Change tracking answered without a delta link for ${set}`, { endpoint });
          result.deltaLink = next;
        }
        yield result;
      }
    },
  };
}
