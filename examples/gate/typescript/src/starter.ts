// Starts one PayInvoice workflow and prints its result as one JSON line.
//
//   node lib/starter.js --workflow-id pay-1 --invoice INV-7 --amount 250 --to ACME \
//     --pay-url http://127.0.0.1:8099/payments [--gate-task-queue countersign]
import { Client, Connection } from '@temporalio/client';
import { option } from './options';
import { PayInvoice } from './workflows';

async function main(): Promise<void> {
  const connection = await Connection.connect({ address: option('--address', '127.0.0.1:7233') });
  const client = new Client({ connection, namespace: option('--namespace', 'default') });
  const workflowId = option('--workflow-id');
  const handle = await client.workflow.start(PayInvoice, {
    taskQueue: option('--task-queue', 'pay-invoices'),
    workflowId,
    args: [
      {
        invoice: option('--invoice'),
        amount: Number(option('--amount')),
        to: option('--to'),
        requester: option('--requester', 'alice@example.com'),
        payUrl: option('--pay-url'),
        agent: option('--agent', 'payments'),
        gateTaskQueue: option('--gate-task-queue', 'countersign'),
      },
    ],
  });
  console.error(`started ${workflowId}; waiting for the gate's decision`);
  console.log(JSON.stringify(await handle.result()));
  await connection.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
