// The part of YAML docker-compose.yml uses, read without a YAML dependency: block maps and block
// sequences of scalars by indentation, plain / single- / double-quoted scalars, JSON-style flow
// sequences, comments. Anything else throws (extend the reader with the compose file), so the
// deploy test never reads a compose file differently from what it says. Then compose's
// interpolation: ${VAR:-default}, ${VAR-default}, ${VAR}, $VAR and $$.

export type YamlValue = string | null | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  indent: number;
  text: string;
  number: number;
}

function stripComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) return text.slice(0, i).trimEnd();
  }
  return text.trimEnd();
}

function scalar(raw: string, line: Line): YamlValue {
  const text = raw.trim();
  if (text === '' || text === '~' || text === 'null') return null;
  if (text.startsWith('"')) {
    if (!text.endsWith('"') || text.length < 2) throw new Error(`compose line ${line.number}: unterminated "..."`);
    return JSON.parse(text) as string;
  }
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`compose line ${line.number}: unterminated '...'`);
    return text.slice(1, -1).replaceAll("''", "'");
  }
  if (text.startsWith('[')) {
    const items = JSON.parse(text) as unknown;
    if (!Array.isArray(items) || !items.every((i) => typeof i === 'string')) throw new Error(`compose line ${line.number}: only flow sequences of strings are read`);
    return items;
  }
  if (/^[{&*!|>]/.test(text)) throw new Error(`compose line ${line.number}: unsupported YAML (${text.slice(0, 20)}); extend test/deploy/compose.ts`);
  return text;
}

export function parseYaml(source: string): YamlValue {
  const lines: Line[] = [];
  source.split('\n').forEach((raw, index) => {
    if (raw.includes('\t')) throw new Error(`compose line ${index + 1}: tabs are not YAML indentation`);
    const text = stripComment(raw);
    if (text.trim() === '' || text.trim() === '---') return;
    lines.push({ indent: text.length - text.trimStart().length, text: text.trim(), number: index + 1 });
  });
  let position = 0;

  function block(indent: number): YamlValue {
    const first = lines[position];
    if (!first || first.indent < indent) return null;
    if (first.text.startsWith('- ') || first.text === '-') {
      const items: YamlValue[] = [];
      while (position < lines.length && lines[position]!.indent === first.indent && lines[position]!.text.startsWith('-')) {
        const line = lines[position]!;
        const rest = line.text.slice(1).trim();
        if (/^[^"'[][^:]*:(\s|$)/.test(rest)) throw new Error(`compose line ${line.number}: maps inside sequences are not read; extend test/deploy/compose.ts`);
        items.push(scalar(rest, line));
        position += 1;
      }
      return items;
    }
    const map: Record<string, YamlValue> = {};
    while (position < lines.length && lines[position]!.indent === first.indent) {
      const line = lines[position]!;
      const match = /^("[^"]*"|'[^']*'|[^\s:][^:]*?):(?:\s+(.*))?$/.exec(line.text);
      if (!match) throw new Error(`compose line ${line.number}: expected "key: value", got ${line.text}`);
      const key = scalar(match[1]!, line) as string;
      if (key in map) throw new Error(`compose line ${line.number}: duplicate key ${key}`);
      position += 1;
      const next = lines[position];
      if (match[2] === undefined || match[2] === '') map[key] = next && next.indent > line.indent ? block(next.indent) : null;
      else map[key] = scalar(match[2], line);
    }
    if (position < lines.length && lines[position]!.indent > first.indent) {
      throw new Error(`compose line ${lines[position]!.number}: unexpected indentation`);
    }
    return map;
  }

  const root = block(0);
  if (position !== lines.length) throw new Error(`compose line ${lines[position]!.number}: not read`);
  return root;
}

/** compose's variable substitution, with `env` as the shell's environment plus .env */
export function interpolate(text: string, env: Record<string, string | undefined>): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, braced?: string, op?: string, fallback?: string, bare?: string) => {
    if (whole === '$$') return '$';
    const name = (braced ?? bare)!;
    const value = env[name];
    if (op === ':-') return value === undefined || value === '' ? fallback! : value;
    if (op === '-') return value === undefined ? fallback! : value;
    return value ?? '';
  });
}

export function interpolateAll(value: YamlValue, env: Record<string, string | undefined>): YamlValue {
  if (value === null) return null;
  if (typeof value === 'string') return interpolate(value, env);
  if (Array.isArray(value)) return value.map((v) => interpolateAll(v, env));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateAll(v, env)]));
}

export interface ComposeService {
  image?: string;
  build?: string;
  command?: string[];
  environment: Record<string, string>;
  ports: string[];
}

/** docker-compose.yml as `docker compose up` would see it with `env` (no .env, no shell variables: {}) */
export function readCompose(source: string, env: Record<string, string | undefined>): Record<string, ComposeService> {
  const root = interpolateAll(parseYaml(source), env);
  if (!root || typeof root !== 'object' || Array.isArray(root)) throw new Error('compose: not a map');
  const services = root['services'];
  if (!services || typeof services !== 'object' || Array.isArray(services)) throw new Error('compose: no services');
  return Object.fromEntries(
    Object.entries(services).map(([name, raw]) => {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`compose: service ${name} is not a map`);
      const environment = raw['environment'] ?? {};
      if (typeof environment !== 'object' || Array.isArray(environment) || environment === null) throw new Error(`compose: ${name}.environment must be a map`);
      const command = raw['command'];
      if (command !== undefined && !Array.isArray(command)) throw new Error(`compose: ${name}.command must be a list (exec form)`);
      const service: ComposeService = {
        environment: Object.fromEntries(
          Object.entries(environment).map(([k, v]) => {
            if (v !== null && typeof v !== 'string') throw new Error(`compose: ${name}.environment.${k} must be a scalar`);
            return [k, v ?? ''];
          }),
        ),
        ports: Array.isArray(raw['ports']) ? raw['ports'].map(String) : [],
      };
      if (typeof raw['image'] === 'string') service.image = raw['image'];
      if (typeof raw['build'] === 'string') service.build = raw['build'];
      if (command) service.command = command.map(String);
      return [name, service];
    }),
  );
}
