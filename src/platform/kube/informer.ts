import type { Logger } from 'pino';
import { backoffDelay, type BackoffPolicy } from './backoff.ts';
import { KubeApiError, WatchIdleError, type KubeClient } from './client.ts';
import { errorMessage } from '../errors.ts';

/**
 * A list-watch cache that keeps itself right: it restarts on any error with backoff, relists on 410 Gone,
 * relists periodically (diffing against its cache, so missed events are recovered), and aborts a stream that has
 * been silent for too long. Handlers are called for every change and can never break the loop. client-node's
 * informer stops for good on most errors (ts-ecosystem.md 1), which is why this exists.
 */

export interface ResourceDescriptor {
  /** '' for the core group. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly uid?: string;
    readonly resourceVersion?: string;
    readonly generation?: number;
    readonly deletionTimestamp?: string;
  };
}

export function resourcePath(
  resource: ResourceDescriptor,
  options: { namespace?: string | undefined; name?: string; subresource?: string } = {},
): string {
  const base =
    resource.group === '' ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`;
  const ns = resource.namespaced && options.namespace !== undefined ? `/namespaces/${options.namespace}` : '';
  const name = options.name === undefined ? '' : `/${options.name}`;
  const sub = options.subresource === undefined ? '' : `/${options.subresource}`;
  return `${base}${ns}/${resource.plural}${name}${sub}`;
}

export function objectKey(object: KubeObject): string {
  return object.metadata.namespace === undefined
    ? object.metadata.name
    : `${object.metadata.namespace}/${object.metadata.name}`;
}

export type InformerEvent<T> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly object: T; readonly old: T }
  | { readonly type: 'delete'; readonly object: T };

export interface InformerHooks {
  onEvent?(type: string): void;
  onRestart?(reason: 'error' | 'gone' | 'silent' | 'relist' | 'closed'): void;
}

export interface InformerOptions {
  readonly client: KubeClient;
  readonly resource: ResourceDescriptor;
  /** One namespace, or every namespace when undefined. */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly logger: Logger;
  /** Full relist (with diff) this often. */
  readonly relistIntervalMs: number;
  /** A stream silent for this long is aborted and reopened. Bookmarks keep healthy streams talking. */
  readonly idleTimeoutMs: number;
  readonly backoff: BackoffPolicy;
  readonly pageSize?: number;
  readonly hooks?: InformerHooks;
}

interface ListResponse<T> {
  readonly metadata: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items: T[];
}

interface WatchStatus {
  readonly code?: number;
  readonly reason?: string;
  readonly message?: string;
}

export class Informer<T extends KubeObject> {
  readonly #options: InformerOptions;
  readonly #path: string;
  readonly #name: string;
  readonly #cache = new Map<string, T>();
  readonly #handlers: ((event: InformerEvent<T>) => void)[] = [];
  #resourceVersion: string | undefined;
  #synced = false;
  #running = false;
  /** Incremented on every (re)connect; callbacks of an older stream are ignored. */
  #epoch = 0;
  #stream: AbortController | undefined;
  #failures = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #relistTimer: NodeJS.Timeout | undefined;
  #lastSync = 0;

  constructor(options: InformerOptions) {
    this.#options = options;
    this.#path = resourcePath(options.resource, { namespace: options.namespace });
    this.#name = `${options.resource.plural}${options.namespace === undefined ? '' : `@${options.namespace}`}`;
  }

  /** Registers a change handler. Handlers should only enqueue work; a throw is logged and swallowed. */
  on(handler: (event: InformerEvent<T>) => void): void {
    this.#handlers.push(handler);
  }

  /** True once the first list has completed. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Milliseconds since the epoch of the last successful list or watch event. */
  get lastSync(): number {
    return this.#lastSync;
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#connect();
    this.#scheduleRelist();
  }

  stop(): void {
    this.#running = false;
    this.#epoch += 1;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#relistTimer);
    this.#stream?.abort();
    this.#stream = undefined;
  }

  #scheduleRelist(): void {
    // Jitter so that several informers do not relist in lockstep.
    const delay = this.#options.relistIntervalMs * (0.9 + 0.2 * Math.random());
    this.#relistTimer = setTimeout(() => {
      if (!this.#running) return;
      this.#options.hooks?.onRestart?.('relist');
      this.#resourceVersion = undefined;
      this.#restartNow();
      this.#scheduleRelist();
    }, delay);
    this.#relistTimer.unref();
  }

  #restartNow(): void {
    clearTimeout(this.#retryTimer);
    this.#stream?.abort();
    this.#stream = undefined;
    this.#connect();
  }

  #restartLater(reason: 'error' | 'gone' | 'silent' | 'closed', err?: unknown): void {
    if (!this.#running) return;
    this.#options.hooks?.onRestart?.(reason);
    this.#epoch += 1;
    this.#stream?.abort();
    this.#stream = undefined;
    clearTimeout(this.#retryTimer);
    let delay = 0;
    if (reason === 'error') {
      delay = backoffDelay(this.#options.backoff, this.#failures);
      this.#failures += 1;
      this.#options.logger.warn(
        { resource: this.#name, err: errorMessage(err), retryInMs: delay, failures: this.#failures },
        'watch failed; restarting',
      );
    } else {
      this.#options.logger.debug({ resource: this.#name, reason }, 'watch restarting');
    }
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
    this.#retryTimer.unref();
  }

  #connect(): void {
    if (!this.#running) return;
    const epoch = ++this.#epoch;
    this.#run(epoch).catch((err: unknown) => {
      if (epoch === this.#epoch) this.#restartLater('error', err);
    });
  }

  async #run(epoch: number): Promise<void> {
    if (this.#resourceVersion === undefined) {
      const { items, resourceVersion } = await this.#listAll();
      if (epoch !== this.#epoch) return;
      this.#replace(items);
      this.#resourceVersion = resourceVersion;
      this.#failures = 0;
      this.#synced = true;
      this.#lastSync = Date.now();
    }
    const { client, labelSelector, idleTimeoutMs } = this.#options;
    // The server ends the stream itself well before the idle timeout; bookmarks carry the resourceVersion on.
    const timeoutSeconds = Math.max(1, Math.floor((idleTimeoutMs / 1000) * (0.5 + 0.25 * Math.random())));
    const stream = await client.watch(
      this.#path,
      {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds,
        labelSelector,
      },
      (type, object) => {
        if (epoch === this.#epoch) this.#onWatchEvent(epoch, type, object);
      },
      (err) => {
        if (epoch !== this.#epoch || !this.#running) return;
        if (err === null || err === undefined) this.#restartLater('closed');
        else if (isTimeout(err)) this.#restartLater('silent');
        else if (err instanceof KubeApiError && err.status === 410) {
          this.#resourceVersion = undefined;
          this.#restartLater('gone');
        } else this.#restartLater('error', err);
      },
      idleTimeoutMs,
    );
    if (epoch !== this.#epoch) stream.abort();
    else this.#stream = stream;
  }

  async #listAll(): Promise<{ items: T[]; resourceVersion: string | undefined }> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.#options.client.request<ListResponse<T>>('GET', this.#path, {
        query: {
          limit: this.#options.pageSize ?? 500,
          continue: continueToken,
          labelSelector: this.#options.labelSelector,
        },
      });
      items.push(...page.items);
      resourceVersion = page.metadata.resourceVersion;
      continueToken = page.metadata.continue || undefined;
    } while (continueToken !== undefined);
    return { items, resourceVersion };
  }

  #onWatchEvent(epoch: number, type: string, object: unknown): void {
    this.#options.hooks?.onEvent?.(type);
    this.#lastSync = Date.now();
    if (type === 'ERROR') {
      const status = object as WatchStatus;
      if (status.code === 410) {
        this.#resourceVersion = undefined;
        this.#restartLater('gone');
      } else {
        this.#restartLater('error', new Error(`watch error ${status.code ?? '?'}: ${status.message ?? ''}`));
      }
      return;
    }
    const item = object as T;
    const rv = item.metadata?.resourceVersion;
    if (rv !== undefined) this.#resourceVersion = rv;
    this.#failures = 0;
    if (type === 'BOOKMARK' || epoch !== this.#epoch) return;
    const key = objectKey(item);
    if (type === 'DELETED') {
      const old = this.#cache.get(key);
      this.#cache.delete(key);
      this.#emit({ type: 'delete', object: old ?? item });
      return;
    }
    const old = this.#cache.get(key);
    this.#cache.set(key, item);
    if (old === undefined) this.#emit({ type: 'add', object: item });
    else this.#emit({ type: 'update', object: item, old });
  }

  /** Replaces the cache with a fresh list, emitting what changed since the last one. */
  #replace(items: readonly T[]): void {
    const fresh = new Map(items.map((item) => [objectKey(item), item]));
    for (const [key, old] of this.#cache) {
      if (!fresh.has(key)) {
        this.#cache.delete(key);
        this.#emit({ type: 'delete', object: old });
      }
    }
    for (const [key, item] of fresh) {
      const old = this.#cache.get(key);
      this.#cache.set(key, item);
      if (old === undefined) this.#emit({ type: 'add', object: item });
      else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) {
        this.#emit({ type: 'update', object: item, old });
      }
    }
  }

  #emit(event: InformerEvent<T>): void {
    for (const handler of this.#handlers) {
      try {
        handler(event);
      } catch (err) {
        this.#options.logger.error(
          { resource: this.#name, err: errorMessage(err) },
          'informer handler threw',
        );
      }
    }
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof WatchIdleError;
}
