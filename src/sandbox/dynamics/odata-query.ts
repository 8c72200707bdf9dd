import { isLookup, type SimAttribute, type SimTable } from './dataverse.metadata.ts';

/** A query the real Web API refuses; the simulator answers 400 with `code` (0x80060888 = OData query error). */
export class ODataQueryError extends Error {
  constructor(
    message: string,
    readonly code = '0x80060888',
  ) {
    super(message);
  }
}

export type SimRow = { id: string; values: Record<string, unknown>; versionnumber: number };

type LiteralKind = 'string' | 'guid' | 'number' | 'datetime' | 'boolean' | 'null';
type Token =
  | { t: 'lit'; kind: LiteralKind; value: string | number | boolean | null; pos: number }
  | { t: 'ident'; value: string; pos: number }
  | { t: 'punct'; value: string; pos: number };

const guidRe = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b/;
const dateRe = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2}))?(?![\w:])/;
const numberRe = /^-?\d+(?:\.\d+)?(?:[mMdDlL])?(?![\w-])/;
const identRe = /^[A-Za-z_][A-Za-z0-9_.]*/;

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const ch = input[i]!;
    if (ch === ' ' || ch === '\t') {
      i += 1;
      continue;
    }
    if ('(),[]='.includes(ch)) {
      tokens.push({ t: 'punct', value: ch, pos: i });
      i += 1;
      continue;
    }
    if (ch === "'") {
      let value = '';
      let j = i + 1;
      for (;;) {
        if (j >= input.length) throw new ODataQueryError(`Syntax error: unterminated string literal at position ${i} in '${input}'.`);
        if (input[j] === "'") {
          if (input[j + 1] === "'") {
            value += "'";
            j += 2;
            continue;
          }
          break;
        }
        value += input[j];
        j += 1;
      }
      tokens.push({ t: 'lit', kind: 'string', value, pos: i });
      i = j + 1;
      continue;
    }
    const rest = input.slice(i);
    const guid = guidRe.exec(rest);
    if (guid) {
      tokens.push({ t: 'lit', kind: 'guid', value: guid[0].toLowerCase(), pos: i });
      i += guid[0].length;
      continue;
    }
    const date = dateRe.exec(rest);
    if (date) {
      const ms = Date.parse(date[0].length === 10 ? `${date[0]}T00:00:00Z` : date[0]);
      if (Number.isNaN(ms)) throw new ODataQueryError(`Syntax error: invalid date '${date[0]}' at position ${i} in '${input}'.`);
      tokens.push({ t: 'lit', kind: 'datetime', value: ms, pos: i });
      i += date[0].length;
      continue;
    }
    const num = numberRe.exec(rest);
    if (num) {
      tokens.push({ t: 'lit', kind: 'number', value: Number(num[0].replace(/[mMdDlL]$/, '')), pos: i });
      i += num[0].length;
      continue;
    }
    const ident = identRe.exec(rest);
    if (ident) {
      const word = ident[0];
      if (word === 'true' || word === 'false') tokens.push({ t: 'lit', kind: 'boolean', value: word === 'true', pos: i });
      else if (word === 'null') tokens.push({ t: 'lit', kind: 'null', value: null, pos: i });
      else tokens.push({ t: 'ident', value: word, pos: i });
      i += word.length;
      continue;
    }
    throw new ODataQueryError(`Syntax error: character '${ch}' is not valid at position ${i} in '${input}'.`);
  }
  return tokens;
}

/** Resolves a column name as used in $filter/$orderby: lookups only as `_x_value`. */
export function resolveProperty(table: SimTable, name: string, allowLookupName = false): SimAttribute {
  const lookup = /^_(.+)_value$/.exec(name);
  const attr = table.attributes.get(lookup?.[1] ?? name);
  if (attr && attr.validForRead && (lookup ? isLookup(attr) : !isLookup(attr) || allowLookupName)) return attr;
  throw new ODataQueryError(`Could not find a property named '${name}' on type 'Microsoft.Dynamics.CRM.${table.logicalName}'.`);
}

function edmType(a: SimAttribute): string {
  switch (a.type) {
    case 'String':
    case 'Memo':
      return 'Edm.String';
    case 'Uniqueidentifier':
    case 'Lookup':
    case 'Customer':
    case 'Owner':
      return 'Edm.Guid';
    case 'Boolean':
      return 'Edm.Boolean';
    case 'BigInt':
      return 'Edm.Int64';
    case 'Money':
      return 'Edm.Decimal';
    case 'DateTime':
      return 'Edm.DateTimeOffset';
    default:
      return 'Edm.Int32';
  }
}
const literalEdm: Record<LiteralKind, string> = {
  string: 'Edm.String',
  guid: 'Edm.Guid',
  number: 'Edm.Int32',
  datetime: 'Edm.DateTimeOffset',
  boolean: 'Edm.Boolean',
  null: 'null',
};

function accepts(a: SimAttribute, kind: LiteralKind): boolean {
  if (kind === 'null') return true;
  switch (edmType(a)) {
    case 'Edm.String':
      return kind === 'string';
    case 'Edm.Guid':
      return kind === 'guid';
    case 'Edm.Boolean':
      return kind === 'boolean';
    case 'Edm.DateTimeOffset':
      return kind === 'datetime';
    default:
      return kind === 'number';
  }
}

/** Comparable form of a stored value (strings compare case-insensitively, as SQL collation does). */
export function comparable(a: SimAttribute, value: unknown): string | number | boolean | null {
  if (value === null || value === undefined) return null;
  if (isLookup(a)) return (value as { id: string }).id;
  if (typeof value === 'string') return value.toLowerCase();
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  return null;
}

export type RowPredicate = (row: SimRow) => boolean;

const operators: Record<string, (c: number) => boolean> = {
  eq: (c) => c === 0,
  ne: (c) => c !== 0,
  gt: (c) => c > 0,
  ge: (c) => c >= 0,
  lt: (c) => c < 0,
  le: (c) => c <= 0,
};
const operatorNames: Record<string, string> = {
  eq: 'Equal',
  ne: 'NotEqual',
  gt: 'GreaterThan',
  ge: 'GreaterThanOrEqual',
  lt: 'LessThan',
  le: 'LessThanOrEqual',
};

export function compareValues(x: string | number | boolean | null, y: string | number | boolean | null): number {
  if (x === y) return 0;
  if (x === null) return -1;
  if (y === null) return 1;
  return x < y ? -1 : 1;
}

function getValue(table: SimTable, a: SimAttribute, row: SimRow): string | number | boolean | null {
  if (a.logicalName === table.primaryKey) return row.id;
  if (a.logicalName === 'versionnumber') return row.versionnumber;
  return comparable(a, row.values[a.logicalName]);
}

export function parseFilter(table: SimTable, input: string): RowPredicate {
  const tokens = tokenize(input);
  let p = 0;
  const peek = (): Token | undefined => tokens[p];
  const fail = (what: string): never => {
    const tok = peek();
    throw new ODataQueryError(
      tok ? `Syntax error at position ${tok.pos} in '${input}': ${what}.` : `Syntax error: ${what} at the end of '${input}'.`,
    );
  };
  const expectPunct = (value: string): void => {
    const tok = peek();
    if (tok?.t !== 'punct' || tok.value !== value) fail(`'${value}' expected`);
    p += 1;
  };
  const isWord = (word: string): boolean => {
    const tok = peek();
    return tok?.t === 'ident' && tok.value === word;
  };

  function parseOr(): RowPredicate {
    let left = parseAnd();
    while (isWord('or')) {
      p += 1;
      const l = left;
      const r = parseAnd();
      left = (row) => l(row) || r(row);
    }
    return left;
  }
  function parseAnd(): RowPredicate {
    let left = parseUnary();
    while (isWord('and')) {
      p += 1;
      const l = left;
      const r = parseUnary();
      left = (row) => l(row) && r(row);
    }
    return left;
  }
  function parseUnary(): RowPredicate {
    if (isWord('not')) {
      p += 1;
      const inner = parseUnary();
      return (row) => !inner(row);
    }
    return parsePrimary();
  }
  function parseStringArg(): string {
    const tok = peek();
    if (tok?.t !== 'lit' || tok.kind !== 'string') fail('string literal expected');
    p += 1;
    return (tok as { value: string }).value;
  }
  function parsePrimary(): RowPredicate {
    const tok = peek();
    if (!tok) return fail('expression expected');
    if (tok.t === 'punct' && tok.value === '(') {
      p += 1;
      const inner = parseOr();
      expectPunct(')');
      return inner;
    }
    if (tok.t !== 'ident') return fail('property name expected');
    p += 1;
    const name = tok.value;
    if (name === 'contains' || name === 'startswith' || name === 'endswith') {
      expectPunct('(');
      const propTok = peek();
      if (propTok?.t !== 'ident') fail('property name expected');
      p += 1;
      const attr = resolveProperty(table, (propTok as { value: string }).value);
      if (edmType(attr) !== 'Edm.String') {
        throw new ODataQueryError(`No function signature for the function with name '${name}' matches the specified arguments.`);
      }
      expectPunct(',');
      const needle = parseStringArg().toLowerCase();
      expectPunct(')');
      return (row) => {
        const v = getValue(table, attr, row);
        if (typeof v !== 'string') return false;
        return name === 'contains' ? v.includes(needle) : name === 'startswith' ? v.startsWith(needle) : v.endsWith(needle);
      };
    }
    if (name === 'Microsoft.Dynamics.CRM.In' || name === 'Microsoft.Dynamics.CRM.NotIn') {
      expectPunct('(');
      const readNamed = (param: string): void => {
        if (!isWord(param)) fail(`parameter '${param}' expected`);
        p += 1;
        expectPunct('=');
      };
      readNamed('PropertyName');
      const attr = resolveProperty(table, parseStringArg());
      expectPunct(',');
      readNamed('PropertyValues');
      expectPunct('[');
      const values = new Set<string | number | boolean | null>();
      for (;;) {
        const raw = parseStringArg();
        // PropertyValues are strings converted to the column's type
        if (edmType(attr) === 'Edm.String') values.add(raw.toLowerCase());
        else if (edmType(attr) === 'Edm.Guid') {
          if (!guidRe.test(raw)) throw new ODataQueryError(`Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx). Value: '${raw}'.`, '0x80040203');
          values.add(raw.toLowerCase());
        } else if (edmType(attr) === 'Edm.Boolean') values.add(raw === 'true');
        else {
          const n = Number(raw);
          if (!Number.isFinite(n)) throw new ODataQueryError(`Input string '${raw}' was not in a correct format.`, '0x80040203');
          values.add(n);
        }
        const sep = peek();
        if (sep?.t === 'punct' && sep.value === ',') {
          p += 1;
          continue;
        }
        break;
      }
      expectPunct(']');
      expectPunct(')');
      const negate = name.endsWith('NotIn');
      return (row) => values.has(getValue(table, attr, row)) !== negate;
    }
    if (name.startsWith('Microsoft.Dynamics.CRM.')) {
      throw new ODataQueryError(`The query function '${name}' is not supported by this simulator.`);
    }
    const attr = resolveProperty(table, name);
    const opTok = peek();
    if (opTok?.t !== 'ident' || !(opTok.value in operators)) return fail('comparison operator expected');
    p += 1;
    const op = opTok.value;
    const litTok = peek();
    if (litTok?.t !== 'lit') return fail('literal expected');
    p += 1;
    if (!accepts(attr, litTok.kind)) {
      throw new ODataQueryError(
        `A binary operator with incompatible types was detected. Found operand types '${edmType(attr)}' and '${literalEdm[litTok.kind]}' for operator kind '${operatorNames[op]}'.`,
      );
    }
    const compare = operators[op]!;
    const literal = typeof litTok.value === 'string' ? litTok.value.toLowerCase() : litTok.value;
    if (litTok.kind === 'null') {
      if (op !== 'eq' && op !== 'ne') return () => false;
      return (row) => (getValue(table, attr, row) === null) === (op === 'eq');
    }
    // SQL semantics: a null column satisfies no comparison with a value
    return (row) => {
      const v = getValue(table, attr, row);
      return v !== null && compare(compareValues(v, literal));
    };
  }

  if (tokens.length === 0) throw new ODataQueryError(`Syntax error: expression expected in '${input}'.`);
  const predicate = parseOr();
  if (p < tokens.length) fail('unexpected token');
  return predicate;
}

export type OrderBy = { attr: SimAttribute; desc: boolean }[];

export function parseOrderBy(table: SimTable, input: string | undefined): OrderBy {
  const order: OrderBy = [];
  if (input !== undefined) {
    for (const part of input.split(',')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(asc|desc))?\s*$/.exec(part);
      if (!m?.[1]) throw new ODataQueryError(`Syntax error in $orderby '${input}'.`);
      order.push({ attr: resolveProperty(table, m[1]), desc: m[2] === 'desc' });
    }
  }
  // the primary key always breaks ties so pages never repeat or skip rows
  if (!order.some((o) => o.attr.logicalName === table.primaryKey)) {
    order.push({ attr: table.attributes.get(table.primaryKey)!, desc: false });
  }
  return order;
}

export function sortKey(table: SimTable, order: OrderBy, row: SimRow): (string | number | boolean | null)[] {
  return order.map((o) => getValue(table, o.attr, row));
}

export function compareKeys(order: OrderBy, a: readonly unknown[], b: readonly unknown[]): number {
  for (let i = 0; i < order.length; i += 1) {
    const c = compareValues(a[i] as string | number | null, b[i] as string | number | null);
    if (c !== 0) return order[i]!.desc ? -c : c;
  }
  return 0;
}
