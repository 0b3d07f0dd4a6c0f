import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main.ts';
import type { CliIo } from '../../src/cli/io.ts';

export interface CapturedRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, as a user would from a shell, and captures what it prints. */
export async function runCli(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CapturedRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const io: CliIo = { stdout, stderr, env };
  const code = await main(argv, io);
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}
