import { expect } from 'chai';
import { matchesUnanchored, RegexpCache } from '../../src/kernel/regexp.ts';

function matches(pattern: string, text: string): boolean {
  const compiled = new RegexpCache().compile(pattern);
  if (!compiled.ok) throw new Error(compiled.message);
  return matchesUnanchored(compiled.regexp, text);
}

describe('kernel/regexp (RE2, as Go regexp.MatchString)', () => {
  const kernel = '5.14.0-284.30.1.el9_2.x86_64';

  it('is unanchored: a pattern matches a substring (KMM trap: "el9" matches any el9 kernel)', () => {
    expect(matches('el9', kernel)).to.equal(true);
    expect(matches('284', kernel)).to.equal(true);
    expect(matches('5\\.14', `4.18.0-5.14.el8.x86_64`)).to.equal(true);
    expect(matches('^5\\.14', `4.18.0-5.14.el8.x86_64`)).to.equal(false);
  });

  it('anchors with ^ and $ only when written', () => {
    expect(matches('^5\\.14\\.0-284.*\\.x86_64$', kernel)).to.equal(true);
    expect(matches('^5\\.14\\.0-284.*\\.aarch64$', kernel)).to.equal(false);
    expect(matches('^.+$', kernel)).to.equal(true);
    expect(matches('x86_64$', `${kernel}+debug`)).to.equal(false);
  });

  it('accepts Go syntax: named groups (?P<n>) and (?<n>), flags, POSIX and Unicode classes', () => {
    expect(matches('^(?P<major>\\d+)\\.(?<minor>\\d+)', kernel)).to.equal(true);
    expect(matches('(?i)EL9', kernel)).to.equal(true);
    expect(matches('[[:digit:]]+\\.el9', kernel)).to.equal(true);
    expect(matches('\\pL+9', kernel)).to.equal(true);
  });

  it('rejects what Go rejects, with Go-worded errors: lookaround, backreferences, \\Z, bad repeats', () => {
    const cache = new RegexpCache();
    for (const [pattern, message] of [
      ['(', 'missing closing )'],
      ['(?=x)', 'invalid or unsupported Perl syntax'],
      ['(a)\\1', 'invalid escape sequence'],
      ['x\\Z', 'invalid escape sequence'],
      ['a**', 'invalid nested repetition operator'],
      ['a{1001}', 'invalid repeat count'],
    ] as const) {
      const compiled = cache.compile(pattern);
      expect(compiled.ok, pattern).to.equal(false);
      if (!compiled.ok) expect(compiled.message).to.contain('error parsing regexp').and.contain(message);
    }
  });

  it('runs a catastrophically backtracking pattern in linear time', () => {
    // A backtracking engine needs ~2^n steps for (a+)+$ on "aaa…!"; JavaScript's RegExp does not return for
    // n = 40. RE2 scans once: this finishes at n = 100 000 well inside the test timeout.
    const text = `${'a'.repeat(100_000)}!`;
    expect(matches('(a+)+$', text)).to.equal(false);
    expect(matches('(x+x+)+y', 'x'.repeat(100_000))).to.equal(false);
    expect(matches('(a|aa)+$', `${'a'.repeat(100_000)}`)).to.equal(true);
  });

  it('caches compiled patterns (and compile errors) and evicts the least recently used beyond capacity', () => {
    const cache = new RegexpCache(2);
    const first = cache.compile('a');
    expect(cache.compile('a')).to.equal(first);
    const broken = cache.compile('(');
    expect(cache.compile('(')).to.equal(broken);
    expect(cache.size).to.equal(2);
    cache.compile('a'); // now '(' is the least recently used
    cache.compile('b');
    expect(cache.size).to.equal(2);
    expect(cache.compile('a')).to.equal(first);
    expect(cache.compile('(')).not.to.equal(broken);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new RegexpCache(0)).to.throw(RangeError);
  });
});
