import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { expect } from 'chai';

import {
  authFileLookup,
  CredentialsError,
  loadAuthFiles,
  normalizeRegistryKey,
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

  it('lets the first merged source that has a registry win, even over a more specific entry in a later one', () => {
    const moduleSecret = RegistryCredentials.fromDockerConfig(
      { auths: { 'quay.io': { auth: b64('mod:1') } } },
      'a',
    );
    const clusterSecret = RegistryCredentials.fromDockerConfig(
      { auths: { 'quay.io/team': { auth: b64('cluster:2') }, 'other.io': { auth: b64('o:3') } } },
      'b',
    );
    const merged = RegistryCredentials.merge(moduleSecret, clusterSecret);
    expect(merged.forRegistry('quay.io', 'team/img')?.username).to.equal('mod');
    expect(merged.forRegistry('other.io')?.username).to.equal('o');
    // Merging is associative: a merged source keeps the order of its parts.
    const nested = RegistryCredentials.merge(
      RegistryCredentials.merge(RegistryCredentials.none, clusterSecret),
      moduleSecret,
    );
    expect(nested.forRegistry('quay.io', 'team/img')?.username).to.equal('cluster');
    expect(nested.forRegistry('quay.io', 'elsewhere/img')?.username).to.equal('mod');
  });

  describe('auth files, in the order skopeo and podman read them', () => {
    let dir: string;
    let env: NodeJS.ProcessEnv;
    const write = async (path: string, content: unknown): Promise<string> => {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
      return path;
    };
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'kmm-creds-'));
      env = { HOME: join(dir, 'home'), XDG_RUNTIME_DIR: join(dir, 'run') };
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('lists --auth-file, else REGISTRY_AUTH_FILE, else the runtime auth.json, then the per-user fallbacks', () => {
      const fallbacks = [
        { path: join(dir, 'home/.config/containers/auth.json'), origin: 'default' },
        { path: join(dir, 'home/.docker/config.json'), origin: 'default' },
        { path: join(dir, 'home/.dockercfg'), origin: 'default', legacyFormat: true },
      ];
      expect(authFileLookup(undefined, env)).to.deep.equal([
        { path: join(dir, 'run/containers/auth.json'), origin: 'default' },
        ...fallbacks,
      ]);
      expect(authFileLookup(undefined, { ...env, REGISTRY_AUTH_FILE: '/etc/auth.json' })).to.deep.equal([
        { path: '/etc/auth.json', origin: 'REGISTRY_AUTH_FILE' },
        ...fallbacks,
      ]);
      expect(authFileLookup('/x.json', { ...env, REGISTRY_AUTH_FILE: '/etc/auth.json' })).to.deep.equal([
        { path: '/x.json', origin: '--auth-file' },
        ...fallbacks,
      ]);
      expect(authFileLookup(undefined, { XDG_CONFIG_HOME: '/cfg', REGISTRY_AUTH_FILE: ' ' })).to.deep.equal([
        { path: '/cfg/containers/auth.json', origin: 'default' },
      ]);
      expect(authFileLookup(undefined, {})).to.deep.equal([]);
    });

    it('takes each registry from the first file that has it, and skips default files that do not exist', async () => {
      await write(join(dir, 'run/containers/auth.json'), { auths: { 'a.io': { auth: b64('runtime:1') } } });
      await write(join(dir, 'home/.docker/config.json'), {
        auths: { 'a.io': { auth: b64('docker:2') }, 'b.io': { auth: b64('docker:3') } },
        credsStore: 'desktop',
      });
      await write(join(dir, 'home/.dockercfg'), { 'c.io': { auth: b64('legacy:4') } });
      // ~/.config/containers/auth.json does not exist: skipped.
      const credentials = await loadAuthFiles(authFileLookup(undefined, env));
      expect(credentials.forRegistry('a.io')?.username).to.equal('runtime');
      expect(credentials.forRegistry('b.io')?.username).to.equal('docker');
      expect(credentials.forRegistry('c.io')?.username).to.equal('legacy');
      // A named file replaces the runtime auth.json; the per-user fallbacks still follow it.
      const named = await write(join(dir, 'named.json'), { auths: { 'n.io': { auth: b64('named:5') } } });
      const withFlag = await loadAuthFiles(authFileLookup(named, env));
      expect(withFlag.forRegistry('n.io')?.username).to.equal('named');
      expect(withFlag.forRegistry('a.io')?.username).to.equal('docker');
      expect((await loadAuthFiles(authFileLookup(undefined, {}))).registries()).to.deep.equal([]);
    });

    it('fails on a named file that is missing, naming the flag or variable, and on any file that is not valid', async () => {
      const missing = join(dir, 'missing.json');
      const failure = (files: Parameters<typeof loadAuthFiles>[0]): Promise<Error> =>
        loadAuthFiles(files).then(
          () => expect.fail('should reject'),
          (err: Error) => err,
        );
      const byFlag = await failure(authFileLookup(missing, env));
      expect(byFlag).to.be.instanceOf(CredentialsError);
      expect(byFlag.message).to.equal(`--auth-file ${missing}: cannot read it (ENOENT)`);
      const byVariable = await failure(authFileLookup(undefined, { ...env, REGISTRY_AUTH_FILE: missing }));
      expect(byVariable.message).to.equal(`REGISTRY_AUTH_FILE ${missing}: cannot read it (ENOENT)`);
      const docker = await write(join(dir, 'home/.docker/config.json'), {
        auths: { 'a.io': { auth: b64('user-without-colon') } },
      });
      const invalid = await failure(authFileLookup(undefined, env));
      expect(invalid.message).to.equal(
        `default auth file ${docker}: auths.a.io.auth is not base64 user:password`,
      );
      await write(join(dir, 'home/.docker/config.json'), '{');
      expect((await failure(authFileLookup(undefined, env))).message).to.match(
        new RegExp(`^default auth file ${docker}: not JSON`),
      );
    });
  });
});
