import { failure } from './errors.ts';
import type { KernelResult } from './errors.ts';
import type { KernelVersion } from './version.ts';

/**
 * Variable substitution as KMM does it (kmm-anchor.md 1.6): bash-like `$VAR` and `${VAR}` from a fixed set of
 * variables, anything else (including `KERNEL_XY`, which KMM does not define) empty. KMM uses a8m/envsubst with no
 * restrictions; this implements the same observable rules for what it supports:
 * - `$$` is a literal `$`;
 * - `$NAME` where NAME is letters, digits and `_` (a lone `_` is literal text);
 * - `${NAME}`, and `${NAME-word}`, `${NAME:-word}`, `${NAME=word}`, `${NAME:=word}`, `${NAME+word}`,
 *   `${NAME:+word}` with bash's meaning (`:` also treats an empty value as unset); `word` may reference variables;
 * - `$` before anything else is literal; an unclosed `${` is an error ("closing brace expected").
 */

export type Variables = Readonly<Record<string, string>>;

/** KERNEL_FULL_VERSION, KERNEL_VERSION, KERNEL_XYZ, KERNEL_X, KERNEL_Y, KERNEL_Z, from the normalised kernel. */
export function kernelVariables(kernel: KernelVersion): Variables {
  return {
    KERNEL_FULL_VERSION: kernel.normalized,
    KERNEL_VERSION: kernel.normalized,
    KERNEL_XYZ: kernel.xyz,
    KERNEL_X: kernel.x,
    KERNEL_Y: kernel.y,
    KERNEL_Z: kernel.z,
  };
}

/** The variables of `containerImage`: the kernel ones plus MOD_NAME and MOD_NAMESPACE. */
export function containerImageVariables(kernel: KernelVersion, name: string, namespace: string): Variables {
  return { ...kernelVariables(kernel), MOD_NAME: name, MOD_NAMESPACE: namespace };
}

const NAME_CHAR = /[\p{L}\p{Nd}_]/u;
const OPERATORS = [':-', ':=', ':+', '-', '=', '+'] as const;

export function substitute(template: string, variables: Variables): KernelResult<string> {
  let output = '';
  let i = 0;
  while (i < template.length) {
    // Copy the text up to the next `$` in one piece.
    const dollar = template.indexOf('$', i);
    if (dollar === -1) return { ok: true, data: output + template.slice(i) };
    output += template.slice(i, dollar);
    i = dollar;
    const next = template[i + 1];
    if (next === '$') {
      output += '$';
      i += 2;
    } else if (next === '{') {
      const close = template.indexOf('}', i + 2);
      if (close === -1 || hasLineBreak(template, i + 2, close)) {
        return failure('INVALID_SUBSTITUTION', `cannot substitute "${template}": closing brace expected`);
      }
      const expanded = expandBraced(template.slice(i + 2, close), variables);
      if (!expanded.ok)
        return failure('INVALID_SUBSTITUTION', `cannot substitute "${template}": ${expanded.error.message}`);
      output += expanded.data;
      i = close + 1;
    } else {
      const name = readName(template, i + 1);
      if (name === '' || name === '_') {
        output += '$';
        i += 1;
      } else {
        output += variables[name] ?? '';
        i += 1 + name.length;
      }
    }
  }
  return { ok: true, data: output };
}

function hasLineBreak(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x0a || code === 0x0d) return true;
  }
  return false;
}

/** A character of a variable name; ASCII (almost every name) without the Unicode regexp. */
function isNameChar(text: string, index: number): boolean {
  const code = text.charCodeAt(index);
  if (code < 0x80) {
    return (
      (code >= 0x61 && code <= 0x7a) ||
      (code >= 0x41 && code <= 0x5a) ||
      (code >= 0x30 && code <= 0x39) ||
      code === 0x5f
    );
  }
  return NAME_CHAR.test(text[index] ?? '');
}

function readName(text: string, start: number): string {
  let end = start;
  while (end < text.length && isNameChar(text, end)) end += 1;
  return text.slice(start, end);
}

/** Expands the inside of `${...}`. */
function expandBraced(body: string, variables: Variables): KernelResult<string> {
  const name = readName(body, 0);
  if (name === '' || name === '_') return { ok: true, data: `\${${body}}` };
  const rest = body.slice(name.length);
  const value = Object.hasOwn(variables, name) ? variables[name] : undefined;
  if (rest === '') return { ok: true, data: value ?? '' };
  const operator = OPERATORS.find((candidate) => rest.startsWith(candidate));
  if (operator === undefined) {
    return failure('INVALID_SUBSTITUTION', `unsupported expansion "\${${body}}"`);
  }
  const word = rest.slice(operator.length);
  const unset = operator.startsWith(':') ? value === undefined || value === '' : value === undefined;
  const useWord = operator.endsWith('+') ? !unset : unset;
  if (!useWord) return { ok: true, data: operator.endsWith('+') ? '' : (value ?? '') };
  return substitute(word, variables);
}
