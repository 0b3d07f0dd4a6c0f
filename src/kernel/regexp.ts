import { RE2JS } from 're2js';
import { errorMessage } from '../platform/errors.ts';

/**
 * Kernel-mapping regexps, evaluated the way KMM evaluates them: Go's RE2 syntax, unanchored (`regexp.MatchString`
 * finds a match anywhere, so users write `^...$`), and in linear time. re2js is a port of RE2/J: the same syntax
 * as Go's regexp package (no lookaround, no backreferences) and an automaton instead of backtracking, so a pattern
 * like `(a+)+$` cannot stall the webhook. Its syntax errors use Go's wording ("error parsing regexp: ...").
 */

export type CompiledRegexp =
  { readonly ok: true; readonly regexp: RE2JS } | { readonly ok: false; readonly message: string };

interface CacheEntry {
  readonly compiled: CompiledRegexp;
  /** Tick of the last compile() that returned this entry. */
  lastUsed: number;
}

/**
 * Compiles once per distinct pattern, keeping at most `capacity` patterns (least recently used evicted). A hit
 * only stamps its entry: the webhook hits every mapping's pattern on every request, and re-inserting into the Map
 * to keep it in recency order cost more than the lookup. The O(capacity) search for the oldest entry happens only
 * when a new pattern arrives at a full cache, next to an RE2 compile that costs far more.
 */
export class RegexpCache {
  readonly #capacity: number;
  readonly #entries = new Map<string, CacheEntry>();
  #clock = 0;

  constructor(capacity = 1024) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('RegexpCache capacity must be >= 1');
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#entries.size;
  }

  compile(pattern: string): CompiledRegexp {
    this.#clock += 1;
    const cached = this.#entries.get(pattern);
    if (cached !== undefined) {
      cached.lastUsed = this.#clock;
      return cached.compiled;
    }
    const compiled = compileRe2(pattern);
    if (this.#entries.size >= this.#capacity) this.#evictLeastRecentlyUsed();
    this.#entries.set(pattern, { compiled, lastUsed: this.#clock });
    return compiled;
  }

  #evictLeastRecentlyUsed(): void {
    let oldest: string | undefined;
    let oldestUse = Infinity;
    for (const [pattern, entry] of this.#entries) {
      if (entry.lastUsed < oldestUse) {
        oldest = pattern;
        oldestUse = entry.lastUsed;
      }
    }
    if (oldest !== undefined) this.#entries.delete(oldest);
  }
}

function compileRe2(pattern: string): CompiledRegexp {
  try {
    return { ok: true, regexp: RE2JS.compile(pattern) };
  } catch (error) {
    return { ok: false, message: errorMessage(error) };
  }
}

/**
 * Go's `regexp.MatchString`: true if the pattern matches any substring of `text`. `test` asks for no captures,
 * which lets re2js use its DFA (about 4x faster than `matcher().find()` on kernel strings).
 */
export function matchesUnanchored(regexp: RE2JS, text: string): boolean {
  return regexp.test(text);
}
