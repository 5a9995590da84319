// A BullMQ queue on keyway: jobs, a failing job retried with backoff, a
// delayed job, and QueueEvents (which reads a stream with XREAD BLOCK).
// BullMQ runs its work as Lua scripts. Prints one line the test compares.
const { Queue, Worker, QueueEvents } = require('bullmq');

const connection = { host: '127.0.0.1', port: +process.argv[2], maxRetriesPerRequest: null };

async function main() {
  const queue = new Queue('jobs', { connection });
  const events = new QueueEvents('jobs', { connection });
  await events.waitUntilReady();
  const seen = [];
  const worker = new Worker('jobs', async (job) => {
    if (job.data.fail) throw new Error('boom');
    return job.data.n * 2;
  }, { connection });
  worker.on('completed', (_job, result) => seen.push(String(result)));
  worker.on('failed', (_job, err) => seen.push('failed:' + err.message));

  const jobs = [];
  for (let i = 0; i < 5; i++) jobs.push(await queue.add('double', { n: i }));
  await queue.add('bad', { fail: true }, { attempts: 2, backoff: { type: 'fixed', delay: 10 } });
  const later = await queue.add('later', { n: 100 }, { delay: 300 });
  const first = await jobs[4].waitUntilFinished(events, 10000);
  await later.waitUntilFinished(events, 10000);
  // The failing job's second attempt ends after the delayed job is due.
  for (let i = 0; i < 50 && seen.length < 8; i++) await new Promise((r) => setTimeout(r, 100));
  const counts = await queue.getJobCounts('completed', 'failed', 'delayed', 'waiting', 'active');
  console.log(`result ${first} seen ${seen.sort().join(',')} counts ${JSON.stringify(counts)}`);
  await worker.close();
  await events.close();
  await queue.obliterate({ force: true });
  await queue.close();
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
