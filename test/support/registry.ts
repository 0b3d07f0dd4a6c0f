import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { Agent, request } from 'undici';

import type { RegistryTLS } from '../../src/image/source.ts';
import { openssl, selfSignedCertificate } from './openssl.ts';
import { startTokenServer, TOKEN_ISSUER, TOKEN_SERVICE, type TokenServer } from './token-server.ts';
import { freePort } from './ports.ts';

/**
 * A real Distribution registry for e2e suites, and skopeo to put images in it (an independent writer).
 *
 *   const registry = await startRegistry('tls-auth');          // or 'http', 'tls'
 *   await pushLayout(`oci:${layoutDir}:v1`, 'mods/driver:v1', registry);              // OCI types kept, digests kept
 *   await pushLayout(`oci:${layoutDir}:v1`, 'mods/driver:v2s2', registry, { format: 'v2s2' }); // Docker types
 *   const source = new RegistryClient(registry.clientOptions);
 *   await source.resolve(`${registry.host}/mods/driver:v1`, { platform, ...registry.pullOptions });
 *   await registry.stop();                                      // kills it and deletes its directory
 *
 * Modes: `http` plain HTTP (pull with `tls: {insecure: true}`); `tls` HTTPS with a CA the suite made (trust it
 * with `caCertificates: [registry.caCert]`); `tls-auth` the same plus htpasswd (bcrypt) Basic auth, with
 * `registry.credentials` a Docker config JSON holding the valid user; `tls-token` the same user through a token
 * service (test/support/token-server.ts): Basic credentials buy a Bearer token, as on quay.io or Docker Hub.
 * Everything binds to 127.0.0.1.
 */

const run = promisify(execFile);

export type RegistryMode = 'http' | 'tls' | 'tls-auth' | 'tls-token';

export interface TestCertificates {
  /** Directory holding ca.crt at its top (usable as skopeo's --cert-dir); the server's key pair is below it. */
  readonly dir: string;
  /** The CA certificate, PEM. */
  readonly caCert: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestRegistry {
  readonly mode: RegistryMode;
  /** `127.0.0.1:<port>`, the registry part of image references. */
  readonly host: string;
  /** `http://…` or `https://…`. */
  readonly url: string;
  /** Present in the TLS modes. */
  readonly certificates?: TestCertificates;
  readonly caCert?: string;
  /** Present in `tls-auth` and `tls-token`. */
  readonly username?: string;
  readonly password?: string;
  /** Docker config JSON with this registry's credentials (`{auths: {}}` without auth). */
  readonly dockerConfig: { auths: Record<string, { auth: string }> };
  /** Path of a file holding `dockerConfig` (for REGISTRY_AUTH_FILE and --auth-file). */
  readonly authFile: string;
  /** `tls-token`: every Bearer token the token service handed out so far. */
  readonly tokens?: readonly string[];
  /** What a pull needs: `insecure` for plain HTTP. */
  readonly pullOptions: { readonly tls: RegistryTLS };
  /** What a RegistryClient needs: the suite CA. */
  readonly clientOptions: { readonly caCertificates: readonly string[] };
  /** The registry's own log so far (stderr), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  readonly username?: string;
  readonly password?: string;
  /** How long to wait for the registry to answer /v2/; default 30 s. */
  readonly readyTimeoutMs?: number;
}

const REGISTRY_BINARY = '/usr/bin/docker-registry';

/**
 * Registries still running, killed if the test process exits without stopping them (an interrupted run), so
 * no registry outlives its suite. Module state on purpose: it must see every registry this process started.
 */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Makes a CA and a server certificate for 127.0.0.1 and localhost with openssl. */
export async function createTestCertificates(dir: string): Promise<TestCertificates> {
  // skopeo reads every *.crt of its cert dir as a CA and *.key as a client key, so only ca.crt sits at the top.
  const secret = join(dir, 'private');
  await mkdir(secret, { recursive: true });
  const caKey = join(secret, 'ca-key.pem');
  const caFile = join(dir, 'ca.crt');
  const keyFile = join(secret, 'server-key.pem');
  const csr = join(secret, 'server.csr');
  const certFile = join(secret, 'server-cert.pem');
  const ext = join(secret, 'server.ext');
  await selfSignedCertificate('/CN=kmm-preflight test CA', caKey, caFile);
  await openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    keyFile,
    '-out',
    csr,
  ]);
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    caFile,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-CAserial',
    join(secret, 'ca.srl'),
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    certFile,
  ]);
  return { dir, caCert: await readFile(caFile, 'utf8'), caFile, certFile, keyFile };
}

/** Starts `docker-registry serve` on 127.0.0.1 in `mode` and waits until /v2/ answers. */
export async function startRegistry(
  mode: RegistryMode,
  options: StartRegistryOptions = {},
): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), `kmm-registry-${mode}-`));
  try {
    return await startIn(dir, mode, options);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startIn(
  dir: string,
  mode: RegistryMode,
  options: StartRegistryOptions,
): Promise<TestRegistry> {
  const tls = mode !== 'http';
  const certificates = tls ? await createTestCertificates(join(dir, 'certs')) : undefined;
  const authenticated = mode === 'tls-auth' || mode === 'tls-token';
  const username = authenticated ? (options.username ?? 'kmm-tester') : undefined;
  const password = authenticated ? (options.password ?? randomBytes(12).toString('hex')) : undefined;
  let auth: string[] = [];
  let tokenServer: TokenServer | undefined;
  if (mode === 'tls-auth' && username !== undefined && password !== undefined) {
    const htpasswd = join(dir, 'htpasswd');
    const { stdout } = await run('htpasswd', ['-Bbn', username, password]);
    await writeFile(htpasswd, stdout);
    auth = ['auth:', '  htpasswd:', '    realm: kmm-test-registry', `    path: ${htpasswd}`];
  }
  if (mode === 'tls-token' && username !== undefined && password !== undefined && certificates) {
    const tls = { certFile: certificates.certFile, keyFile: certificates.keyFile };
    tokenServer = await startTokenServer({ dir: join(dir, 'certs', 'private'), tls, username, password });
    auth = [
      'auth:',
      '  token:',
      `    realm: ${tokenServer.realm}`,
      `    service: ${TOKEN_SERVICE}`,
      `    issuer: ${TOKEN_ISSUER}`,
      `    rootcertbundle: ${tokenServer.signerCertFile}`,
    ];
  }
  const readyTimeout = options.readyTimeoutMs ?? 30_000;
  // A free port is found by binding 0 and releasing it; another process may take it in between, so retry.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, registryConfig(dir, host, certificates, auth));
    const child = spawn(REGISTRY_BINARY, ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    child.once('exit', () => running.delete(child));
    let log = '';
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      log = (log + text).slice(-20_000);
    });
    const url = `${tls ? 'https' : 'http'}://${host}`;
    const agent = new Agent(certificates ? { connect: { ca: certificates.caCert } } : {});
    try {
      await waitReady(url, agent, child, readyTimeout);
    } catch (err) {
      await stopProcess(child);
      if (attempt < 3 && /address already in use/.test(log)) continue;
      await tokenServer?.close();
      throw new Error(`docker-registry (${mode}) did not start: ${(err as Error).message}\n${log}`, {
        cause: err,
      });
    } finally {
      await agent.close();
    }
    const auths =
      username !== undefined
        ? { [host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } }
        : {};
    const authFile = join(dir, 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths }));
    return {
      mode,
      host,
      url,
      ...(certificates ? { certificates, caCert: certificates.caCert } : {}),
      ...(username !== undefined ? { username, password } : {}),
      dockerConfig: { auths },
      authFile,
      ...(tokenServer ? { tokens: tokenServer.issued } : {}),
      pullOptions: { tls: tls ? {} : { insecure: true } },
      clientOptions: { caCertificates: certificates ? [certificates.caCert] : [] },
      log: () => log,
      stop: async () => {
        await stopProcess(child);
        await tokenServer?.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
}

function registryConfig(
  dir: string,
  host: string,
  certificates: TestCertificates | undefined,
  auth: readonly string[],
): string {
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(certificates
      ? ['  tls:', `    certificate: ${certificates.certFile}`, `    key: ${certificates.keyFile}`]
      : []),
    ...auth,
    '',
  ].join('\n');
}

async function waitReady(url: string, agent: Agent, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
    try {
      const response = await request(`${url}/v2/`, {
        dispatcher: agent,
        headersTimeout: 2000,
        bodyTimeout: 2000,
      });
      await response.body.dump();
      if (response.statusCode === 200 || response.statusCode === 401) return;
      last = `answered ${response.statusCode}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100)); // polling interval, not a wait for an outcome
  }
  throw new Error(`no answer from ${url}/v2/ within ${timeoutMs} ms (${last})`);
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killTimer);
}

export interface PushOptions {
  /** `v2s2` converts to Docker media types (an OCI index becomes a manifest list); default: keep the source's. */
  readonly format?: 'v2s2' | 'oci';
}

/**
 * Copies `source` (e.g. `oci:/dir:tag`) to `<registry.host>/<destination>` with skopeo (all platforms of an
 * index). Without `format` the manifests are pushed byte for byte, so their digests equal the layout's.
 */
export async function pushLayout(
  source: string,
  destination: string,
  registry: TestRegistry,
  options: PushOptions = {},
): Promise<void> {
  const args = ['copy', '--quiet', '--all', '--insecure-policy'];
  if (options.format !== undefined) args.push('--format', options.format);
  else args.push('--preserve-digests');
  if (registry.certificates) args.push('--dest-cert-dir', registry.certificates.dir);
  else args.push('--dest-tls-verify=false');
  // Credentials go through the auth file, not the command line, so no error message can carry them.
  if (registry.username !== undefined) args.push('--dest-authfile', registry.authFile);
  args.push(source, `docker://${registry.host}/${destination}`);
  try {
    await run('skopeo', args, { timeout: 120_000, maxBuffer: 16 << 20 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`skopeo ${args.join(' ')} failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

/** What the fault proxy does to the next `times` requests whose path matches `path`. */
export type Fault =
  | {
      readonly path: RegExp;
      readonly times: number;
      readonly kind: 'status';
      readonly status: number;
      readonly headers?: Record<string, string>;
    }
  /** Passes the response on, then resets the connection after `afterBytes` body bytes. */
  | { readonly path: RegExp; readonly times: number; readonly kind: 'reset'; readonly afterBytes: number }
  /** Passes the response on, then goes silent after `afterBytes` body bytes (until the client gives up). */
  | { readonly path: RegExp; readonly times: number; readonly kind: 'stall'; readonly afterBytes: number }
  /** Passes the response on with one body byte changed at `atByte`. */
  | { readonly path: RegExp; readonly times: number; readonly kind: 'corrupt'; readonly atByte: number };

export interface FaultProxy {
  /** `127.0.0.1:<port>`: use it as the registry part of references (with `tls: {insecure: true}`). */
  readonly host: string;
  /** Faults served so far, by kind. */
  readonly served: Record<Fault['kind'], number>;
  /** Requests seen: method, path and Range. */
  readonly requests: Array<{ method: string; path: string; range?: string }>;
  /**
   * From now on, holds every request whose path matches `path` (before any fault) until the hold is released,
   * so a test can act while a client is known to be waiting on that request.
   */
  hold(path: RegExp): RequestHold;
  /** Releases every hold, then stops. */
  close(): Promise<void>;
}

/** Requests held by FaultProxy.hold. */
export interface RequestHold {
  /** Resolves when the first matching request arrives (and is being held). */
  readonly reached: Promise<void>;
  /** Lets the held requests, and every later one, through. Idempotent. */
  release(): void;
}

interface ActiveHold {
  readonly path: RegExp;
  readonly reached: PromiseWithResolvers<void>;
  readonly released: PromiseWithResolvers<void>;
}

/**
 * A loopback HTTP proxy in front of a plain-HTTP test registry that injects faults on cue, holds requests until
 * told (`hold`), and otherwise passes requests and responses through untouched.
 */
export async function startFaultProxy(registry: TestRegistry, faults: readonly Fault[]): Promise<FaultProxy> {
  if (registry.mode !== 'http') throw new Error('the fault proxy fronts a plain-HTTP registry');
  const remaining = faults.map((f) => ({ fault: f, left: f.times }));
  const served: FaultProxy['served'] = { status: 0, reset: 0, stall: 0, corrupt: 0 };
  const requests: FaultProxy['requests'] = [];
  const [targetHost, targetPort] = registry.host.split(':');
  const holds = new Set<ActiveHold>();
  const server = createHttpServer((req, res) => {
    const path = req.url ?? '/';
    requests.push({
      method: req.method ?? 'GET',
      path,
      ...(req.headers.range ? { range: req.headers.range } : {}),
    });
    const hold = [...holds].find((h) => h.path.test(path));
    if (hold === undefined) {
      pass(req, res, path);
      return;
    }
    hold.reached.resolve();
    void hold.released.promise.then(() => pass(req, res, path));
  });
  const pass = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    const slot = remaining.find((r) => r.left > 0 && r.fault.path.test(path));
    if (slot) slot.left--;
    const fault = slot?.fault;
    if (fault?.kind === 'status') {
      served.status++;
      res.writeHead(fault.status, fault.headers ?? {}).end();
      return;
    }
    const upstream = httpRequest(
      { host: targetHost, port: Number(targetPort), method: req.method, path, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (fault === undefined) {
          answer.pipe(res);
          return;
        }
        served[fault.kind]++;
        let passed = 0;
        answer.on('data', (chunk: Buffer) => {
          const limit = fault.kind === 'corrupt' ? Number.POSITIVE_INFINITY : fault.afterBytes;
          if (passed >= limit) return;
          let piece = chunk.subarray(0, Math.max(0, limit - passed));
          if (fault.kind === 'corrupt' && fault.atByte >= passed && fault.atByte < passed + piece.length) {
            piece = Buffer.from(piece);
            const i = fault.atByte - passed;
            piece.writeUInt8(piece.readUInt8(i) ^ 0xff, i);
          }
          passed += piece.length;
          res.write(piece);
          if (passed >= limit) {
            answer.destroy();
            if (fault.kind === 'reset') res.socket?.resetAndDestroy();
            // 'stall': keep the socket open and silent; the client's body timeout must end it.
          }
        });
        answer.on('end', () => res.end());
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the fault proxy has no address');
  return {
    host: `127.0.0.1:${address.port}`,
    served,
    requests,
    hold: (path) => {
      const active: ActiveHold = {
        path,
        reached: Promise.withResolvers<void>(),
        released: Promise.withResolvers<void>(),
      };
      holds.add(active);
      return {
        reached: active.reached.promise,
        release: () => {
          holds.delete(active);
          active.released.resolve();
        },
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        // A released hold has left the set; those still in it are let go here.
        for (const hold of holds) hold.released.resolve();
        holds.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
