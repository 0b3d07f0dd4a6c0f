import { expect } from 'chai';

import { LruCache } from '../../../src/image/registry/lru.ts';
import { Semaphore } from '../../../src/image/registry/semaphore.ts';

describe('registry: LRU cache', () => {
  it('evicts the least recently used entry beyond the entry bound', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    expect(cache.get('a')).to.equal(1); // a is now the most recent
    cache.set('c', 3);
    expect([cache.get('a'), cache.get('b'), cache.get('c'), cache.size]).to.deep.equal([1, undefined, 3, 2]);
  });

  it('evicts by weight, refuses an entry heavier than the whole cache, and keeps weights right on replace', () => {
    const cache = new LruCache<string, string>(100, 10);
    cache.set('a', 'x', 4);
    cache.set('b', 'y', 4);
    cache.set('a', 'x2', 5); // replaces a: weight 4 + 5 fits
    expect([cache.get('a'), cache.get('b')]).to.deep.equal(['x2', 'y']);
    cache.set('c', 'z', 3); // 12 > 10: the least recent (a, after the get of b) goes
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).to.deep.equal([undefined, 'y', 'z']);
    cache.set('huge', 'h', 11);
    expect([cache.get('huge'), cache.size]).to.deep.equal([undefined, 2]);
    cache.delete('b');
    expect(cache.size).to.equal(1);
  });
});

describe('registry: semaphore', () => {
  it('admits up to the limit, hands slots over in arrival order, and ignores double release', async () => {
    const semaphore = new Semaphore(2);
    const order: string[] = [];
    const first = await semaphore.acquire();
    const second = await semaphore.acquire();
    const third = semaphore.acquire().then((release) => (order.push('third'), release));
    const fourth = semaphore.acquire().then((release) => (order.push('fourth'), release));
    await Promise.resolve();
    expect(order).to.deep.equal([]);
    first();
    first(); // a second release must not free another slot
    const releaseThird = await third;
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).to.deep.equal(['third']);
    second();
    (await fourth)();
    releaseThird();
    expect(order).to.deep.equal(['third', 'fourth']);
  });

  it('stops waiting when the signal aborts', async () => {
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const controller = new AbortController();
    const waiting = semaphore.acquire(controller.signal);
    controller.abort(new Error('stop'));
    await waiting.then(
      () => expect.fail('should not get a slot'),
      (err: Error) => expect(err.message).to.equal('stop'),
    );
    held();
    (await semaphore.acquire())();
  });
});
