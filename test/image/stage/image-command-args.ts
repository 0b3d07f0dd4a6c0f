/** The `kmm-preflight image` command line the CLI suites run: `reference` checked for `kmm_ci_a` on `kernel`, JSON out. */
export function imageCommandArgs(reference: string, kernel: string, ...extra: string[]): string[] {
  return ['image', reference, '--kernel', kernel, '--module', 'kmm_ci_a', '-o', 'json', ...extra];
}
