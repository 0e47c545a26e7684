// The worker of the PayInvoice example: polls its own task queue for the
// workflow and its `pay` activity. Countersign's worker runs the gates.
//
//   node lib/worker.js [--address 127.0.0.1:7233] [--task-queue pay-invoices]
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from './activities';
import { option } from './options';

async function main(): Promise<void> {
  const connection = await NativeConnection.connect({ address: option('--address', '127.0.0.1:7233') });
  const worker = await Worker.create({
    connection,
    namespace: option('--namespace', 'default'),
    taskQueue: option('--task-queue', 'pay-invoices'),
    workflowsPath: require.resolve('./workflows'),
    activities,
  });
  console.error('worker: polling');
  await worker.run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
