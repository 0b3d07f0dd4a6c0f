import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import type { CommandRegistration } from '../../src/cli/commands.ts';
import { CommandFailedError, type CliIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { runCli } from '../support/cli.ts';

/** Runs main over one command that fails with `error`, capturing stderr. */
async function failingWith(
  error: Error,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  stderr.on('data', (c: Buffer) => chunks.push(c));
  const io: CliIo = { stdout, stderr, env };
  const failing: CommandRegistration = (program) => {
    program.command('fail').action(() => Promise.reject(error));
  };
  const code = await main(['fail'], io, [failing]);
  return { code, stderr: Buffer.concat(chunks).toString() };
}

describe('kmm-preflight CLI', () => {
  it('prints help and exits 0', async () => {
    const run = await runCli(['--help']);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.match(/Usage: kmm-preflight/);
  });

  it('lists every subcommand in --help', async () => {
    const run = await runCli(['--help']);
    for (const command of ['image', 'release', 'check', 'runner', 'webhook', 'certs']) {
      expect(run.stdout).to.match(new RegExp(`^  ${command} `, 'm'));
    }
  });

  it('exits 2 with the usage line on an unknown flag', async () => {
    const run = await runCli(['--no-such-flag']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/unknown option '--no-such-flag'/);
    expect(run.stderr).to.contain('Usage: kmm-preflight [options] [command]');
  });

  it("exits 2 with the subcommand's usage line on a missing argument or flag", async () => {
    const release = await runCli(['release']);
    expect(release.code).to.equal(2);
    expect(release.stderr).to.contain("missing required argument 'release-image'");
    expect(release.stderr).to.contain('Usage: kmm-preflight release [options] <release-image>');
    const image = await runCli(['image', 'quay.io/a/b:1', '--module', 'm']);
    expect(image.code).to.equal(2);
    expect(image.stderr).to.contain("required option '--kernel <kernel>' not specified");
    expect(image.stderr).to.contain('Usage: kmm-preflight image [options] <image-ref>');
  });

  it('a command that cannot get its answer: its message in one line, exit 2', async () => {
    const run = await failingWith(
      new CommandFailedError('listing the Modules from https://h:6443 failed: HTTP 403'),
    );
    expect(run).to.deep.equal({
      code: 2,
      stderr: 'kmm-preflight: listing the Modules from https://h:6443 failed: HTTP 403\n',
    });
  });

  it('an unexpected failure: one line and a hint instead of a stack trace, exit 2; the trace on request', async () => {
    const run = await failingWith(new TypeError('x is not a function\n    second line'));
    expect(run.code).to.equal(2);
    expect(run.stderr).to.equal(
      'kmm-preflight: unexpected error: TypeError: x is not a function\n' +
        '(not a problem with the input; run again with KMM_PREFLIGHT_DEBUG=1 to see where it happened, and report it)\n',
    );
    const debug = await failingWith(new TypeError('x is not a function'), { KMM_PREFLIGHT_DEBUG: '1' });
    expect(debug.code).to.equal(2);
    expect(debug.stderr).to.match(
      /^kmm-preflight: unexpected error: TypeError: x is not a function\nTypeError: .*\n\s+at /,
    );
  });
});
