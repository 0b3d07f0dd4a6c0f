import { expect } from 'chai';
import { fixture, startTestWebhook, type ReviewBody, type TestWebhook } from './harness.ts';
import { KERNEL_427, module, preflight } from './objects.ts';
import { OperationLabelValues, ResourceLabelValues, ReviewOutcomes } from '../../webhook/metrics.ts';

// Thousands of mutated and random bodies: every one must get 200, 400 or 413 (never a 5xx, a hang or a crash),
// and every 200 must echo the uid of a request that had one. Seeded, so a failure can be replayed.

const BODIES = 3000;
const SEED = Number(process.env['FUZZ_SEED'] ?? 20261124);

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Fuzzer {
  readonly #random: () => number;
  constructor(seed: number) {
    this.#random = prng(seed);
  }

  int(max: number): number {
    return Math.floor(this.#random() * max);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  string(): string {
    const alphabets = [
      'abc',
      '^$.*+?()[]{}|\\',
      '${KERNEL_XYZ}',
      ':@/',
      '\u0000\u00e9\ud83d\ude00',
      ' \t\n',
      '5.14.0-',
    ];
    let text = '';
    const length = this.int(40);
    for (let i = 0; i < length; i++) text += this.pick(this.pick(alphabets).split(''));
    return text;
  }

  value(depth = 0): unknown {
    const kind = this.int(depth > 4 ? 5 : 8);
    switch (kind) {
      case 0:
        return null;
      case 1:
        return this.#random() < 0.5;
      case 2:
        return this.pick([0, -1, 1e308, 3.5, Number.MAX_SAFE_INTEGER]);
      case 3:
      case 4:
        return this.string();
      case 5:
        return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
      default: {
        const object: Record<string, unknown> = {};
        for (let i = this.int(4); i > 0; i--)
          object[this.pick(['spec', 'metadata', 'kernelMappings', 'uid', this.string()])] = this.value(
            depth + 1,
          );
        return object;
      }
    }
  }

  /** Replaces or deletes a field somewhere inside `root`. */
  mutate(root: unknown): void {
    let node = root;
    for (let depth = 0; depth < 8; depth++) {
      if (typeof node !== 'object' || node === null) return;
      const keys = Object.keys(node);
      if (keys.length === 0) return;
      const key = this.pick(keys);
      const child = (node as Record<string, unknown>)[key];
      if (typeof child !== 'object' || child === null || this.#random() < 0.3) {
        if (this.#random() < 0.3 && !Array.isArray(node)) delete (node as Record<string, unknown>)[key];
        else (node as Record<string, unknown>)[key] = this.value();
        return;
      }
      node = child;
    }
  }

  bytes(length: number): Buffer {
    return Buffer.from(Array.from({ length }, () => this.int(256)));
  }
}

describe('webhook fuzz: mutated and random bodies', function () {
  this.timeout(120_000);
  let webhook: TestWebhook;
  before(async () => {
    webhook = await startTestWebhook();
    webhook.cache.preflights = [
      preflight('active', { kernel: KERNEL_427, complete: false }),
      preflight('pending', { releaseImage: 'quay.io/x/release:4.16' }),
    ];
    webhook.cache.modules = [
      module('ns', 'signs', {
        build: { dockerfileConfigMap: { name: 'd' } },
        sign: { keySecret: { name: 'k' }, certSecret: { name: 'c' } },
        kernelMappings: [{ regexp: '^.+$', containerImage: 'quay.io/a/b:${KERNEL_XYZ}' }],
      }),
    ];
  });
  after(async () => webhook.close());

  it(`answers ${BODIES} bodies with 200, 400 or 413 and keeps serving (seed ${SEED})`, async () => {
    const fuzz = new Fuzzer(SEED);
    const seeds: ReviewBody[] = [await fixture('module-update.json'), await fixture('preflight-create.json')];
    const statuses = new Map<number, number>();
    const failures: string[] = [];

    const makeBody = (i: number): { payload: string | Buffer; uid?: string } => {
      const shape = i % 10;
      if (shape === 0) return { payload: fuzz.bytes(fuzz.int(2000)) };
      if (shape === 1) return { payload: JSON.stringify(fuzz.value()) };
      const review = structuredClone(fuzz.pick(seeds));
      review.request.uid = `fuzz-${i}`;
      // Mostly inside the objects, so most bodies stay AdmissionReviews and exercise the rules.
      const target: unknown =
        shape === 2
          ? review
          : shape === 3
            ? review.request
            : (review.request.object ?? review.request.oldObject);
      for (let n = 1 + fuzz.int(5); n > 0; n--) fuzz.mutate(target);
      if (shape === 3) review.request.operation = fuzz.pick(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);
      if (shape === 4) {
        const object: unknown = review.request.object;
        review.request.object = review.request.oldObject as unknown;
        review.request.oldObject = object;
      }
      const text = JSON.stringify(review);
      if (shape === 5) return { payload: text.slice(0, fuzz.int(text.length)) };
      if (shape === 6) {
        const bytes = Buffer.from(text);
        for (let flips = 1 + fuzz.int(4); flips > 0; flips--) bytes[fuzz.int(bytes.length)] = fuzz.int(256);
        return { payload: bytes };
      }
      const uid = (JSON.parse(text) as { request?: { uid?: unknown } }).request?.uid;
      return typeof uid === 'string' ? { payload: text, uid } : { payload: text };
    };

    const special: (string | Buffer)[] = [
      '['.repeat(100_000) + ']'.repeat(100_000),
      `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`,
      Buffer.alloc(7 * 1024 * 1024 + 10, 0x7b),
      JSON.stringify({
        ...seeds[0],
        request: { ...seeds[0]?.request, object: { spec: 'x'.repeat(5_000_000) } },
      }),
    ];

    let next = 0;
    const total = BODIES + special.length;
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        const { payload, uid } =
          i < BODIES ? makeBody(i) : { payload: special[i - BODIES] as string | Buffer, uid: undefined };
        const { status, body } = await webhook.post(payload).catch((err: unknown) => {
          failures.push(`#${i}: request failed: ${String(err)}`);
          return { status: -1, body: undefined };
        });
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (![200, 400, 413].includes(status)) failures.push(`#${i}: status ${status}`);
        if (status === 200 && uid !== undefined && body?.response.uid !== uid)
          failures.push(`#${i}: uid not echoed`);
        if (status === 200 && typeof body?.response.allowed !== 'boolean') failures.push(`#${i}: no allowed`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, () => worker()));

    console.log(`      statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(failures.slice(0, 10)).to.deep.equal([]);
    expect([...statuses.values()].reduce((a, b) => a + b, 0)).to.equal(total);
    // Every kind of answer occurred, so the fuzzer reached the rules and not only the parser.
    expect(statuses.get(200)).to.be.greaterThan(BODIES / 3);
    expect(statuses.get(400)).to.be.greaterThan(100);
    expect(statuses.get(413)).to.be.at.least(1);
    const healthy = await webhook.post(await fixture('module-update.json'));
    expect(healthy.status).to.equal(200);
    // The rules decided every review (none threw into the failure mode), and no fuzzed resource or operation name
    // became a label value: every series uses the fixed label sets.
    const series = (await webhook.registry.getSingleMetric('kmm_preflight_webhook_requests_total')?.get())
      ?.values;
    expect(series, 'the request counter').to.not.equal(undefined);
    expect(series!.filter((s) => s.labels['verdict'] === 'error').map((s) => s.labels)).to.deep.equal([]);
    for (const { labels } of series!) {
      expect(ResourceLabelValues).to.include(labels['resource']);
      expect(OperationLabelValues).to.include(labels['operation']);
      expect(ReviewOutcomes).to.include(labels['verdict']);
    }
  });
});
