import { RE2JS } from 're2js';

/**
 * Kernel-mapping regexps, evaluated the way KMM evaluates them: Go's RE2 syntax, unanchored (`regexp.MatchString`
 * finds a match anywhere, so users write `^...$`), and in linear time. re2js is a port of RE2/J: the same syntax
 * as Go's regexp package (no lookaround, no backreferences) and an automaton instead of backtracking, so a pattern
 * like `(a+)+$` cannot stall the webhook. Its syntax errors use Go's wording ("error parsing regexp: ...").
 */

export type CompiledRegexp =
  { readonly ok: true; readonly regexp: RE2JS } | { readonly ok: false; readonly message: string };

/** Compiles once per distinct pattern, keeping at most `capacity` patterns (least recently used evicted). */
export class RegexpCache {
  readonly #capacity: number;
  readonly #entries = new Map<string, CompiledRegexp>();

  constructor(capacity = 1024) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('RegexpCache capacity must be >= 1');
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#entries.size;
  }

  compile(pattern: string): CompiledRegexp {
    const cached = this.#entries.get(pattern);
    if (cached !== undefined) {
      // Re-insert to mark as most recently used (Map keeps insertion order).
      this.#entries.delete(pattern);
      this.#entries.set(pattern, cached);
      return cached;
    }
    const compiled = compileRe2(pattern);
    if (this.#entries.size >= this.#capacity) {
      const oldest = this.#entries.keys().next();
      if (oldest.done !== true) this.#entries.delete(oldest.value);
    }
    this.#entries.set(pattern, compiled);
    return compiled;
  }
}

function compileRe2(pattern: string): CompiledRegexp {
  try {
    return { ok: true, regexp: RE2JS.compile(pattern) };
  } catch (error) {
    return { ok: false, message: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Go's `regexp.MatchString`: true if the pattern matches any substring of `text`. `test` asks for no captures,
 * which lets re2js use its DFA (about 4x faster than `matcher().find()` on kernel strings).
 */
export function matchesUnanchored(regexp: RE2JS, text: string): boolean {
  return regexp.test(text);
}
