import { existsSync, readFileSync } from 'node:fs';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { fetch } from 'undici';
import { CodedError, errorMessage } from '../errors.ts';

/**
 * A small path-based client over client-node's KubeConfig (authentication, TLS, token-file rotation) and undici.
 * The generated API classes need one method per kind and pick the wrong patch content type by default; the runner
 * talks to custom resources, their /status subresource, Leases and Events alike, so one `request(method, path)`
 * with explicit content types is simpler and harder to get wrong.
 */

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export const ContentType = {
  json: 'application/json',
  mergePatch: 'application/merge-patch+json',
} as const;

/** An answer of the API server other than 2xx, with the Status `reason` when it sent one. */
export class KubeApiError extends CodedError<'KUBE_API_ERROR'> {
  /** HTTP status; 0 when no answer came (connection refused, reset, timeout). */
  readonly status: number;
  /** metav1.Status reason, e.g. `Conflict`, `NotFound`, `Expired`. */
  readonly reason: string | undefined;
  constructor(status: number, message: string, reason?: string, options?: { cause?: unknown }) {
    super('KUBE_API_ERROR', message, options);
    this.status = status;
    this.reason = reason;
  }
}

/** A watch stream that stayed silent longer than its idle timeout. */
export class WatchIdleError extends CodedError<'WATCH_IDLE'> {
  constructor(idleTimeoutMs: number) {
    super('WATCH_IDLE', `watch stream silent for ${idleTimeoutMs} ms`);
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409;
}

export interface RequestOptions {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly signal?: AbortSignal;
}

export type WatchEventHandler = (type: string, object: unknown) => void;

export interface KubeClient {
  request<T>(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    options?: RequestOptions,
  ): Promise<T>;
  /**
   * Opens a watch stream. `onDone` is called once when it ends, with the error if it failed. `idleTimeoutMs`
   * aborts a stream that has carried nothing for that long (the watchdog against half-open connections).
   */
  watch(
    path: string,
    query: Readonly<Record<string, string | number | boolean | undefined>>,
    onEvent: WatchEventHandler,
    onDone: (err: unknown) => void,
    idleTimeoutMs: number,
  ): Promise<AbortController>;
  /** The namespace of the pod this runs in, when in a cluster. */
  readonly podNamespace: string | undefined;
  /**
   * Aborts every request and watch still running, and fails later ones at once: at shutdown nothing waits for an
   * API server that does not answer.
   */
  close(): void;
}

/**
 * A kubeconfig file when given (or $KUBECONFIG), in-cluster configuration when running in a pod, and otherwise the
 * default lookup (~/.kube/config). A kubeconfig baked into an image does not silently beat the in-cluster one.
 */
export function loadKubeConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  if (file !== undefined && file !== '') {
    kc.loadFromFile(file);
  } else if (env['KUBECONFIG'] !== undefined && env['KUBECONFIG'] !== '') {
    kc.loadFromDefault();
  } else if (env['KUBERNETES_SERVICE_HOST'] !== undefined && existsSync(`${SERVICE_ACCOUNT_DIR}/token`)) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (kc.getCurrentCluster() === null) {
    throw new Error(
      'no Kubernetes cluster configured: pass --kubeconfig or run in a pod with a service account',
    );
  }
  return kc;
}

export function createKubeClient(kc: KubeConfig): KubeClient {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('the kubeconfig has no current cluster');
  const server = cluster.server.replace(/\/+$/, '');
  const closed = new AbortController();
  let podNamespace: string | undefined;
  try {
    podNamespace = readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim() || undefined;
  } catch {
    podNamespace = undefined;
  }

  async function request<T>(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    options: RequestOptions = {},
  ): Promise<T> {
    const url = new URL(server + path);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const ctx = new RequestContext(url.toString(), HttpMethod[method]);
    await kc.applySecurityAuthentication(ctx);
    const headers: Record<string, string> = { ...ctx.getHeaders(), accept: ContentType.json };
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = options.contentType ?? ContentType.json;
    }
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body,
        dispatcher: ctx.getDispatcher(),
        signal: AbortSignal.any([options.signal ?? AbortSignal.timeout(30_000), closed.signal]),
      });
    } catch (err) {
      throw new KubeApiError(0, `${method} ${path}: ${errorMessage(err)}`, undefined, {
        cause: err,
      });
    }
    const text = await response.text();
    if (!response.ok) throw apiError(method, path, response.status, text);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  async function watch(
    path: string,
    query: Readonly<Record<string, string | number | boolean | undefined>>,
    onEvent: WatchEventHandler,
    onDone: (err: unknown) => void,
    idleTimeoutMs: number,
  ): Promise<AbortController> {
    const url = new URL(server + path);
    url.searchParams.set('watch', 'true');
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const ctx = new RequestContext(url.toString(), HttpMethod.GET);
    await kc.applySecurityAuthentication(ctx);
    const controller = new AbortController();
    let finished = false;
    let idleTimer: NodeJS.Timeout | undefined;
    const finish = (err: unknown): void => {
      if (finished) return;
      finished = true;
      clearTimeout(idleTimer);
      controller.abort();
      onDone(err);
    };
    // The watchdog: a stream that carries nothing (not even a bookmark) for this long is presumed dead.
    const armIdle = (): void => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => finish(new WatchIdleError(idleTimeoutMs)), idleTimeoutMs);
      idleTimer.unref();
    };
    armIdle();
    void (async () => {
      const response = await fetch(url, {
        headers: { ...ctx.getHeaders(), accept: ContentType.json },
        dispatcher: ctx.getDispatcher(),
        signal: AbortSignal.any([controller.signal, closed.signal]),
      });
      if (!response.ok || response.body === null) {
        throw apiError('WATCH', path, response.status, await response.text());
      }
      let buffered = '';
      const decoder = new TextDecoder();
      for await (const chunk of response.body) {
        armIdle();
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          newline = buffered.indexOf('\n');
          if (line === '') continue;
          const event = JSON.parse(line) as { type?: unknown; object?: unknown };
          if (typeof event.type === 'string') onEvent(event.type, event.object);
        }
      }
    })().then(
      () => finish(null),
      (err: unknown) => finish(err),
    );
    return controller;
  }

  return { request, watch, podNamespace, close: () => closed.abort() };
}

function apiError(method: string, path: string, status: number, text: string): KubeApiError {
  let reason: string | undefined;
  let message = text.slice(0, 500);
  try {
    const parsed = JSON.parse(text) as { reason?: unknown; message?: unknown };
    if (typeof parsed.reason === 'string') reason = parsed.reason;
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // Not a Status object (a proxy's HTML page, an empty 401): keep the start of the text.
  }
  return new KubeApiError(status, `${method} ${path}: ${status} ${message}`, reason);
}
