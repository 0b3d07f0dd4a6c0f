import { Command, CommanderError } from 'commander';
import { CommandFailedError, ExitCode, UsageError, type CliIo } from './io.ts';
import { commandRegistrations, type CommandRegistration } from './commands.ts';

/**
 * Parses argv and runs one subcommand. Returns the process exit code instead of exiting, so tests can drive the
 * whole CLI in-process.
 */
export async function main(
  argv: readonly string[],
  io: CliIo = processIo(),
  registrations: readonly CommandRegistration[] = commandRegistrations,
): Promise<number> {
  let exitCode: number = ExitCode.Ok;
  const program = new Command('kmm-preflight')
    .description(
      'Checks, before an OpenShift upgrade, that every kernel module deployed through KMM Modules will load on the upgraded nodes.',
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });
  const setExitCode = (code: number): void => {
    exitCode = code;
  };
  for (const register of registrations) {
    register(program, io, setExitCode);
  }
  // A parse error ends with the usage line of the command that was given, not only a pointer to --help.
  for (const command of [program, ...program.commands]) {
    command.showHelpAfterError(`${usageLine(command)}\n(run with --help for the options)`);
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end "with an error" of exit code 0; every other parse failure is bad usage.
      return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`kmm-preflight: ${err.message}\n`);
      return ExitCode.Usage;
    }
    if (err instanceof CommandFailedError) {
      io.stderr.write(`kmm-preflight: ${err.message}\n`);
      return ExitCode.Failed;
    }
    io.stderr.write(unexpectedFailure(err, io.env));
    return ExitCode.Failed;
  }
  return exitCode;
}

function usageLine(command: Command): string {
  const path = command.parent === null ? command.name() : `${command.parent.name()} ${command.name()}`;
  return `Usage: ${path} ${command.usage()}`;
}

/** Debug output for a failure no command expected: the stack trace, when asked for with this variable. */
const DEBUG_ENV = 'KMM_PREFLIGHT_DEBUG';

/**
 * A failure no command expected is a bug or a fault of the machine, not of the input: one line saying so, and how
 * to see where it happened, instead of a stack trace over the result.
 */
function unexpectedFailure(err: unknown, env: NodeJS.ProcessEnv): string {
  const message = err instanceof Error ? `${err.name}: ${err.message.split('\n')[0] ?? ''}` : String(err);
  const stack = err instanceof Error && err.stack !== undefined ? err.stack : undefined;
  const debug = env[DEBUG_ENV] !== undefined && env[DEBUG_ENV] !== '' && env[DEBUG_ENV] !== '0';
  return (
    `kmm-preflight: unexpected error: ${message}\n` +
    (debug && stack !== undefined
      ? `${stack}\n`
      : `(not a problem with the input; run again with ${DEBUG_ENV}=1 to see where it happened, and report it)\n`)
  );
}

function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}
