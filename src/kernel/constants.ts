/**
 * modprobe's `-d` directory when a Module leaves `modprobe.dirName` unset (KMM's default). It lives here, in a file
 * with no imports, rather than in src/api/module.ts (which re-exports it for the CRD default) so that the image
 * path, which only needs this string, does not load @sinclair/typebox (about 6 MiB of RSS, 200 modules).
 */
export const DEFAULT_MODPROBE_DIR = '/opt';
