import type { Command } from 'commander';
import type { CliIo } from './io.ts';
import { registerCertsCommand } from './commands/certs.ts';
import { registerImageCommand } from './commands/image.ts';
import { registerCheckCommand } from './commands/check.ts';
import { registerReleaseCommand } from './commands/release.ts';
import { registerRunnerCommand } from './commands/runner.ts';
import { registerWebhookCommand } from './commands/webhook.ts';

/**
 * A subcommand adds itself to the program. It reports its result through `setExitCode` (0, 1 or 2, see ExitCode)
 * and throws UsageError for input the user must fix.
 */
export type CommandRegistration = (program: Command, io: CliIo, setExitCode: (code: number) => void) => void;

/** Every subcommand of kmm-preflight, in the order `--help` lists them. */
export const commandRegistrations: readonly CommandRegistration[] = [
  // image, release, check, runner, webhook, certs: each issue adds its registration here.
  registerImageCommand,
  registerReleaseCommand,
  registerCheckCommand,
  registerRunnerCommand,
  registerWebhookCommand,
  registerCertsCommand,
];
