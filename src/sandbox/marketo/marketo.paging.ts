const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 with `=` padding: Marketo's tokens look like this and may end in `=`. */
export function encodeBase32(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

export function decodeBase32(token: string): string | undefined {
  const clean = token.replace(/=+$/, '');
  let bits = 0;
  let value = 0;
  const bytes: number[] = [];
  for (const char of clean) {
    const index = alphabet.indexOf(char);
    if (index < 0) return undefined;
    value = ((value << 5) | index) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Date-based activity token: a log position plus the `sinceDatetime` it was minted for. */
export function encodeActivityToken(position: number, sinceMs: number): string {
  return encodeBase32(`A:${position}:${sinceMs}`);
}

export function decodeActivityToken(token: string): { position: number; sinceMs: number } | undefined {
  const match = /^A:(\d+):(-?\d+)$/.exec(decodeBase32(token) ?? '');
  if (!match) return undefined;
  return { position: Number(match[1]), sinceMs: Number(match[2]) };
}

/** Position-based lead query token, only valid for the query it came from. */
export function encodeQueryToken(offset: number, queryKey: string): string {
  return encodeBase32(`Q:${offset}:${queryKey}`);
}

export function decodeQueryToken(token: string, queryKey: string): number | undefined {
  const match = /^Q:(\d+):(.*)$/s.exec(decodeBase32(token) ?? '');
  if (!match || match[2] !== queryKey) return undefined;
  return Number(match[1]);
}
