import { CodedError } from '../platform/errors.ts';

/** What a subcommand may touch of the outside world; passed in so tests can run commands in-process. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
}

/**
 * Exit codes shared by every subcommand: 0 verified/ok, 1 not verified, 2 no verdict: bad usage or input (`Usage`),
 * or a failure that kept the command from answering (`Failed`: an unreachable cluster, an unexpected error). They
 * share 2 so that a pipeline tells "the Modules will not load" (1) from "the check did not run" (2).
 */
export const ExitCode = { Ok: 0, NotVerified: 1, Usage: 2, Failed: 2 } as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * A failure the user can fix by changing what they typed or gave us (a flag, a file, a reference). The CLI prints
 * its message and exits 2; anything else is a bug or an environment fault and is reported as such.
 */
export class UsageError extends CodedError<'ERR_USAGE'> {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/**
 * A failure outside the user's input that keeps a command from answering, e.g. an API server that cannot be reached
 * or refuses a request. The CLI prints its message (what was asked, of whom, and why it failed) and exits 2.
 */
export class CommandFailedError extends CodedError<'ERR_COMMAND_FAILED'> {
  constructor(message: string) {
    super('ERR_COMMAND_FAILED', message);
  }
}
