import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { UsageError } from '../../src/cli/io.ts';
import { registryAccessFromFlags } from '../../src/cli/registry-flags.ts';

const b64 = (text: string): string => Buffer.from(text).toString('base64');

describe('CLI registry flags: where credentials come from', () => {
  let dir: string;
  let home: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-registry-flags-'));
    home = join(dir, 'home');
    await mkdir(join(home, '.docker'), { recursive: true });
    await writeFile(
      join(home, '.docker', 'config.json'),
      JSON.stringify({ auths: { 'quay.io': { auth: b64('docker-user:pw') } } }),
    );
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('falls back to ~/.docker/config.json when nothing is named and the runtime auth.json does not exist', async () => {
    const access = await registryAccessFromFlags(
      { arch: 'amd64' },
      { HOME: home, XDG_RUNTIME_DIR: join(dir, 'run') },
    );
    expect(access.credentials.forRegistry('quay.io')?.username).to.equal('docker-user');
  });

  it('is a usage error (exit 2) naming --auth-file or REGISTRY_AUTH_FILE when the file named is missing', async () => {
    const missing = join(dir, 'missing.json');
    for (const [flags, env, named] of [
      [{ arch: 'amd64', authFile: missing }, { HOME: home }, '--auth-file'],
      [{ arch: 'amd64' }, { HOME: home, REGISTRY_AUTH_FILE: missing }, 'REGISTRY_AUTH_FILE'],
    ] as const) {
      const err = await registryAccessFromFlags(flags, env).then(
        () => expect.fail('should reject'),
        (e: Error) => e,
      );
      expect(err).to.be.instanceOf(UsageError);
      expect(err.message).to.equal(`${named} ${missing}: cannot read it (ENOENT)`);
    }
  });
});
