import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { PrismaClient } from '../db/generated/client.ts';

// The API's bearer token. Compared in constant time over SHA-256 digests, so neither the content
// nor the length of the configured token leaks through response timing.

export const API_TOKEN_SETTING = 'graphql.apiToken';

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/** True when the Authorization header is exactly `Bearer <token>`. */
export function bearerMatches(expected: string, authorization: string | null | undefined): boolean {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization ?? '');
  const given = match?.[1] ?? '';
  // Always compare (even when the header is missing) so every refusal costs the same.
  const same = timingSafeEqual(digest(given), digest(expected));
  return same && given.length > 0 && expected.length > 0;
}

export interface ApiTokenResult {
  token: string;
  /** true only on the start that created it: print it once, it is never logged again */
  generated: boolean;
}

/**
 * The configured GRAPHQL_API_TOKEN; without one, the token stored at first start; without that,
 * a new random one (32 bytes, base64url), stored so every replica and restart agrees. Replicas
 * starting together race on the insert; the first one wins and the others read its token.
 */
export async function ensureApiToken(prisma: PrismaClient, configured: string | undefined): Promise<ApiTokenResult> {
  if (configured && configured.trim()) return { token: configured.trim(), generated: false };
  const stored = await prisma.serviceSetting.findUnique({ where: { key: API_TOKEN_SETTING } });
  if (stored) return { token: stored.value, generated: false };
  const candidate = randomBytes(32).toString('base64url');
  await prisma.serviceSetting.createMany({ data: [{ key: API_TOKEN_SETTING, value: candidate }], skipDuplicates: true });
  const winner = await prisma.serviceSetting.findUniqueOrThrow({ where: { key: API_TOKEN_SETTING } });
  return { token: winner.value, generated: winner.value === candidate };
}
