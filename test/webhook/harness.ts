import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { writeServingCertificates, type WrittenCertificates } from '../../certs/files.ts';
import type { Module } from '../../src/api/module.ts';
import type { PreflightValidationOCP } from '../../src/api/preflight.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { RuleDecider, type AdmissionPolicy } from '../../webhook/admission-decider.ts';
import type { AdmissionCache } from '../../webhook/cache.ts';
import { WebhookMetrics } from '../../webhook/metrics.ts';
import { WebhookServer, type ServerTimeouts } from '../../webhook/server.ts';
import { WARNING_MAX_CHARS } from '../../webhook/verdicts.ts';

/** An AdmissionCache whose contents a test sets directly. */
export class FixedCache implements AdmissionCache {
  preflights: PreflightValidationOCP[] = [];
  modules: Module[] = [];
  isSynced = true;
  /** When set, listing throws it (an internal fault in the cache). */
  failure: Error | undefined;

  synced(): boolean {
    return this.isSynced;
  }

  listPreflights(): readonly PreflightValidationOCP[] {
    if (this.failure) throw this.failure;
    return this.preflights;
  }

  listModules(): readonly Module[] {
    if (this.failure) throw this.failure;
    return this.modules;
  }
}

export const defaultPolicy: AdmissionPolicy = {
  modulePolicy: 'deny',
  failureMode: 'deny',
  activeWindowMs: 0,
};

/** A throwaway certificate directory (CA kept in `<dir>/ca` so renewals keep the CA). */
export async function makeCertificates(dir?: string): Promise<WrittenCertificates & { dir: string }> {
  const target = dir ?? (await mkdtemp(join(tmpdir(), 'kmm-webhook-certs-')));
  const written = await writeServingCertificates({
    outDir: target,
    caDir: join(target, 'ca'),
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    days: 2,
  });
  return { ...written, dir: target };
}

/** A review as tests build and mutate it: free-form JSON below `request`. */
export interface ReviewBody {
  apiVersion: string;
  kind: string;
  request: {
    uid: string;
    operation: string;
    subResource?: string;
    dryRun?: boolean;
    // Tests reshape objects freely (that is the point of the fixtures); a schema type would only get in the way.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    object: any;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    oldObject: any;
    readonly [field: string]: unknown;
  };
}

/** What the webhook answered, typed for assertions (fields a test reads that are absent are `undefined`). */
export interface ReviewAnswer {
  readonly apiVersion: string;
  readonly kind: string;
  /** Set on 4xx answers. */
  readonly message: string;
  readonly response: {
    readonly uid: string;
    readonly allowed: boolean;
    readonly status: { readonly code: number; readonly reason: string; readonly message: string };
    readonly warnings: string[];
  };
}

export interface PostResult {
  readonly status: number;
  readonly body: ReviewAnswer;
}

export interface TestWebhook {
  readonly url: string;
  readonly port: number;
  readonly server: WebhookServer;
  readonly registry: Registry;
  readonly cache: FixedCache;
  readonly certificates: WrittenCertificates & { dir: string };
  /** Everything the webhook logged, as text (JSON lines). */
  logs(): string;
  /**
   * POSTs a body (an object is sent as JSON, a string or Buffer as is) to `path` over keep-alive HTTPS. Rejects
   * an answer with a warning over WARNING_MAX_CHARS.
   */
  post(body: unknown, path?: string, headers?: Record<string, string>): Promise<PostResult>;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly policy?: Partial<AdmissionPolicy>;
  readonly now?: Date;
  readonly certificates?: WrittenCertificates & { dir: string };
  readonly timeouts?: ServerTimeouts;
}

/** The real webhook server (rules, express app, HTTPS with our certificates) on 127.0.0.1:0, in-process. */
export async function startTestWebhook(options: StartOptions = {}): Promise<TestWebhook> {
  const certificates = options.certificates ?? (await makeCertificates());
  const cache = new FixedCache();
  const logStream = new PassThrough();
  const logChunks: Buffer[] = [];
  logStream.on('data', (chunk: Buffer) => logChunks.push(chunk));
  const logger = createLogger({ level: 'debug', destination: logStream });
  const registry = new Registry();
  const metrics = new WebhookMetrics(registry);
  const now = options.now;
  const decider = new RuleDecider({
    cache,
    policy: { ...defaultPolicy, ...options.policy },
    logger,
    ...(now === undefined ? {} : { now: () => now }),
  });
  const server = await WebhookServer.create({
    decider,
    metrics,
    logger,
    certFile: certificates.certFile,
    keyFile: certificates.keyFile,
    ...(options.timeouts === undefined ? {} : { timeouts: options.timeouts }),
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const url = `https://127.0.0.1:${port}`;
  const agent = new Agent({ connect: { ca: await readFile(certificates.caCertFile, 'utf8') } });
  return {
    url,
    port,
    server,
    registry,
    cache,
    certificates,
    logs: () => Buffer.concat(logChunks).toString(),
    post: async (body, path = '/validate', headers = {}) => {
      const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      const response = await request(`${url}${path}`, {
        method: 'POST',
        body: payload,
        headers: { 'content-type': 'application/json', ...headers },
        dispatcher: agent,
      });
      const text = await response.body.text();
      const answer = JSON.parse(text) as ReviewAnswer;
      // Every answer of every test keeps to the documented bound (names as realistic as the fixtures').
      const long = (answer.response?.warnings ?? []).filter((w) => w.length > WARNING_MAX_CHARS);
      if (long.length > 0)
        throw new Error(`warnings over ${WARNING_MAX_CHARS} characters: ${long.join(' | ')}`);
      return { status: response.statusCode, body: answer };
    },
    close: async () => {
      await agent.close();
      await server.close(1000);
      if (options.certificates === undefined) await rm(certificates.dir, { recursive: true, force: true });
    },
  };
}

/** A deep copy of a JSON fixture in test/webhook/fixtures. */
export async function fixture(name: string): Promise<ReviewBody> {
  return JSON.parse(await readFile(join(import.meta.dirname, 'fixtures', name), 'utf8')) as ReviewBody;
}
