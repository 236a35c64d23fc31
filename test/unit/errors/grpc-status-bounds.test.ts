import { describe, expect, it } from 'vitest';
import { fromGrpcError, MAX_STATUS_BYTES, STATUS_DETAILS_KEY, toGrpcStatus, truncateUtf8 } from '../../../src/lib/errors/grpc-status.js';
import { scrubPaths } from '../../../src/lib/errors/scrub-paths.js';
import { Code, StatusError, wrapStatus } from '../../../src/lib/errors/status-error.js';
import { rpc } from '../../../src/lib/proto/index.js';

function errnoError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: some failure, ${syscall} '${path}'`) as NodeJS.ErrnoException;
  Object.assign(err, { code, syscall, path });
  return err;
}

describe('toGrpcStatus', () => {
  it('keeps server paths out of the message and the details', () => {
    const fsErr = errnoError('ENAMETOOLONG', 'mkdir', '/var/cache/bzutil/cas/instances/' + 'x'.repeat(300));
    const status = toGrpcStatus(wrapStatus(fsErr, 'Failed to store blob'));
    expect(status.code).toBe(Code.INTERNAL);
    expect(status.details).toBe("Failed to store blob: ENAMETOOLONG: some failure, mkdir '<path>'");
    const bin = status.metadata!.get(STATUS_DETAILS_KEY)[0] as Buffer;
    expect(rpc.Status.decode(bin).message).not.toContain('/var/cache');
  });

  it('scrubs paths carried by the cause chain even in other message formats', () => {
    const fsErr = errnoError('EACCES', 'open', '/srv/secret/dir/file');
    const wrapped = new StatusError(Code.PERMISSION_DENIED, 'Cannot read /srv/secret/dir/file now', [], { cause: fsErr });
    expect(scrubPaths(wrapped.message, wrapped)).toBe('Cannot read <path> now');
  });

  it('caps grpc-message and grpc-status-details-bin at 4 KiB, keeping what fits', () => {
    const long = 'é'.repeat(10_000);
    const violations = Array.from({ length: 500 }, (_, i) => ({ field: `field_${i}_${long}`, description: long }));
    const status = toGrpcStatus(StatusError.invalidArgument(`Bad ${long}`, violations));
    expect(Buffer.byteLength(status.details)).toBeLessThanOrEqual(MAX_STATUS_BYTES);
    expect(status.details.endsWith('...')).toBe(true);
    const bin = status.metadata!.get(STATUS_DETAILS_KEY)[0] as Buffer;
    expect(bin.length).toBeLessThanOrEqual(MAX_STATUS_BYTES);
    // Some violations survive, shortened, so a client still learns which field was wrong.
    const decoded = fromGrpcError({ code: status.code, details: status.details, metadata: status.metadata });
    const kept = decoded.fieldViolations();
    expect(kept.length).toBeGreaterThan(0);
    expect(kept[0]!.field.startsWith('field_0_')).toBe(true);
  });

  it('trims MISSING violations to what fits, keeping the first ones', () => {
    const blobs = Array.from({ length: 1000 }, (_, i) => ({ hash: i.toString(16).padStart(64, '0'), sizeBytes: i }));
    const status = toGrpcStatus(StatusError.missingBlobs(blobs));
    const bin = status.metadata!.get(STATUS_DETAILS_KEY)[0] as Buffer;
    expect(bin.length).toBeLessThanOrEqual(MAX_STATUS_BYTES);
    const violations = fromGrpcError({ code: status.code, details: status.details, metadata: status.metadata }).preconditionViolations();
    expect(violations.length).toBeGreaterThan(10);
    expect(violations[0]!.subject).toBe(`blobs/${blobs[0]!.hash}/0`);
  });

  it('leaves short statuses whole', () => {
    const status = toGrpcStatus(StatusError.invalidArgument('Bad digest', [{ field: 'digest', description: 'Must be hex' }]));
    expect(status.details).toBe('Bad digest');
    const decoded = fromGrpcError({ code: status.code, details: status.details, metadata: status.metadata });
    expect(decoded.fieldViolations()).toEqual([expect.objectContaining({ field: 'digest', description: 'Must be hex' })]);
  });

  it('truncateUtf8 never splits a character', () => {
    const cut = truncateUtf8('aé'.repeat(5000), 101);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(101);
    expect(cut).not.toContain('\uFFFD');
  });
});
