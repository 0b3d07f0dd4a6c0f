import { expect } from 'chai';
import { containerImageVariables, kernelVariables, substitute } from '../../src/kernel/substitute.ts';
import { parseKernelVersion } from '../../src/kernel/version.ts';
import type { KernelVersion } from '../../src/kernel/version.ts';

function kernel(text: string): KernelVersion {
  const parsed = parseKernelVersion(text);
  if (!parsed.ok) throw parsed.error;
  return parsed.data;
}

function expand(
  template: string,
  variables = containerImageVariables(kernel('5.14.0-284.el9.x86_64'), 'mod', 'ns'),
): string {
  const result = substitute(template, variables);
  if (!result.ok) throw result.error;
  return result.data;
}

describe('kernel/substitute (KMM variables, envsubst rules)', () => {
  it('defines the KMM kernel variables from the normalised kernel', () => {
    expect(kernelVariables(kernel('5.14.0-284.el9.x86_64+rt'))).to.deep.equal({
      KERNEL_FULL_VERSION: '5.14.0-284.el9.x86_64_rt',
      KERNEL_VERSION: '5.14.0-284.el9.x86_64_rt',
      KERNEL_XYZ: '5.14.0',
      KERNEL_X: '5',
      KERNEL_Y: '14',
      KERNEL_Z: '0',
    });
  });

  const cases: [string, string][] = [
    ['quay.io/org/$MOD_NAME:$KERNEL_FULL_VERSION', 'quay.io/org/mod:5.14.0-284.el9.x86_64'],
    ['quay.io/${MOD_NAMESPACE}/${MOD_NAME}:${KERNEL_VERSION}', 'quay.io/ns/mod:5.14.0-284.el9.x86_64'],
    ['img:${KERNEL_XYZ}-${KERNEL_X}.${KERNEL_Y}.${KERNEL_Z}', 'img:5.14.0-5.14.0'],
    // KMM trap: KERNEL_XY is not a KMM variable, so it is empty (not 5.14).
    ['img:${KERNEL_XY}', 'img:'],
    ['img:$KERNEL_XY-x', 'img:-x'],
    ['img:${UNDEFINED}tag', 'img:tag'],
    ['$$MOD_NAME and $${MOD_NAME}', '$MOD_NAME and ${MOD_NAME}'],
    ['$$$MOD_NAME', '$mod'],
    ['a$ b $_ c ${_} $.', 'a$ b $_ c ${_} $.'],
    ['trailing $', 'trailing $'],
    ['${UNSET-default}|${UNSET:-default}|${MOD_NAME-default}', 'default|default|mod'],
    ['${UNSET=v}|${MOD_NAME:=v}', 'v|mod'],
    ['${MOD_NAME+set}|${MOD_NAME:+set}|${UNSET+set}|${UNSET:+set}', 'set|set||'],
    ['${UNSET:-$MOD_NAME}', 'mod'],
    ['no variables at all', 'no variables at all'],
  ];
  for (const [template, expected] of cases) {
    it(`${template} → ${JSON.stringify(expected)}`, () => {
      expect(expand(template)).to.equal(expected);
    });
  }

  it('distinguishes unset from empty with and without ":"', () => {
    const variables = { EMPTY: '' };
    expect(expand('${EMPTY-d}', variables)).to.equal('');
    expect(expand('${EMPTY:-d}', variables)).to.equal('d');
    expect(expand('${EMPTY+a}', variables)).to.equal('a');
    expect(expand('${EMPTY:+a}', variables)).to.equal('');
  });

  it('MOD_NAME and MOD_NAMESPACE exist only with the containerImage variables', () => {
    expect(expand('${MOD_NAME}/${KERNEL_X}', kernelVariables(kernel('6.1.0')))).to.equal('/6');
  });

  it('an unclosed ${ is an INVALID_SUBSTITUTION error, as is an unsupported expansion', () => {
    for (const template of ['img:${KERNEL_X', 'img:${KERNEL_X\n}', 'img:${KERNEL_X/a/b}']) {
      const result = substitute(template, {});
      expect(result.ok, template).to.equal(false);
      if (!result.ok) {
        expect(result.error.code).to.equal('INVALID_SUBSTITUTION');
        expect(result.error.message).to.contain(template);
      }
    }
  });
});
