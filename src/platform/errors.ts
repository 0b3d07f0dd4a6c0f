/**
 * The base of the project's errors: a stable `code` that callers branch on (messages are for people and may change),
 * a `name` that is the subclass's own, and the underlying failure as `cause` when there is one.
 */
export abstract class CodedError<Code extends string> extends Error {
  readonly code: Code;
  constructor(code: Code, message: string, options?: { readonly cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

/** The message of anything thrown: an Error's message, or the thrown value as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
