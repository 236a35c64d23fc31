/**
 * The message-size limits of the REAPI wire, in one place for clients, servers and the scheduler.
 * gRPC's default (and Bazel's) largest message is 4 MiB; batch requests and responses must carry
 * their blobs plus framing within it.
 */

/** Largest gRPC message bzutil sends or accepts by default. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * The total blob bytes of one BatchUpdateBlobs/BatchReadBlobs: what servers advertise in
 * CacheCapabilities.max_batch_total_size_bytes and what clients use when a server advertises none.
 * 256 KiB below the message limit leaves room for the per-entry digests, statuses and framing.
 */
export const MAX_BATCH_TOTAL_SIZE_BYTES = MAX_MESSAGE_BYTES - 256 * 1024;

/** Digests per FindMissingBlobs request (~80 bytes each, far under the message limit). */
export const FIND_MISSING_BATCH_DIGESTS = 10_000;

/**
 * Most chunks, at the average chunk size, that SplitBlob/SpliceBlob are used for: a chunk digest costs
 * up to ~90 bytes in a SplitBlobResponse or SpliceBlobRequest, which must stay under the message
 * limit even when chunks come out at half the average. 20k chunks of 512 KiB is 10 GiB; larger blobs
 * move whole.
 */
export const MAX_SPLICE_EXPECTED_CHUNKS = 20_000;
