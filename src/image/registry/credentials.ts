import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodedError } from '../../platform/errors.ts';

/**
 * Registry credentials from Docker config JSON, as kept in `~/.docker/config.json`, podman's auth.json, and
 * Kubernetes pull secrets. Secrets never leave this module in messages: errors name the field, never the value.
 */

/** What one registry entry grants. */
export interface RegistryAuth {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token (`identitytoken`), exchanged at the token realm. */
  readonly identityToken?: string;
  /** A bearer token to send as is (`registrytoken`). */
  readonly registryToken?: string;
}

export class CredentialsError extends CodedError<'INVALID_CREDENTIALS'> {
  constructor(message: string) {
    super('INVALID_CREDENTIALS', message);
  }
}

/** A Kubernetes Secret as far as pull secrets go; `data` values are base64 as the API returns them. */
export interface PullSecretLike {
  readonly type?: string;
  readonly metadata?: { readonly name?: string; readonly namespace?: string };
  readonly data?: Readonly<Record<string, string>>;
}

interface Entry {
  /** Lower-case host, `*` allowed as a whole leading label. */
  readonly host: string;
  /** Repository path prefix, '' for the whole registry. */
  readonly path: string;
  readonly auth: RegistryAuth;
  /** Which merged source the entry came from (0 first): an earlier source that matches wins. */
  readonly source: number;
}

/** Docker Hub's spellings: config files use the v1 index URL, references use docker.io. */
const DOCKER_HUB_ALIASES = new Set(['index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/**
 * Normalises a config key or a registry host: drops the scheme and the API path (`/v1/`, `/v2/`), lower-cases the
 * host, and maps Docker Hub's hosts to docker.io. What is left after the host is a repository prefix.
 */
export function normalizeRegistryKey(key: string): { host: string; path: string } {
  const withoutScheme = key.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = withoutScheme.indexOf('/');
  const rawHost = (slash < 0 ? withoutScheme : withoutScheme.slice(0, slash)).toLowerCase();
  const rawPath = slash < 0 ? '' : withoutScheme.slice(slash + 1);
  const host = DOCKER_HUB_ALIASES.has(rawHost) ? 'docker.io' : rawHost;
  const path = rawPath
    .replace(/^v[12]\/?$/, '')
    .replace(/^v2\//, '')
    .replace(/\/+$/, '');
  return { host, path };
}

/** Credentials by registry, merged from one or more sources; the first source that has a registry wins. */
export class RegistryCredentials {
  readonly #entries: readonly Entry[];

  private constructor(entries: readonly Entry[]) {
    this.#entries = entries;
  }

  static readonly none = new RegistryCredentials([]);

  /** From Docker config JSON (`{"auths": {...}}`); `source` names where it came from in errors. */
  static fromDockerConfig(json: unknown, source: string): RegistryCredentials {
    const config = typeof json === 'string' ? parseJson(json, source) : json;
    if (!isObject(config)) throw new CredentialsError(`${source}: not a JSON object`);
    const auths = config['auths'];
    if (auths === undefined) return RegistryCredentials.none; // e.g. only credHelpers, which cannot run here
    if (!isObject(auths)) throw new CredentialsError(`${source}: auths is not an object`);
    return new RegistryCredentials(parseAuths(auths, source, 'auths'));
  }

  /** From the legacy `.dockercfg` format, which is the auths map alone. */
  static fromDockerCfg(json: unknown, source: string): RegistryCredentials {
    const auths = typeof json === 'string' ? parseJson(json, source) : json;
    if (!isObject(auths)) throw new CredentialsError(`${source}: not a JSON object of registries`);
    return new RegistryCredentials(parseAuths(auths, source, ''));
  }

  /**
   * From a pull Secret (`kubernetes.io/dockerconfigjson` with `.dockerconfigjson`, or legacy
   * `kubernetes.io/dockercfg` with `.dockercfg`). A Secret of another type is read by whichever key it has.
   */
  static fromSecret(secret: PullSecretLike): RegistryCredentials {
    const name = `Secret ${secret.metadata?.namespace ?? ''}${secret.metadata?.namespace ? '/' : ''}${secret.metadata?.name ?? '(unnamed)'}`;
    const data = secret.data ?? {};
    const json = data['.dockerconfigjson'];
    const cfg = data['.dockercfg'];
    if (secret.type === 'kubernetes.io/dockercfg' || (json === undefined && cfg !== undefined)) {
      if (cfg === undefined)
        throw new CredentialsError(`${name}: type kubernetes.io/dockercfg but no data[.dockercfg]`);
      return RegistryCredentials.fromDockerCfg(
        decodeBase64(cfg, `${name} data[.dockercfg]`),
        `${name} .dockercfg`,
      );
    }
    if (json === undefined) {
      throw new CredentialsError(
        `${name}: no data[.dockerconfigjson] (or data[.dockercfg]); create it with kubectl create secret docker-registry`,
      );
    }
    return RegistryCredentials.fromDockerConfig(
      decodeBase64(json, `${name} data[.dockerconfigjson]`),
      `${name} .dockerconfigjson`,
    );
  }

  /** Earlier sources win: pass a Module's own secret before the cluster pull secret. */
  static merge(...sources: readonly RegistryCredentials[]): RegistryCredentials {
    const entries: Entry[] = [];
    let offset = 0;
    for (const credentials of sources) {
      let count = 0;
      for (const entry of credentials.#entries) {
        entries.push({ ...entry, source: offset + entry.source });
        count = Math.max(count, entry.source + 1);
      }
      offset += count;
    }
    return new RegistryCredentials(entries);
  }

  /**
   * The credentials for `registry` (a host, `host:port`, or docker.io) and `repository`. Among matching entries
   * of the first source that matches, the longest repository prefix wins, then an exact host over a `*.` glob
   * (as the kubelet does).
   */
  forRegistry(registry: string, repository = ''): RegistryAuth | undefined {
    const { host } = normalizeRegistryKey(registry);
    let best: { entry: Entry; score: number } | undefined;
    for (const entry of this.#entries) {
      if (best !== undefined && entry.source !== best.entry.source) break; // entries are in source order
      if (!hostMatches(entry.host, host)) continue;
      if (entry.path !== '' && repository !== entry.path && !repository.startsWith(`${entry.path}/`))
        continue;
      const score = entry.path.length * 2 + (entry.host.startsWith('*.') ? 0 : 1);
      if (best === undefined || score > best.score) best = { entry, score };
    }
    return best?.entry.auth;
  }

  /** Registries with credentials (no secrets), for messages such as "no credentials for X (have: a, b)". */
  registries(): string[] {
    return [...new Set(this.#entries.map((e) => (e.path ? `${e.host}/${e.path}` : e.host)))];
  }
}

function parseAuths(auths: Record<string, unknown>, source: string, prefix: string): Entry[] {
  const entries: Entry[] = [];
  for (const [key, value] of Object.entries(auths)) {
    const field = prefix ? `${prefix}.${key}` : key;
    if (!isObject(value)) throw new CredentialsError(`${source}: ${field} is not an object`);
    const auth = parseEntry(value, source, field);
    if (auth === undefined) continue; // e.g. `{"email": ...}` only: nothing to authenticate with
    entries.push({ ...normalizeRegistryKey(key), auth, source: 0 });
  }
  return entries;
}

function parseEntry(value: Record<string, unknown>, source: string, field: string): RegistryAuth | undefined {
  for (const name of ['auth', 'username', 'password', 'identitytoken', 'registrytoken']) {
    if (value[name] !== undefined && typeof value[name] !== 'string') {
      throw new CredentialsError(`${source}: ${field}.${name} is not a string`);
    }
  }
  const { auth, username, password, identitytoken, registrytoken } = value as Record<
    string,
    string | undefined
  >;
  let user = username;
  let pass = password;
  if (auth !== undefined && auth !== '') {
    const decoded = /^[A-Za-z0-9+/]*={0,2}$/.test(auth) ? Buffer.from(auth, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new CredentialsError(`${source}: ${field}.auth is not base64 user:password`);
    user = decoded.slice(0, colon);
    pass = decoded.slice(colon + 1);
  }
  const result: RegistryAuth = {
    ...(user ? { username: user } : {}),
    ...(pass ? { password: pass } : {}),
    ...(identitytoken ? { identityToken: identitytoken } : {}),
    ...(registrytoken ? { registryToken: registrytoken } : {}),
  };
  if (result.username !== undefined && result.password === undefined && result.identityToken === undefined) {
    throw new CredentialsError(`${source}: ${field} has a username but no password`);
  }
  return Object.keys(result).length === 0 ? undefined : result;
}

function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.startsWith('*.')) return pattern === host;
  const suffix = pattern.slice(1); // ".example.com"
  return host.endsWith(suffix) && !host.slice(0, -suffix.length).includes('.');
}

function decodeBase64(value: string, field: string): string {
  const compact = value.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) throw new CredentialsError(`${field} is not base64`);
  return Buffer.from(compact, 'base64').toString('utf8');
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CredentialsError(`${source}: not JSON (${(err as Error).message})`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One registry auth file to read, and how the user came to it. */
export interface AuthFile {
  readonly path: string;
  /** For messages: the flag or variable that named it, or `default`. */
  readonly origin: '--auth-file' | 'REGISTRY_AUTH_FILE' | 'default';
  /** `~/.dockercfg`: the auths map alone. */
  readonly legacyFormat?: boolean;
}

/**
 * The auth files skopeo and podman read, in their order (containers-auth.json(5)): the file named by --auth-file,
 * else by REGISTRY_AUTH_FILE, else the primary ${XDG_RUNTIME_DIR}/containers/auth.json; then
 * ${XDG_CONFIG_HOME:-$HOME/.config}/containers/auth.json, $HOME/.docker/config.json and $HOME/.dockercfg. Only the
 * variables in `env` are read; a location whose variable is unset is left out.
 */
export function authFileLookup(authFileFlag: string | undefined, env: NodeJS.ProcessEnv): AuthFile[] {
  const variable = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const files: AuthFile[] = [];
  const fromEnv = variable('REGISTRY_AUTH_FILE');
  const runtimeDir = variable('XDG_RUNTIME_DIR');
  if (authFileFlag !== undefined) files.push({ path: authFileFlag, origin: '--auth-file' });
  else if (fromEnv !== undefined) files.push({ path: fromEnv, origin: 'REGISTRY_AUTH_FILE' });
  else if (runtimeDir !== undefined) {
    files.push({ path: join(runtimeDir, 'containers', 'auth.json'), origin: 'default' });
  }
  const home = variable('HOME');
  const configHome = variable('XDG_CONFIG_HOME') ?? (home === undefined ? undefined : join(home, '.config'));
  if (configHome !== undefined) {
    files.push({ path: join(configHome, 'containers', 'auth.json'), origin: 'default' });
  }
  if (home !== undefined) {
    files.push({ path: join(home, '.docker', 'config.json'), origin: 'default' });
    files.push({ path: join(home, '.dockercfg'), origin: 'default', legacyFormat: true });
  }
  return files;
}

/**
 * Reads `files` in order; a registry's credentials come from the first file with an entry for it. A named file
 * that cannot be read, and any file that is not valid, is a CredentialsError naming the flag or variable; a default
 * location that does not exist is skipped.
 */
export async function loadAuthFiles(files: readonly AuthFile[]): Promise<RegistryCredentials> {
  const loaded: RegistryCredentials[] = [];
  for (const file of files) {
    const label = `${file.origin === 'default' ? 'default auth file' : file.origin} ${file.path}`;
    let text: string;
    try {
      text = await readFile(file.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (file.origin === 'default' && (code === 'ENOENT' || code === 'ENOTDIR')) continue;
      throw new CredentialsError(`${label}: cannot read it (${code ?? String(err)})`);
    }
    loaded.push(
      file.legacyFormat === true
        ? RegistryCredentials.fromDockerCfg(text, label)
        : RegistryCredentials.fromDockerConfig(text, label),
    );
  }
  return RegistryCredentials.merge(...loaded);
}
