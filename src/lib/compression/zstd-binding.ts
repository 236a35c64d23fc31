/**
 * The zstd-napi native binding, loaded once. We drive its streaming contexts directly instead of
 * the package's DecompressStream: that Transform pushes everything one input chunk decompresses to
 * in a single synchronous loop, so a small chunk of a decompression bomb would allocate its whole
 * output before anyone could count it. The contexts let us stop after each bounded output buffer.
 * Checked against zstd-napi 0.0.13 (binding.js is its documented low-level entry point).
 */
import { createRequire } from 'node:module';

type Binding = typeof import('zstd-napi/binding.js');

const require = createRequire(import.meta.url);

export const zstdBinding: Binding = require('zstd-napi/binding.js') as Binding;
