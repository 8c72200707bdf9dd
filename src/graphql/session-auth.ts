import { getOperationAST, GraphQLError, OperationTypeNode, type DocumentNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { canOperate, type Caller } from '../auth/caller.ts';
import { CSRF_HEADER, type ConsoleSessions } from '../console/session.ts';
import type { GraphQLContext } from './context.ts';

// Where cookie-authenticated requests (the operator console) enter /graphql. A console request
// carries the session cookie AND the session's CSRF token in a header; a cross-site page can make
// the browser send the cookie but cannot read or set the header. Bearer requests never get here.

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

export const readOnlyRefusal = 'this token may read but not operate: mutations need a token with the operate scope';

export function isMutation(document: DocumentNode, operationName: string | null | undefined): boolean {
  return getOperationAST(document, operationName ?? undefined)?.operation === OperationTypeNode.MUTATION;
}

/** Refuses every mutation of a caller whose token has the read scope, before anything executes. */
export const refuseReadOnlyMutations: Plugin<GraphQLContext> = {
  onExecute({ args, setResultAndStopExecution }) {
    const caller = (args.contextValue as Partial<GraphQLContext>).caller;
    if (caller && !canOperate(caller) && isMutation(args.document as DocumentNode, args.operationName as string | null | undefined)) {
      setResultAndStopExecution({ errors: [new GraphQLError(readOnlyRefusal, { extensions: { code: 'FORBIDDEN' } })] });
    }
  },
};
