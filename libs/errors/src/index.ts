/**
 * One error class per kind of failure, each with the wire code it maps to. Causes are kept
 * (`cause`), and only the edges (Docker replies, NATS replies, the CLI) turn them into text.
 */
export type ErrorCode = 'invalid' | 'not_found' | 'conflict' | 'exhausted' | 'unavailable' | 'internal';

export abstract class WeaveError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request itself is wrong; retrying it unchanged cannot succeed. */
export class InvalidRequestError extends WeaveError {
  readonly code = 'invalid' as const;
}
/** The pool, network, endpoint or address named does not exist. */
export class NotFoundError extends WeaveError {
  readonly code = 'not_found' as const;
}
/** Someone else holds what was asked for (an address, a block, a name). */
export class ConflictError extends WeaveError {
  readonly code = 'conflict' as const;
}
/** Nothing left to give (a full range, no free default subnet). */
export class ExhaustedError extends WeaveError {
  readonly code = 'exhausted' as const;
}
/** A dependency (a service, NATS, the kernel) did not answer; retrying later may work. */
export class UnavailableError extends WeaveError {
  readonly code = 'unavailable' as const;
}
/** A bug or an unexpected failure; the message says where. */
export class InternalError extends WeaveError {
  readonly code = 'internal' as const;
}

const byCode = {
  invalid: InvalidRequestError,
  not_found: NotFoundError,
  conflict: ConflictError,
  exhausted: ExhaustedError,
  unavailable: UnavailableError,
  internal: InternalError,
} as const satisfies Record<ErrorCode, new (m: string, o?: ErrorOptions) => WeaveError>;

export function errorFromCode(code: ErrorCode, message: string, cause?: unknown): WeaveError {
  return new byCode[code](message, cause === undefined ? undefined : { cause });
}

/** Any thrown value as a WeaveError; foreign errors become InternalError with the original as cause. */
export function asWeaveError(e: unknown): WeaveError {
  if (e instanceof WeaveError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new InternalError(message, { cause: e });
}

/** The message with its chain of causes, for logs and for people. */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  for (let cur: unknown = e, depth = 0; cur !== undefined && depth < 5; depth++) {
    parts.push(cur instanceof Error ? cur.message : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.filter((p, i) => p !== '' && parts.indexOf(p) === i).join(': ');
}
