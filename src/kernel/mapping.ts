import type { KernelMapping } from '../api/module.ts';
import { failure } from './errors.ts';
import type { KernelResult } from './errors.ts';
import { matchesUnanchored } from './regexp.ts';
import type { RegexpCache } from './regexp.ts';

export interface FoundMapping {
  readonly index: number;
  readonly mapping: KernelMapping;
}

export function noMappingMessage(kernel: string): string {
  return `no kernel mapping matches ${kernel}`;
}

/**
 * KMM's lookup (kmm-anchor.md 1.5): in list order, the first match wins. A non-empty `literal` matches by exact
 * equality; otherwise a non-empty `regexp` is searched for anywhere in the kernel (unanchored, RE2). A regexp that
 * does not compile, reached before a match, ends the lookup with INVALID_REGEXP, as in KMM.
 */
export function findKernelMapping(
  mappings: readonly KernelMapping[],
  kernel: string,
  regexps: RegexpCache,
): KernelResult<FoundMapping> {
  for (const [index, mapping] of mappings.entries()) {
    if (mapping.literal !== undefined && mapping.literal !== '' && mapping.literal === kernel) {
      return { ok: true, data: { index, mapping } };
    }
    if (mapping.regexp === undefined || mapping.regexp === '') continue;
    const compiled = regexps.compile(mapping.regexp);
    if (!compiled.ok) {
      return failure(
        'INVALID_REGEXP',
        `kernelMappings[${index}].regexp ${JSON.stringify(mapping.regexp)} is not a valid RE2 regexp: ${compiled.message}`,
      );
    }
    if (matchesUnanchored(compiled.regexp, kernel)) return { ok: true, data: { index, mapping } };
  }
  return failure('NO_MAPPING', noMappingMessage(kernel));
}
