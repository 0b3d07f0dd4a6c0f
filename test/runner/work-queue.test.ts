import { expect } from 'chai';
import { backoffDelay, KeyedBackoff } from '../../src/platform/kube/backoff.ts';
import { WorkQueue, type Timers } from '../../src/runner/work-queue.ts';

/** Timers driven by hand: `advance(ms)` fires what falls due. */
class ManualTimers implements Timers {
  time = 0;
  #timers: { at: number; callback: () => void; id: number }[] = [];
  #next = 0;
  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.#next;
    this.#timers.push({ at: this.time + ms, callback, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }
  advance(ms: number): void {
    this.time += ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= this.time).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) return;
      this.#timers = this.#timers.filter((t) => t !== due);
      due.callback();
    }
  }
}

const policy = { baseMs: 100, maxMs: 1_000, jitter: 0 };

const PENDING = 'pending';
/** What a get() promise has settled to by now, or PENDING; the promise stays usable afterwards. */
async function state(promise: Promise<string | undefined>): Promise<string | undefined> {
  return Promise.race([promise, new Promise<string>((resolve) => setImmediate(() => resolve(PENDING)))]);
}

describe('runner: WorkQueue', () => {
  it('de-duplicates a key added many times: one reconcile', async () => {
    const queue = new WorkQueue(policy, new ManualTimers());
    for (let i = 0; i < 100; i += 1) queue.add('a');
    queue.add('b');
    expect(queue.length).to.equal(2);
    expect(await queue.get()).to.equal('a');
    expect(await queue.get()).to.equal('b');
    expect(await state(queue.get())).to.equal(PENDING);
  });

  it('hands a key to one worker at a time; added while processing, it comes back once after done()', async () => {
    const queue = new WorkQueue(policy, new ManualTimers());
    queue.add('a');
    const key = await queue.get();
    queue.add('a');
    queue.add('a');
    const next = queue.get();
    expect(await state(next), 'not while a is processed').to.equal(PENDING);
    queue.done(key ?? '');
    expect(await next).to.equal('a');
    queue.done('a');
    expect(await state(queue.get()), 'only once').to.equal(PENDING);
  });

  it('a waiting worker gets a key as soon as it is added', async () => {
    const queue = new WorkQueue(policy, new ManualTimers());
    const waiting = queue.get();
    queue.add('x');
    expect(await waiting).to.equal('x');
  });

  it('addAfter keeps the earliest time, and an immediate add clears the delay', async () => {
    const timers = new ManualTimers();
    const queue = new WorkQueue(policy, timers);
    queue.addAfter('a', 1_000);
    queue.addAfter('a', 200);
    queue.addAfter('a', 5_000);
    timers.advance(199);
    const first = queue.get();
    expect(await state(first)).to.equal(PENDING);
    timers.advance(1);
    expect(await first).to.equal('a');
    queue.done('a');
    timers.advance(10_000);
    const second = queue.get();
    expect(await state(second), 'the later delays were folded into the first').to.equal(PENDING);
    queue.addAfter('b', 1_000);
    queue.add('b');
    expect(await second).to.equal('b');
    queue.done('b');
    timers.advance(2_000);
    expect(await state(queue.get())).to.equal(PENDING);
  });

  it('rate-limited requeues back off exponentially per key until forgotten', async () => {
    const timers = new ManualTimers();
    const queue = new WorkQueue(policy, timers);
    const waitFor = async (ms: number): Promise<void> => {
      const next = queue.get();
      timers.advance(ms - 1);
      expect(await state(next), `not before ${ms} ms`).to.equal(PENDING);
      timers.advance(1);
      expect(await next).to.equal('a');
      queue.done('a');
    };
    queue.addRateLimited('a');
    await waitFor(100);
    queue.addRateLimited('a');
    await waitFor(200);
    expect(queue.failures('a')).to.equal(2);
    queue.forget('a');
    queue.addRateLimited('a');
    await waitFor(100);
  });

  it('shutDown releases waiting workers with undefined and refuses new keys', async () => {
    const queue = new WorkQueue(policy, new ManualTimers());
    const waiting = queue.get();
    queue.shutDown();
    expect(await waiting).to.equal(undefined);
    queue.add('a');
    expect(await queue.get()).to.equal(undefined);
  });
});

describe('runner: backoff', () => {
  it('doubles from the base up to the cap; jitter spreads within the fraction given', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n))).to.deep.equal([
      100, 200, 400, 800, 1000, 1000,
    ]);
    const jittered = { baseMs: 1000, maxMs: 1000, jitter: 0.5 };
    expect(backoffDelay(jittered, 0, () => 0)).to.equal(500);
    expect(backoffDelay(jittered, 0, () => 1)).to.equal(1000);
    expect(backoffDelay(policy, 1000), 'a huge attempt count stays at the cap').to.equal(1000);
  });

  it('counts attempts per key', () => {
    const backoff = new KeyedBackoff(policy);
    expect([backoff.next('a'), backoff.next('a'), backoff.next('b')]).to.deep.equal([100, 200, 100]);
    backoff.forget('a');
    expect(backoff.next('a')).to.equal(100);
  });
});
