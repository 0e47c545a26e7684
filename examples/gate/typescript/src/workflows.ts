// PayInvoice: a TypeScript workflow that asks Countersign before it pays.
//
// It runs Countersign's `ApprovalGate` workflow (task queue `countersign`)
// as a child, and calls its own `pay` activity only when the gate says
// APPROVED, APPROVED_WITH_EDITS or NOT_REQUIRED, with the arguments the gate
// returns and the approval id as the payment's idempotency key.
import { executeChild, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type * as activities from './activities';

/** The gate's input: `countersign.v1.GateRequest` in proto3 JSON. */
export interface GateRequest {
  agent: string;
  tool: string;
  arguments: Record<string, unknown>;
  requester: string;
  mode?: 'autonomous' | 'user_requested';
  context?: string;
  callerWorkflowId?: string;
}

/** The gate's result: `countersign.v1.GateOutcome` in proto3 JSON (empty fields are left out). */
export interface GateOutcome {
  state?: string;
  arguments?: Record<string, unknown>;
  decisions?: Array<Record<string, unknown>>;
  rule?: string;
  message?: string;
  approvalId?: string;
}

export interface PayInvoiceInput {
  invoice: string;
  amount: number;
  to: string;
  requester: string;
  /** The payment API (POST, JSON, `Idempotency-Key`). */
  payUrl: string;
  /** The registry agent whose policy applies; default `payments`. */
  agent?: string;
  /** Countersign's task queue; default `countersign`. */
  gateTaskQueue?: string;
}

export interface PayInvoiceResult {
  state: string;
  message: string;
  approvalId: string;
  /** The payment API's HTTP status, when the payment was made. */
  paid: number | null;
}

/** The only states that allow the side effect. */
const GO = ['GATE_STATE_APPROVED', 'GATE_STATE_APPROVED_WITH_EDITS', 'GATE_STATE_NOT_REQUIRED'];

const { pay } = proxyActivities<typeof activities>({ startToCloseTimeout: '30 seconds' });

export async function PayInvoice(input: PayInvoiceInput): Promise<PayInvoiceResult> {
  const { workflowId } = workflowInfo();
  const gateId = `${workflowId}-gate`;
  const request: GateRequest = {
    agent: input.agent ?? 'payments',
    tool: 'pay_invoice',
    arguments: { invoice: input.invoice, amount: input.amount, to: input.to },
    requester: input.requester,
    context: `PayInvoice: paying invoice ${input.invoice} to ${input.to}`,
    callerWorkflowId: workflowId,
  };
  const outcome = await executeChild<(request: GateRequest) => Promise<GateOutcome>>('ApprovalGate', {
    args: [request],
    workflowId: gateId,
    taskQueue: input.gateTaskQueue ?? 'countersign',
  });
  const state = outcome.state ?? 'GATE_STATE_UNSPECIFIED';
  const result: PayInvoiceResult = {
    state,
    message: outcome.message ?? '',
    approvalId: outcome.approvalId ?? '',
    paid: null,
  };
  if (GO.includes(state)) {
    // The approval id keys the payment (the gate's id when no approval was needed).
    result.paid = await pay({
      url: input.payUrl,
      arguments: outcome.arguments ?? {},
      idempotencyKey: outcome.approvalId || gateId,
    });
  }
  return result;
}
