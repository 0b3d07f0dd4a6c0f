import { createHash } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { setTimeout as sleepTimer } from 'node:timers/promises';

import { Agent, type Dispatcher } from 'undici';

import type { Descriptor, ImageSource, PullOptions, RegistryTLS, ResolvedImage } from '../source.ts';
import { ImageError } from '../source.ts';
import { manifestReference, parseImageReference, type RegistryReference } from '../reference.ts';
import { parseChallenges, type Challenge } from './challenge.ts';
import { RegistryCredentials, type RegistryAuth } from './credentials.ts';
import { computeDigest, DigestVerifier, isDigest, parseDigest } from './digest.ts';
import { LruCache } from './lru.ts';
import { resolveManifestChain, type FetchedManifest } from './manifest.ts';
import { MANIFEST_ACCEPT } from './media-types.ts';
import {
  backoffDelay,
  DEFAULT_RETRY_POLICY,
  errorCode,
  isRetryableStatus,
  isTimeoutError,
  isTransientError,
  parseRetryAfter,
  type RetryPolicy,
} from './retry.ts';
import { Semaphore } from './semaphore.ts';

/** The subset of pino the client logs through; messages carry hosts and paths, never credentials or tokens. */
export interface RegistryLogger {
  debug(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** One HTTP exchange, reported to `onRequest` (for metrics and benchmarks). */
export interface RegistryRequestEvent {
  readonly host: string;
  readonly method: string;
  /** Path without query string. */
  readonly path: string;
  /** 1 for the first try of an exchange. */
  readonly attempt: number;
  readonly status?: number;
  /** Error code when no response arrived (ECONNRESET, UND_ERR_CONNECT_TIMEOUT, ...). */
  readonly error?: string;
}

export interface HostStats {
  /** HTTP exchanges started, retries and token requests included. */
  requests: number;
  /** Exchanges that were tries after a failure (of a request or of a blob stream). */
  retries: number;
  /** Body bytes received (manifests, blobs, tokens, error bodies). */
  bytesReceived: number;
}

export interface RegistryClientOptions {
  /** Used for every request when given (tests, proxies); otherwise the client makes undici Agents per TLS mode. */
  readonly dispatcher?: Dispatcher;
  /** Extra trusted CA certificates (PEM), added to Node's bundled roots. */
  readonly caCertificates?: readonly string[];
  /** Registries (`host:port`) that may be spoken to over plain HTTP even without registryTLS.insecure. */
  readonly plainHttpRegistries?: readonly string[];
  /** Used when a pull passes no credentials. */
  readonly credentials?: RegistryCredentials;
  readonly logger?: RegistryLogger;
  readonly onRequest?: (event: RegistryRequestEvent) => void;
  readonly retry?: Partial<RetryPolicy>;
  /** Default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Time to wait for response headers; default 30 s. */
  readonly headersTimeoutMs?: number;
  /** Longest silence inside a response body; default 30 s. */
  readonly bodyTimeoutMs?: number;
  /** Largest manifest, config or token response; default 4 MiB. */
  readonly maxManifestBytes?: number;
  /** Concurrent exchanges per host; a blob stream holds its slot until it ends or is destroyed. Default 6. */
  readonly maxConcurrencyPerHost?: number;
  /** Manifests and configs fetched by digest (immutable) kept in memory; default 512 entries, 64 MiB. */
  readonly digestCacheEntries?: number;
  readonly digestCacheBytes?: number;
  readonly userAgent?: string;
  /** Injected for tests of backoff. */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly now?: () => number;
  readonly random?: () => number;
}

interface PullContext {
  readonly tls: RegistryTLS;
  readonly credentials: RegistryCredentials;
  readonly signal: AbortSignal | undefined;
}

interface HttpResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Readable & { dump(opts?: { limit: number }): Promise<void> };
  readonly url: URL;
}

interface Exchange {
  readonly method: 'GET' | 'POST';
  readonly headers: Record<string, string>;
  readonly body?: string;
}

interface CachedToken {
  readonly authorization: string;
  readonly expiresAt: number;
}

const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY = 64 << 10;

/**
 * An OCI distribution client (pull side) on undici, implementing ImageSource. It sends every manifest type in
 * Accept, verifies manifests on the bytes received and blobs as they stream, resumes broken blob streams with a
 * Range request, authenticates (anonymous, Basic, Bearer tokens cached per host and scope), follows blob redirects
 * itself so credentials never reach another host, and retries transient faults with bounded, jittered backoff.
 */
export class RegistryClient implements ImageSource {
  readonly #options: RegistryClientOptions;
  readonly #retry: RetryPolicy;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #maxManifestBytes: number;
  readonly #agents = new Map<string, Dispatcher>();
  readonly #hostSlots = new Map<string, Semaphore>();
  readonly #stats = new Map<string, HostStats>();
  /** The last challenge each host answered with, so later requests authenticate before being refused. */
  readonly #challenges = new Map<string, Challenge>();
  /** Tokens (or their fetch in flight, shared by concurrent requests) per host, scope and identity. */
  readonly #tokens = new LruCache<string, Promise<CachedToken>>(1024);
  /** `insecure` registries: whether https answered (true) or plain http is used (false). */
  readonly #schemes = new Map<string, Promise<'https' | 'http'>>();
  readonly #byDigest: LruCache<string, FetchedManifest>;
  readonly #inFlight = new Map<string, Promise<FetchedManifest>>();
  readonly #contexts = new WeakMap<ResolvedImage, PullContext>();

  constructor(options: RegistryClientOptions = {}) {
    this.#options = options;
    this.#retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.#sleep = options.sleep ?? ((ms, signal) => sleepTimer(ms, undefined, { signal }));
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#maxManifestBytes = options.maxManifestBytes ?? 4 << 20;
    this.#byDigest = new LruCache(options.digestCacheEntries ?? 512, options.digestCacheBytes ?? 64 << 20);
  }

  /** Counters per host since the client was made. */
  stats(): Record<string, HostStats> {
    return Object.fromEntries([...this.#stats].map(([host, s]) => [host, { ...s }]));
  }

  /** Closes the connection pools the client made (not an injected dispatcher). */
  async close(): Promise<void> {
    await Promise.all([...this.#agents.values()].map((agent) => agent.close()));
    this.#agents.clear();
  }

  async resolve(reference: string, options: PullOptions): Promise<ResolvedImage> {
    const ref = parseRegistryReference(reference);
    const ctx = this.#context(options);
    const chain = await resolveManifestChain(
      {
        fetchManifest: (tagOrDigest) => this.#fetchManifest(ref, tagOrDigest, ctx),
        fetchSmallBlob: async (descriptor) => (await this.#fetchConfig(ref, descriptor, ctx)).bytes,
      },
      manifestReference(ref),
      options.platform,
      ref.normalized,
    );
    const image: ResolvedImage = { reference: ref.normalized, ...chain };
    this.#contexts.set(image, ctx);
    return image;
  }

  async openBlob(
    image: ResolvedImage,
    descriptor: Descriptor,
    options?: Omit<PullOptions, 'platform'>,
  ): Promise<Readable> {
    const ref = parseRegistryReference(image.reference);
    const ctx =
      options === undefined ? (this.#contexts.get(image) ?? this.#context({})) : this.#context(options);
    return this.#openVerifiedBlob(ref, descriptor, ctx, `${ref.normalized} blob ${descriptor.digest}`);
  }

  #context(options: Omit<PullOptions, 'platform'>): PullContext {
    const given = options.credentials;
    if (given !== undefined && !(given instanceof RegistryCredentials)) {
      throw new TypeError(
        'PullOptions.credentials must be a RegistryCredentials (see src/image/registry/credentials.ts)',
      );
    }
    return {
      tls: options.tls ?? {},
      credentials: given ?? this.#options.credentials ?? RegistryCredentials.none,
      signal: options.signal,
    };
  }

  // ---- manifests -------------------------------------------------------------------------------------------

  async #fetchManifest(
    ref: RegistryReference,
    tagOrDigest: string,
    ctx: PullContext,
  ): Promise<FetchedManifest> {
    if (!isDigest(tagOrDigest)) {
      const fetched = await this.#downloadManifest(
        ref,
        tagOrDigest,
        ctx,
        `${ref.registry}/${ref.repository}:${tagOrDigest}`,
      );
      // What a tag points to now is also what its digest will always be.
      this.#byDigest.set(digestCacheKey(ref, fetched.digest, ctx), fetched, fetched.bytes.length);
      return fetched;
    }
    // By digest the answer cannot change: cache it, and let concurrent callers share one download.
    const what = `${ref.registry}/${ref.repository}@${tagOrDigest}`;
    return this.#cachedByDigest(digestCacheKey(ref, tagOrDigest, ctx), () =>
      this.#downloadManifest(ref, tagOrDigest, ctx, what),
    );
  }

  async #downloadManifest(
    ref: RegistryReference,
    tagOrDigest: string,
    ctx: PullContext,
    what: string,
  ): Promise<FetchedManifest> {
    const { response, bytes } = await this.#retryingBody(what, ctx, async () => {
      const answer = await this.#registryRequest(
        ref,
        `manifests/${tagOrDigest}`,
        { method: 'GET', headers: { accept: MANIFEST_ACCEPT } },
        ctx,
        what,
      );
      return { response: answer, bytes: await this.#readBounded(answer, this.#maxManifestBytes, what) };
    });
    const header = headerValue(response.headers, 'docker-content-digest');
    const expected = isDigest(tagOrDigest)
      ? tagOrDigest
      : header !== undefined && isDigest(header)
        ? header
        : undefined;
    const digest = computeDigest(
      bytes,
      expected === undefined ? 'sha256' : parseDigest(expected, what).algorithm,
    );
    if (expected !== undefined && digest !== expected) {
      throw new ImageError(
        'DIGEST_MISMATCH',
        `${what}: manifest bytes hash to ${digest}, ${isDigest(tagOrDigest) ? 'asked for' : 'the registry says'} ${expected}`,
      );
    }
    return { bytes, contentType: headerValue(response.headers, 'content-type'), digest };
  }

  async #fetchConfig(
    ref: RegistryReference,
    descriptor: Descriptor,
    ctx: PullContext,
  ): Promise<FetchedManifest> {
    const what = `${ref.normalized} config ${descriptor.digest}`;
    if (descriptor.size > this.#maxManifestBytes) {
      throw new ImageError(
        'LIMIT_EXCEEDED',
        `${what}: ${descriptor.size} bytes, the limit is ${this.#maxManifestBytes}`,
      );
    }
    return this.#cachedByDigest(digestCacheKey(ref, descriptor.digest, ctx), async () => {
      const stream = await this.#openVerifiedBlob(ref, descriptor, ctx, what);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      return { bytes: Buffer.concat(chunks), contentType: descriptor.mediaType, digest: descriptor.digest };
    });
  }

  async #cachedByDigest(key: string, load: () => Promise<FetchedManifest>): Promise<FetchedManifest> {
    const cached = this.#byDigest.get(key);
    if (cached !== undefined) return cached;
    const running = this.#inFlight.get(key);
    if (running !== undefined) return running;
    const loading = load().then((fetched) => {
      this.#byDigest.set(key, fetched, fetched.bytes.length);
      return fetched;
    });
    this.#inFlight.set(key, loading);
    try {
      return await loading;
    } finally {
      this.#inFlight.delete(key);
    }
  }

  // ---- blobs -----------------------------------------------------------------------------------------------

  /** A blob stream that resumes after breaks and fails with DIGEST_MISMATCH at the end if the bytes are wrong. */
  async #openVerifiedBlob(
    ref: RegistryReference,
    descriptor: Descriptor,
    ctx: PullContext,
    what: string,
  ): Promise<Readable> {
    parseDigest(descriptor.digest, what);
    const first = await this.#blobRequest(ref, descriptor.digest, 0, ctx, what);
    const verifier = new DigestVerifier(descriptor.digest, descriptor.size, what);
    pipeline(Readable.from(this.#resumingBody(ref, descriptor, first, ctx, what)), verifier, () => {
      // Errors reach the consumer through `verifier`; a consumer that stops early is not an error.
    });
    return verifier;
  }

  async #blobRequest(
    ref: RegistryReference,
    digest: string,
    offset: number,
    ctx: PullContext,
    what: string,
  ): Promise<HttpResponse> {
    return this.#registryRequest(
      ref,
      `blobs/${digest}`,
      { method: 'GET', headers: offset > 0 ? { range: `bytes=${offset}-` } : {} },
      ctx,
      what,
    );
  }

  /**
   * The blob's bytes, reconnecting with `Range: bytes=<received>-` when the stream breaks or stalls (a server that
   * ignores Range and sends everything again has the bytes already sent skipped). The digest check downstream
   * covers the joined stream.
   */
  async *#resumingBody(
    ref: RegistryReference,
    descriptor: Descriptor,
    first: HttpResponse,
    ctx: PullContext,
    what: string,
  ): AsyncGenerator<Buffer> {
    let response = first;
    let received = 0;
    let failures = 0;
    try {
      for (;;) {
        let skip = received > 0 ? rangeSkip(response, received, what) : 0;
        try {
          for await (const chunk of response.body) {
            let bytes = chunk as Buffer;
            this.#count(response.url.host).bytesReceived += bytes.length;
            if (skip > 0) {
              const dropped = Math.min(skip, bytes.length);
              skip -= dropped;
              bytes = bytes.subarray(dropped);
              if (bytes.length === 0) continue;
            }
            received += bytes.length;
            yield bytes;
          }
          if (received >= descriptor.size) return;
          throw Object.assign(new Error(`stream ended at byte ${received} of ${descriptor.size}`), {
            code: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
          });
        } catch (err) {
          if (err instanceof ImageError || !isTransientError(err)) throw err;
          failures++;
          if (failures >= this.#retry.maxAttempts) {
            throw new ImageError(
              isTimeoutError(err) ? 'TIMEOUT' : 'UNREACHABLE',
              `${what}: the download broke off ${times(failures)} (last at byte ${received}: ${errorCode(err) ?? (err as Error).message})`,
              { cause: err },
            );
          }
          this.#options.logger?.warn(
            { host: response.url.host, digest: descriptor.digest, received, error: errorCode(err) },
            'blob download broke off; resuming',
          );
          response.body.destroy();
          await this.#sleep(backoffDelay(failures, this.#retry, this.#random), ctx.signal);
          this.#count(response.url.host).retries++;
          response = await this.#blobRequest(ref, descriptor.digest, received, ctx, what);
        }
      }
    } finally {
      response.body.destroy();
    }
  }

  // ---- registry requests: auth and redirects ---------------------------------------------------------------

  /**
   * One registry API call: authenticates (pre-emptively once the host's challenge is known, else after a 401),
   * follows redirects without credentials to other origins, and maps refusals to definite ImageErrors.
   */
  async #registryRequest(
    ref: RegistryReference,
    path: string,
    exchange: Exchange,
    ctx: PullContext,
    what: string,
  ): Promise<HttpResponse> {
    const host = apiHost(ref.registry);
    const scheme = await this.#scheme(host, ctx);
    const url = new URL(`${scheme}://${host}/v2/${ref.repository}/${path}`);
    const scope = `repository:${ref.repository}:pull`;
    const auth = ctx.credentials.forRegistry(ref.registry, ref.repository);

    let authorization = await this.#authorization(host, scope, auth, ctx, undefined);
    let response = await this.#exchange(url, withAuthorization(exchange, authorization), ctx, what);
    if (response.statusCode === 401) {
      const challenge = pickChallenge(headerValue(response.headers, 'www-authenticate'));
      await response.body.dump({ limit: MAX_ERROR_BODY });
      if (challenge === undefined) {
        throw new ImageError(
          'UNAUTHORIZED',
          `${what}: ${host} answered 401 without a challenge we can answer`,
        );
      }
      this.#challenges.set(host, challenge);
      if (authorization !== undefined) this.#tokens.delete(tokenKey(host, scope, auth));
      authorization = await this.#authorization(host, scope, auth, ctx, challenge);
      if (authorization === undefined) {
        throw new ImageError(
          'UNAUTHORIZED',
          `${what}: ${ref.registry} requires credentials and none are configured for it${describeRegistries(ctx.credentials)}`,
        );
      }
      response = await this.#exchange(url, withAuthorization(exchange, authorization), ctx, what);
    }

    let current = withAuthorization(exchange, authorization);
    for (let hops = 0; isRedirect(response.statusCode); hops++) {
      const location = headerValue(response.headers, 'location');
      await response.body.dump({ limit: MAX_ERROR_BODY });
      if (location === undefined || hops >= MAX_REDIRECTS) {
        throw new ImageError(
          'UNREACHABLE',
          `${what}: too many or broken redirects from ${response.url.host}`,
          {
            definite: true,
          },
        );
      }
      const target = new URL(location, response.url);
      if (target.protocol === 'http:' && !this.#plainHttpAllowed(ref.registry, ctx)) {
        throw new ImageError(
          'UNREACHABLE',
          `${what}: redirected to plain HTTP (${target.host}), which is not allowed`,
          {
            definite: true,
          },
        );
      }
      // Storage hosts (S3, CDNs) get a signed URL, never the registry's credentials; once dropped they stay dropped.
      if (target.origin !== response.url.origin) current = withAuthorization(current, undefined);
      response = await this.#exchange(target, current, ctx, what);
    }

    if (response.statusCode >= 200 && response.statusCode < 300) return response;
    throw await this.#refusal(response, ref, auth, what);
  }

  async #refusal(
    response: HttpResponse,
    ref: RegistryReference,
    auth: RegistryAuth | undefined,
    what: string,
  ): Promise<ImageError> {
    const detail = await this.#errorDetail(response);
    const status = response.statusCode;
    const who =
      auth?.username !== undefined
        ? ` as ${auth.username}`
        : auth !== undefined
          ? ' with a token'
          : ' anonymously';
    if (status === 404) return new ImageError('NOT_FOUND', `${what}: not found${detail}`);
    const challenge = pickChallenge(headerValue(response.headers, 'www-authenticate'));
    if (status === 401 && challenge?.params['error'] === 'insufficient_scope') {
      // Token registries (Docker Hub, quay) answer this way for a private repository and for one that does not exist.
      return new ImageError(
        'DENIED',
        `${what}: access denied${who}: the repository does not exist or these credentials may not pull it${detail}`,
      );
    }
    if (status === 401) {
      return new ImageError(
        'UNAUTHORIZED',
        auth === undefined
          ? `${what}: ${ref.registry} requires credentials and none are configured for it${detail}`
          : `${what}: ${ref.registry} refused the credentials${who}${detail}`,
      );
    }
    if (status === 403) return new ImageError('DENIED', `${what}: access denied${who}${detail}`);
    return new ImageError('UNREACHABLE', `${what}: ${ref.registry} answered ${status}${detail}`, {
      definite: true,
    });
  }

  /** The registry's error codes and messages (`{"errors":[{"code","message"}]}`), for the user. */
  async #errorDetail(response: HttpResponse): Promise<string> {
    try {
      const text = (await this.#readBounded(response, MAX_ERROR_BODY, 'error body')).toString('utf8');
      const errors =
        (JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> }).errors ?? [];
      const parts = errors.map((e) => [e.code, e.message].filter((x) => typeof x === 'string').join(': '));
      return parts.length > 0 ? ` (${parts.join('; ')})` : '';
    } catch {
      return '';
    }
  }

  /** The Authorization header for `host` and `scope`, or undefined to go anonymously. */
  async #authorization(
    host: string,
    scope: string,
    auth: RegistryAuth | undefined,
    ctx: PullContext,
    challenge: Challenge | undefined,
  ): Promise<string | undefined> {
    const known = challenge ?? this.#challenges.get(host);
    if (known === undefined) return undefined;
    if (known.scheme === 'basic') {
      if (auth?.username === undefined || auth.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
    }
    if (auth?.registryToken !== undefined) return `Bearer ${auth.registryToken}`;
    const key = tokenKey(host, scope, auth);
    const cached = this.#tokens.get(key);
    const reusable = await cached?.catch(() => undefined);
    if (reusable !== undefined && reusable.expiresAt > this.#now()) return reusable.authorization;
    const fetching = this.#fetchToken(host, known, scope, auth, ctx);
    this.#tokens.set(key, fetching);
    try {
      return (await fetching).authorization;
    } catch (err) {
      if (this.#tokens.get(key) === fetching) this.#tokens.delete(key);
      throw err;
    }
  }

  /** The Bearer token flow of distribution's token.md, with the OAuth2 refresh-token grant for identity tokens. */
  async #fetchToken(
    host: string,
    challenge: Challenge,
    scope: string,
    auth: RegistryAuth | undefined,
    ctx: PullContext,
  ): Promise<CachedToken> {
    const realmText = challenge.params['realm'];
    const what = `token for ${host} (${scope})`;
    let realm: URL;
    try {
      realm = new URL(realmText ?? '');
    } catch {
      throw new ImageError(
        'UNAUTHORIZED',
        `${what}: ${host} names no valid token realm ("${realmText ?? ''}")`,
      );
    }
    // The realm comes from the server and receives the credentials: only over TLS, unless this registry is one we
    // already talk to in plain HTTP.
    const realmAllowed =
      realm.protocol === 'https:' ||
      (realm.protocol === 'http:' && this.#plainHttpAllowed(hostForAllowList(host), ctx));
    if (!realmAllowed) {
      throw new ImageError(
        'UNAUTHORIZED',
        `${what}: token realm ${realm.origin} is not https; refusing to send credentials`,
      );
    }
    const service = challenge.params['service'];
    let exchange: Exchange;
    if (auth?.identityToken !== undefined) {
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: auth.identityToken,
        client_id: 'kmm-preflight',
        ...(service ? { service } : {}),
        scope,
      });
      exchange = {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      };
    } else {
      if (service) realm.searchParams.set('service', service);
      realm.searchParams.append('scope', scope);
      const basic =
        auth?.username !== undefined && auth.password !== undefined
          ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`
          : undefined;
      exchange = withAuthorization({ method: 'GET', headers: {} }, basic);
    }
    const { issuedAt, bytes } = await this.#retryingBody(what, ctx, async () => {
      const started = this.#now();
      const response = await this.#exchange(realm, exchange, ctx, what);
      if (response.statusCode !== 200) {
        const detail = await this.#errorDetail(response);
        const code =
          response.statusCode === 401
            ? 'UNAUTHORIZED'
            : response.statusCode === 403
              ? 'DENIED'
              : 'UNREACHABLE';
        throw new ImageError(
          code,
          `${what}: token service ${realm.host} answered ${response.statusCode}${detail}`,
          { definite: true },
        );
      }
      return { issuedAt: started, bytes: await this.#readBounded(response, this.#maxManifestBytes, what) };
    });
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(bytes.toString('utf8')) as typeof body;
    } catch {
      throw new ImageError(
        'UNAUTHORIZED',
        `${what}: token service ${realm.host} answered with something other than JSON`,
      );
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new ImageError('UNAUTHORIZED', `${what}: token service ${realm.host} returned no token`);
    }
    const lifetimeSeconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    // Renew a little early so a token does not expire between the check and the request.
    const expiresAt = issuedAt + lifetimeSeconds * 1000 - Math.min(10_000, lifetimeSeconds * 100);
    return { authorization: `Bearer ${token}`, expiresAt };
  }

  // ---- transport: TLS, scheme, retries ---------------------------------------------------------------------

  #plainHttpAllowed(registry: string, ctx: PullContext): boolean {
    return ctx.tls.insecure === true || (this.#options.plainHttpRegistries ?? []).includes(registry);
  }

  /**
   * https, except for registries allowed plain HTTP: those are probed once, and plain http is used when https
   * gives no HTTP answer (as go-containerregistry does for KMM's `insecure`).
   */
  async #scheme(host: string, ctx: PullContext): Promise<'https' | 'http'> {
    if ((this.#options.plainHttpRegistries ?? []).includes(hostForAllowList(host))) return 'http';
    if (ctx.tls.insecure !== true) return 'https';
    const key = schemeKey(host, ctx);
    let probe = this.#schemes.get(key);
    if (probe === undefined) {
      probe = this.#probeHttps(host, ctx);
      this.#schemes.set(key, probe);
    }
    return probe;
  }

  async #probeHttps(host: string, ctx: PullContext): Promise<'https' | 'http'> {
    try {
      const response = await this.#exchangeOnce(
        new URL(`https://${host}/v2/`),
        { method: 'GET', headers: {} },
        ctx,
        1,
      );
      await response.body.dump({ limit: MAX_ERROR_BODY });
      return 'https';
    } catch (err) {
      // A certificate the client does not trust still proves the server speaks TLS: stay on https, where the
      // certificate error is reported as such.
      if (isCertificateError(err)) return 'https';
      // Nothing listening (yet) says nothing about the protocol: probe again next time.
      if (
        ['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(
          errorCode(err) ?? '',
        )
      ) {
        this.#schemes.delete(schemeKey(host, ctx));
      }
      this.#options.logger?.debug(
        { host, error: errorCode(err) },
        'no https answer; using plain http (insecure)',
      );
      return 'http';
    }
  }

  /** One exchange with retries on throttling, server faults and broken connections. */
  async #exchange(url: URL, exchange: Exchange, ctx: PullContext, what: string): Promise<HttpResponse> {
    for (let attempt = 1; ; attempt++) {
      let response: HttpResponse;
      try {
        response = await this.#exchangeOnce(url, exchange, ctx, attempt);
      } catch (err) {
        if (ctx.signal?.aborted) throw err;
        if (!isTransientError(err)) throw transportError(err, url, what);
        if (attempt >= this.#retry.maxAttempts) {
          throw new ImageError(
            isTimeoutError(err) ? 'TIMEOUT' : 'UNREACHABLE',
            `${what}: ${url.host} unreachable after ${tries(attempt)} (${errorCode(err) ?? (err as Error).message})`,
            { cause: err },
          );
        }
        await this.#backoff(attempt, undefined, url, errorCode(err), ctx);
        continue;
      }
      if (!isRetryableStatus(response.statusCode)) return response;
      const retryAfter = parseRetryAfter(headerValue(response.headers, 'retry-after'), this.#now());
      await response.body.dump({ limit: MAX_ERROR_BODY });
      const tooLong = retryAfter !== undefined && retryAfter > this.#retry.maxRetryAfterMs;
      if (attempt >= this.#retry.maxAttempts || tooLong) {
        throw new ImageError(
          'UNREACHABLE',
          `${what}: ${url.host} answered ${response.statusCode} after ${tries(attempt)}` +
            (tooLong ? ` and asks to wait ${Math.ceil(retryAfter / 1000)} s` : ''),
        );
      }
      await this.#backoff(attempt, retryAfter, url, String(response.statusCode), ctx);
    }
  }

  async #backoff(
    attempt: number,
    retryAfter: number | undefined,
    url: URL,
    reason: string | undefined,
    ctx: PullContext,
  ): Promise<void> {
    const delay = retryAfter ?? backoffDelay(attempt, this.#retry, this.#random);
    this.#options.logger?.warn(
      { host: url.host, path: url.pathname, reason, attempt, delayMs: delay },
      'retrying',
    );
    this.#count(url.host).retries++;
    await this.#sleep(delay, ctx.signal);
  }

  async #exchangeOnce(
    url: URL,
    exchange: Exchange,
    ctx: PullContext,
    attempt: number,
  ): Promise<HttpResponse> {
    const release = await this.#slots(url.host).acquire(ctx.signal);
    this.#count(url.host).requests++;
    const report = (fields: { status?: number; error?: string }): void =>
      this.#options.onRequest?.({
        host: url.host,
        method: exchange.method,
        path: url.pathname,
        attempt,
        ...fields,
      });
    try {
      const response = await this.#dispatcher(ctx.tls).request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: exchange.method,
        headers: { 'user-agent': this.#options.userAgent ?? 'kmm-preflight', ...exchange.headers },
        ...(exchange.body === undefined ? {} : { body: exchange.body }),
        signal: ctx.signal,
        headersTimeout: this.#options.headersTimeoutMs ?? 30_000,
        bodyTimeout: this.#options.bodyTimeoutMs ?? 30_000,
      });
      report({ status: response.statusCode });
      // The slot is held until the body is consumed or destroyed: that is the connection in use.
      response.body.once('close', release);
      if (response.body.destroyed) release();
      return { statusCode: response.statusCode, headers: response.headers, body: response.body, url };
    } catch (err) {
      release();
      report({ error: errorCode(err) ?? 'error' });
      throw err;
    }
  }

  /** A whole small body (manifest, token, error); a body that breaks off or stalls is a BodyInterrupted. */
  async #readBounded(response: HttpResponse, limit: number, what: string): Promise<Buffer> {
    const declared = Number(headerValue(response.headers, 'content-length'));
    if (Number.isFinite(declared) && declared > limit) {
      response.body.destroy();
      throw new ImageError('LIMIT_EXCEEDED', `${what}: ${declared} bytes, the limit is ${limit}`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of response.body) {
        total += (chunk as Buffer).length;
        this.#count(response.url.host).bytesReceived += (chunk as Buffer).length;
        if (total > limit) {
          response.body.destroy();
          throw new ImageError('LIMIT_EXCEEDED', `${what}: more than ${limit} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      if (err instanceof ImageError) throw err;
      throw new BodyInterrupted(response.url, err);
    }
    return Buffer.concat(chunks);
  }

  /**
   * Runs `load` (an exchange and the reading of its small body) again when the body breaks off or stalls, with
   * backoff and within maxAttempts: #exchange retries only until the response headers arrive.
   */
  async #retryingBody<T>(what: string, ctx: PullContext, load: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await load();
      } catch (err) {
        if (!(err instanceof BodyInterrupted)) throw err;
        const cause = err.cause;
        if (ctx.signal?.aborted) throw cause;
        if (!isTransientError(cause) || attempt >= this.#retry.maxAttempts) {
          throw new ImageError(
            isTimeoutError(cause) ? 'TIMEOUT' : 'UNREACHABLE',
            `${what}: the response from ${err.url.host} broke off ${times(attempt)} (${errorCode(cause) ?? (cause as Error).message})`,
            { cause },
          );
        }
        await this.#backoff(attempt, undefined, err.url, errorCode(cause), ctx);
      }
    }
  }

  #dispatcher(tls: RegistryTLS): Dispatcher {
    if (this.#options.dispatcher !== undefined) return this.#options.dispatcher;
    const verify = tls.insecureSkipTLSVerify !== true;
    const key = verify ? 'verify' : 'skip-verify';
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      const extra = this.#options.caCertificates ?? [];
      agent = new Agent({
        connect: {
          timeout: this.#options.connectTimeoutMs ?? 10_000,
          rejectUnauthorized: verify,
          ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
        },
        connections: this.#options.maxConcurrencyPerHost ?? 6,
      });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  #slots(host: string): Semaphore {
    let slots = this.#hostSlots.get(host);
    if (slots === undefined) {
      slots = new Semaphore(this.#options.maxConcurrencyPerHost ?? 6);
      this.#hostSlots.set(host, slots);
    }
    return slots;
  }

  #count(host: string): HostStats {
    let stats = this.#stats.get(host);
    if (stats === undefined) {
      stats = { requests: 0, retries: 0, bytesReceived: 0 };
      this.#stats.set(host, stats);
    }
    return stats;
  }
}

/** A small body that broke off or stalled after its headers arrived (the cause says how). */
class BodyInterrupted extends Error {
  readonly url: URL;
  constructor(url: URL, cause: unknown) {
    super(`the response from ${url.host} broke off`, { cause });
    this.name = 'BodyInterrupted';
    this.url = url;
  }
}

function parseRegistryReference(reference: string): RegistryReference {
  const parsed = parseImageReference(reference);
  if (!parsed.ok) throw parsed.error;
  if (parsed.data.kind !== 'registry') {
    throw new ImageError(
      'INVALID_REFERENCE',
      `${reference}: an OCI layout is not read by the registry client`,
    );
  }
  return parsed.data;
}

/** Docker Hub's API is served from registry-1.docker.io, not docker.io. */
function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

function schemeKey(host: string, ctx: PullContext): string {
  return `${host}|${ctx.tls.insecureSkipTLSVerify === true}`;
}

function hostForAllowList(host: string): string {
  return host === 'registry-1.docker.io' ? 'docker.io' : host;
}

/** Bearer when offered (it is what the registry prefers), else Basic. */
function pickChallenge(header: string | undefined): Challenge | undefined {
  const challenges = parseChallenges(header ?? '');
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

/** Who is asking, as a hash so that cache keys hold no secret. */
function credentialIdentity(auth: RegistryAuth | undefined): string {
  return auth === undefined
    ? 'anonymous'
    : createHash('sha256').update(JSON.stringify(auth)).digest('hex').slice(0, 16);
}

/** Tokens are per host, scope and identity. */
function tokenKey(host: string, scope: string, auth: RegistryAuth | undefined): string {
  return `${host}|${scope}|${credentialIdentity(auth)}`;
}

/**
 * Content by digest is cached per identity too: another Module's credentials having read an image must not make
 * it readable with these.
 */
function digestCacheKey(ref: RegistryReference, digest: string, ctx: PullContext): string {
  const identity = credentialIdentity(ctx.credentials.forRegistry(ref.registry, ref.repository));
  return `${ref.registry}/${ref.repository}@${digest}|${identity}`;
}

function withAuthorization(exchange: Exchange, authorization: string | undefined): Exchange {
  const { authorization: _dropped, ...headers } = exchange.headers;
  return { ...exchange, headers: authorization === undefined ? headers : { ...headers, authorization } };
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function headerValue(headers: HttpResponse['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** How many already-received bytes a resumed response will repeat: 0 for a matching 206, all of them for a 200. */
function rangeSkip(response: HttpResponse, received: number, what: string): number {
  if (response.statusCode === 200) return received;
  const start = /^bytes (\d+)-/.exec(headerValue(response.headers, 'content-range') ?? '')?.[1];
  if (response.statusCode === 206 && start !== undefined && Number(start) === received) return 0;
  response.body.destroy();
  throw new ImageError(
    'UNREACHABLE',
    `${what}: resuming at byte ${received} got a response for another range`,
    {
      definite: false,
    },
  );
}

function times(count: number): string {
  return count === 1 ? 'once' : `${count} times`;
}

function tries(count: number): string {
  return count === 1 ? '1 try' : `${count} tries`;
}

function describeRegistries(credentials: RegistryCredentials): string {
  const registries = credentials.registries();
  return registries.length > 0 ? ` (credentials are configured for ${registries.join(', ')})` : '';
}

function isCertificateError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT/.test(code);
}

/** Errors that retrying cannot fix: TLS trust, DNS names that do not exist, refused protocols. */
function transportError(err: unknown, url: URL, what: string): Error {
  const code = errorCode(err);
  if (code === 'ABORT_ERR' || (err as Error).name === 'AbortError') return err as Error;
  const hint = isCertificateError(err)
    ? '; trust its CA with --ca-file, or skip verification with --insecure-skip-tls-verify (a Module: registryTLS.insecureSkipTLSVerify)'
    : code === 'ENOTFOUND'
      ? '; the host name does not resolve'
      : '';
  return new ImageError(
    'UNREACHABLE',
    `${what}: cannot talk to ${url.host} (${code ?? (err as Error).message})${hint}`,
    {
      definite: true,
      cause: err,
    },
  );
}
