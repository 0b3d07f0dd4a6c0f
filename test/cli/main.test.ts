import { expect } from 'chai';
import { runCli } from '../support/cli.ts';

describe('kmm-preflight CLI', () => {
  it('prints help and exits 0', async () => {
    const run = await runCli(['--help']);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.match(/Usage: kmm-preflight/);
  });

  it('exits 2 with a usage hint on an unknown flag', async () => {
    const run = await runCli(['--no-such-flag']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/unknown option '--no-such-flag'/);
  });
});
