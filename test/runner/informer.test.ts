import { expect } from 'chai';
import { KubeApiError, WatchIdleError, type KubeClient } from '../../src/platform/kube/client.ts';
import { Informer, type InformerEvent, type KubeObject } from '../../src/platform/kube/informer.ts';
import { createLogger } from '../../src/platform/logger.ts';

interface Obj extends KubeObject {
  readonly data?: string;
}

const obj = (name: string, resourceVersion: string): Obj => ({
  metadata: { name, namespace: 'ns', resourceVersion },
});

interface OpenWatch {
  readonly query: Readonly<Record<string, unknown>>;
  readonly onEvent: (type: string, object: unknown) => void;
  readonly onDone: (err: unknown) => void;
}

/** A scripted API server: list answers come from `lists` (or errors), watches are handed to the test. */
class ScriptedClient implements KubeClient {
  readonly podNamespace = undefined;
  lists: (Obj[] | Error)[] = [];
  listCalls = 0;
  readonly watches: OpenWatch[] = [];
  close(): void {
    // Nothing to abort: answers are scripted.
  }
  request<T>(): Promise<T> {
    this.listCalls += 1;
    const next = this.lists.shift() ?? [];
    if (next instanceof Error) return Promise.reject(next);
    return Promise.resolve({ metadata: { resourceVersion: String(100 + this.listCalls) }, items: next } as T);
  }
  watch(
    _path: string,
    query: Readonly<Record<string, string | number | boolean | undefined>>,
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<AbortController> {
    this.watches.push({ query, onEvent, onDone });
    return Promise.resolve(new AbortController());
  }
}

async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function informerOn(
  client: ScriptedClient,
  restarts: string[] = [],
  relistIntervalMs = 3_600_000,
): { informer: Informer<Obj>; events: string[] } {
  const informer = new Informer<Obj>({
    client,
    resource: { group: 'kmm.sigs.x-k8s.io', version: 'v1beta1', plural: 'modules', namespaced: true },
    logger: createLogger({ level: 'silent' }),
    relistIntervalMs,
    idleTimeoutMs: 60_000,
    backoff: { baseMs: 1, maxMs: 5, jitter: 0 },
    hooks: { onRestart: (reason) => restarts.push(reason) },
  });
  const events: string[] = [];
  informer.on((event: InformerEvent<Obj>) => events.push(`${event.type}:${event.object.metadata.name}`));
  return { informer, events };
}

describe('platform/kube: Informer', () => {
  it('lists, then watches from the list resourceVersion with bookmarks; events update the cache', async () => {
    const client = new ScriptedClient();
    client.lists = [[obj('a', '1')]];
    const { informer, events } = informerOn(client);
    informer.start();
    await until('watch open', () => client.watches.length === 1);
    expect(informer.synced).to.equal(true);
    expect(client.watches[0]?.query).to.include({ resourceVersion: '101', allowWatchBookmarks: true });
    client.watches[0]?.onEvent('ADDED', obj('b', '102'));
    client.watches[0]?.onEvent('MODIFIED', obj('a', '103'));
    client.watches[0]?.onEvent('DELETED', obj('b', '104'));
    client.watches[0]?.onEvent('BOOKMARK', { metadata: { resourceVersion: '105' } });
    expect(events).to.deep.equal(['add:a', 'add:b', 'update:a', 'delete:b']);
    expect(informer.list().map((o) => o.metadata.name)).to.deep.equal(['a']);
    client.watches[0]?.onDone(null);
    await until('reconnect', () => client.watches.length === 2);
    expect(client.watches[1]?.query, 'resumes after the bookmark').to.include({ resourceVersion: '105' });
    expect(client.listCalls, 'no relist for a normal close').to.equal(1);
    informer.stop();
  });

  it('relists on 410 Gone and emits what changed meanwhile (deletes included)', async () => {
    const client = new ScriptedClient();
    client.lists = [
      [obj('a', '1'), obj('b', '1')],
      [obj('a', '7'), obj('c', '7')],
    ];
    const restarts: string[] = [];
    const { informer, events } = informerOn(client, restarts);
    informer.start();
    await until('watch open', () => client.watches.length === 1);
    client.watches[0]?.onEvent('ERROR', {
      code: 410,
      reason: 'Expired',
      message: 'too old resource version',
    });
    await until('relist and rewatch', () => client.watches.length === 2);
    expect(client.listCalls).to.equal(2);
    expect(restarts).to.include('gone');
    expect(events).to.deep.equal(['add:a', 'add:b', 'delete:b', 'update:a', 'add:c']);
    informer.stop();
  });

  it('restarts after errors with backoff, a silent stream, and a failing list; a throwing handler breaks nothing', async () => {
    const client = new ScriptedClient();
    client.lists = [new KubeApiError(0, 'connection refused'), [obj('a', '1')]];
    const restarts: string[] = [];
    const { informer, events } = informerOn(client, restarts);
    informer.on(() => {
      throw new Error('handler bug');
    });
    informer.start();
    await until('list retried and watch open', () => client.watches.length === 1);
    expect(restarts).to.include('error');
    client.watches[0]?.onDone(new WatchIdleError(60_000));
    await until('reopened after silence', () => client.watches.length === 2);
    expect(restarts).to.include('silent');
    client.watches[1]?.onDone(new KubeApiError(0, 'ECONNRESET'));
    await until('reopened after an error', () => client.watches.length === 3);
    client.watches[2]?.onEvent('ADDED', obj('b', '9'));
    expect(events).to.deep.equal(['add:a', 'add:b']);
    informer.stop();
  });

  it('relists periodically while the watch is healthy, and delivers what the watch missed as events', async () => {
    const client = new ScriptedClient();
    client.lists = [
      [obj('a', '1'), obj('b', '1')],
      // What the API server holds at the relist: a changed, b deleted and c created without a watch event.
      [obj('a', '5'), obj('c', '5')],
      [obj('a', '5'), obj('c', '5')],
    ];
    const restarts: string[] = [];
    const { informer, events } = informerOn(client, restarts, 100);
    informer.start();
    await until('first watch open', () => client.watches.length === 1);
    expect(events).to.deep.equal(['add:a', 'add:b']);
    await until('a relist and a new watch', () => client.listCalls >= 2 && client.watches.length >= 2);
    expect(restarts[0], 'the only restart is the periodic relist').to.equal('relist');
    expect(events).to.deep.equal(['add:a', 'add:b', 'delete:b', 'update:a', 'add:c']);
    expect(informer.list().map((o) => o.metadata.name)).to.have.members(['a', 'c']);
    expect(client.watches[1]?.query, 'watches from the relist').to.include({ resourceVersion: '102' });
    await until('relists again on the interval', () => client.listCalls >= 3);
    expect(events, 'an unchanged relist emits nothing').to.have.length(5);
    informer.stop();
  });
});
