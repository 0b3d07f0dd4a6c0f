import { Command, CommanderError } from 'commander';
import { ExitCode, UsageError, type CliIo } from './io.ts';
import { commandRegistrations } from './commands.ts';

/**
 * Parses argv and runs one subcommand. Returns the process exit code instead of exiting, so tests can drive the
 * whole CLI in-process.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let exitCode: number = ExitCode.Ok;
  const program = new Command('kmm-preflight')
    .description(
      'Checks, before an OpenShift upgrade, that every kernel module deployed through KMM Modules will load on the upgraded nodes.',
    )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });
  const setExitCode = (code: number): void => {
    exitCode = code;
  };
  for (const register of commandRegistrations) {
    register(program, io, setExitCode);
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
    throw err;
  }
  return exitCode;
}

function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}
