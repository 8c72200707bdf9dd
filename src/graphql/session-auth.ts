import type { Caller } from '../auth/caller.ts';
import { CSRF_HEADER, type ConsoleSessions } from '../console/session.ts';

// Where cookie-authenticated requests (the operator console) enter /graphql. A console request
// carries the session cookie AND the session's CSRF token in a header; a cross-site page can make
// the browser send the cookie but cannot read or set the header. Bearer requests never get here;
// what either kind of caller may do is decided in one place for both (guard.ts).

export type SessionAuth = { ok: true; caller: Caller } | { ok: false; status: 401 | 403; message: string };

export async function callerFromConsoleSession(
  sessions: ConsoleSessions | undefined,
  headers: { cookie?: string | undefined; csrf?: string | string[] | undefined },
): Promise<SessionAuth> {
  const session = sessions ? await sessions.resolve(headers.cookie) : null;
  if (!session) return { ok: false, status: 401, message: 'missing or invalid bearer token: send Authorization: Bearer <GRAPHQL_API_TOKEN>' };
  const csrf = Array.isArray(headers.csrf) ? headers.csrf[0] : headers.csrf;
  if (!sessions!.csrfMatches(session, csrf)) return { ok: false, status: 403, message: `console session without its CSRF token: send it in the ${CSRF_HEADER} header` };
  return { ok: true, caller: session.caller };
}
