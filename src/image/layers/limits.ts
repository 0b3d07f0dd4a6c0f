/**
 * Bounds on what one image may make us read, so a hostile or broken image costs a clear LIMIT_EXCEEDED error instead
 * of unbounded time or memory. The defaults leave room for real driver images (an NVIDIA module is ~100 MB, a
 * layer of a few GB is normal) while stopping decompression bombs and tar archives of millions of empty entries.
 */
export interface LayerLimits {
  /** Uncompressed tar bytes read from one layer. */
  readonly maxLayerBytes: number;
  /** Tar entries in one layer. */
  readonly maxEntriesPerLayer: number;
  /** Uncompressed / stored bytes of a layer, enforced once `ratioCheckAfterBytes` have been decompressed. */
  readonly maxCompressionRatio: number;
  readonly ratioCheckAfterBytes: number;
  /** Size of one file whose content is read (a module, modules.dep, a release file). */
  readonly maxFileBytes: number;
  /** Total file content one walk may hold in memory. */
  readonly maxCapturedBytes: number;
  /** Symbolic links followed while resolving one path (Linux's MAXSYMLINKS is 40). */
  readonly maxLinkDepth: number;
}

export const DEFAULT_LAYER_LIMITS: LayerLimits = {
  maxLayerBytes: 16 * 1024 ** 3,
  maxEntriesPerLayer: 1_000_000,
  maxCompressionRatio: 250,
  ratioCheckAfterBytes: 64 * 1024 ** 2,
  maxFileBytes: 512 * 1024 ** 2,
  maxCapturedBytes: 1024 ** 3,
  maxLinkDepth: 40,
};
