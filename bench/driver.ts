/**
 * The client side of every measurement, run in its own process by the benchmark runner:
 * `node dist-bench/bench/driver.js <job> '<json params>'` prints the job's JSON result as its last
 * stdout line and exits 0, or prints the error on stderr and exits 1.
 */
import { byteStreamDownloadJob, byteStreamUploadJob, findMissingJob, populateCasJob, shardedBlobsJob, smallBlobsJob } from './jobs/cas-jobs.js';
import { compressedTransferJob, hashRateJob } from './jobs/compression-jobs.js';
import { spliceReuploadJob } from './jobs/splice-jobs.js';
import { noopActionsJob } from './jobs/execution-jobs.js';
import { queueScaleJob } from './jobs/queue-jobs.js';
import { diskWriteJob, rawDownloadJob, rawUnaryLatencyJob, rawUnaryRateJob, rawUploadJob, sha256Job, spawnTrueJob } from './jobs/raw-jobs.js';

// Each job validates its own parameters through its types; the runner is the only caller.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const jobs: Record<string, (params: any) => Promise<unknown>> = {
  'sha256': sha256Job,
  'raw-upload': rawUploadJob,
  'raw-download': rawDownloadJob,
  'raw-unary-rate': rawUnaryRateJob,
  'raw-unary-latency': rawUnaryLatencyJob,
  'disk-write': diskWriteJob,
  'spawn-true': spawnTrueJob,
  'bytestream-upload': byteStreamUploadJob,
  'bytestream-download': byteStreamDownloadJob,
  'small-blobs': smallBlobsJob,
  'sharded-blobs': shardedBlobsJob,
  'populate-cas': populateCasJob,
  'find-missing': findMissingJob,
  'noop-actions': noopActionsJob,
  'queue-scale': queueScaleJob,
  'compressed-transfer': compressedTransferJob,
  'hash-rate': hashRateJob,
  'splice-reupload': spliceReuploadJob,
};

const [name, paramsText] = process.argv.slice(2);
const job = name ? jobs[name] : undefined;
if (!job) {
  process.stderr.write(`Unknown driver job ${JSON.stringify(name)}; known: ${Object.keys(jobs).join(', ')}\n`);
  process.exit(2);
}
try {
  const result = await job(JSON.parse(paramsText ?? '{}'));
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
