/**
 * `WWW-Authenticate` parsing (RFC 9110 section 11.6.1). One header may carry several challenges
 * (`Basic realm="x", Bearer realm="y",service="z"`) and quoted values may contain commas and escaped quotes, so a
 * split on commas is not enough. Hand-written because it is ~50 lines and the npm parsers handle one challenge only.
 */

export interface Challenge {
  /** Lower case: `bearer`, `basic`. */
  readonly scheme: string;
  /** Parameter names in lower case. */
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;

export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let rest = header;
  let current: { scheme: string; params: Record<string, string> } | undefined;
  for (;;) {
    rest = rest.replace(/^[\s,]+/, '');
    if (rest === '') break;
    const name = TOKEN.exec(rest)?.[0];
    if (name === undefined) break; // not a token: the rest is malformed, keep what was understood
    rest = rest.slice(name.length);
    const afterSpaces = rest.replace(/^\s+/, '');
    if (current !== undefined && afterSpaces.startsWith('=') && !afterSpaces.startsWith('==')) {
      // `name=value`: a parameter of the current challenge.
      rest = afterSpaces.slice(1).replace(/^\s+/, '');
      const value = readValue(rest);
      current.params[name.toLowerCase()] = value.value;
      rest = value.rest;
      continue;
    }
    // A new challenge; token68 credentials (`Negotiate abc==`) are skipped, we do not use them.
    current = { scheme: name.toLowerCase(), params: {} };
    challenges.push(current);
    const token68 = /^\s+[A-Za-z0-9\-._~+/]+=*(?=\s*(,|$))/.exec(rest);
    if (token68) rest = rest.slice(token68[0].length);
  }
  return challenges;
}

function readValue(text: string): { value: string; rest: string } {
  if (!text.startsWith('"')) {
    const token = /^[^\s,]*/.exec(text)?.[0] ?? '';
    return { value: token, rest: text.slice(token.length) };
  }
  let value = '';
  for (let i = 1; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\' && i + 1 < text.length) {
      value += text[++i];
    } else if (ch === '"') {
      return { value, rest: text.slice(i + 1) };
    } else {
      value += ch;
    }
  }
  return { value, rest: '' }; // unterminated quote: take the rest as the value
}
