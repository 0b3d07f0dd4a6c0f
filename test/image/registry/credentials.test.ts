import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import {
  CredentialsError,
  loadCredentialsFile,
  normalizeRegistryKey,
  registryAuthFileFromEnv,
  RegistryCredentials,
} from '../../../src/image/registry/credentials.ts';

const b64 = (text: string): string => Buffer.from(text).toString('base64');

describe('registry: credentials', () => {
  it('normalises config keys: scheme, API path, Docker Hub aliases, repository prefixes', () => {
    expect(normalizeRegistryKey('https://index.docker.io/v1/')).to.deep.equal({
      host: 'docker.io',
      path: '',
    });
    expect(normalizeRegistryKey('registry-1.docker.io')).to.deep.equal({ host: 'docker.io', path: '' });
    expect(normalizeRegistryKey('http://Quay.IO/v2/')).to.deep.equal({ host: 'quay.io', path: '' });
    expect(normalizeRegistryKey('quay.io/org/repo/')).to.deep.equal({ host: 'quay.io', path: 'org/repo' });
    expect(normalizeRegistryKey('localhost:5000')).to.deep.equal({ host: 'localhost:5000', path: '' });
  });

  it('reads auth, username/password and identitytoken entries, and finds them by registry', () => {
    const creds = RegistryCredentials.fromDockerConfig(
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
          'quay.io': { username: 'robot', password: 'secret' },
          'registry.example.com': { identitytoken: 'refresh' },
          'ghost.example.com': { email: 'only@example.com' },
        },
      }),
      'config.json',
    );
    expect(creds.forRegistry('docker.io')).to.deep.equal({ username: 'hubuser', password: 'hub:pass' });
    expect(creds.forRegistry('registry-1.docker.io')).to.deep.equal({
      username: 'hubuser',
      password: 'hub:pass',
    });
    expect(creds.forRegistry('quay.io', 'org/x')).to.deep.equal({ username: 'robot', password: 'secret' });
    expect(creds.forRegistry('registry.example.com')).to.deep.equal({ identityToken: 'refresh' });
    expect(creds.forRegistry('ghost.example.com')).to.be.undefined;
    expect(creds.forRegistry('other.io')).to.be.undefined;
    expect(creds.registries()).to.have.members(['docker.io', 'quay.io', 'registry.example.com']);
  });

  it('prefers the longest repository prefix, then an exact host over a *. glob', () => {
    const creds = RegistryCredentials.fromDockerConfig(
      {
        auths: {
          'quay.io': { auth: b64('a:1') },
          'quay.io/team': { auth: b64('b:2') },
          '*.example.com': { auth: b64('c:3') },
          'r.example.com': { auth: b64('d:4') },
        },
      },
      'x',
    );
    expect(creds.forRegistry('quay.io', 'team/img')?.username).to.equal('b');
    expect(creds.forRegistry('quay.io', 'teamx/img')?.username).to.equal('a');
    expect(creds.forRegistry('r.example.com')?.username).to.equal('d');
    expect(creds.forRegistry('s.example.com')?.username).to.equal('c');
    expect(creds.forRegistry('a.b.example.com')).to.be.undefined;
  });

  it('reads kubernetes.io/dockerconfigjson and legacy dockercfg Secrets, and merges with the first source winning', () => {
    const moduleSecret = RegistryCredentials.fromSecret({
      type: 'kubernetes.io/dockerconfigjson',
      metadata: { name: 'mod', namespace: 'ns' },
      data: { '.dockerconfigjson': b64(JSON.stringify({ auths: { 'quay.io': { auth: b64('module:m') } } })) },
    });
    const clusterSecret = RegistryCredentials.fromSecret({
      type: 'kubernetes.io/dockercfg',
      data: {
        '.dockercfg': b64(
          JSON.stringify({
            'quay.io': { auth: b64('cluster:c') },
            'registry.redhat.io': { auth: b64('rh:r') },
          }),
        ),
      },
    });
    const merged = RegistryCredentials.merge(moduleSecret, clusterSecret);
    expect(merged.forRegistry('quay.io')?.username).to.equal('module');
    expect(merged.forRegistry('registry.redhat.io')?.username).to.equal('rh');
  });

  it('names the field that is wrong and never the secret', () => {
    const cases: Array<[unknown, RegExp]> = [
      [
        { auths: { 'quay.io': { auth: 'bm9jb2xvbg==' } } },
        /config: auths\.quay\.io\.auth is not base64 user:password/,
      ],
      [{ auths: { 'quay.io': { auth: '***' } } }, /auths\.quay\.io\.auth is not base64 user:password/],
      [{ auths: { 'quay.io': { username: 'u' } } }, /auths\.quay\.io has a username but no password/],
      [{ auths: { 'quay.io': { password: 7 } } }, /auths\.quay\.io\.password is not a string/],
      [{ auths: [] }, /auths is not an object/],
      ['{', /config: not JSON/],
    ];
    for (const [input, message] of cases) {
      expect(() => RegistryCredentials.fromDockerConfig(input, 'config'))
        .to.throw(CredentialsError, message)
        .and.not.match(/nocolon|\*\*\*/);
    }
    expect(() =>
      RegistryCredentials.fromSecret({
        type: 'kubernetes.io/dockerconfigjson',
        metadata: { name: 's', namespace: 'n' },
      }),
    ).to.throw(CredentialsError, /Secret n\/s: no data\[\.dockerconfigjson\]/);
    expect(() => RegistryCredentials.fromSecret({ data: { '.dockerconfigjson': '%%%' } })).to.throw(
      CredentialsError,
      /data\[\.dockerconfigjson\] is not base64/,
    );
  });

  it('loads an auth file and honours REGISTRY_AUTH_FILE', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kmm-creds-'));
    try {
      const file = join(dir, 'auth.json');
      await writeFile(file, JSON.stringify({ auths: { 'localhost:5000': { auth: b64('u:p') } } }));
      expect(registryAuthFileFromEnv({ REGISTRY_AUTH_FILE: file })).to.equal(file);
      expect(registryAuthFileFromEnv({})).to.be.undefined;
      expect((await loadCredentialsFile(file)).forRegistry('localhost:5000')).to.deep.equal({
        username: 'u',
        password: 'p',
      });
      await loadCredentialsFile(join(dir, 'missing.json')).then(
        () => expect.fail('should reject'),
        (err: Error) =>
          expect(err.message).to.match(/cannot read the registry auth file .*missing\.json: ENOENT/),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
