/** One payment: the arguments the gate returned, keyed for idempotency. */
export interface Payment {
  url: string;
  arguments: Record<string, unknown>;
  idempotencyKey: string;
}

/** POSTs the payment; the payee drops a retried duplicate by its key. Answers the HTTP status. */
export async function pay(payment: Payment): Promise<number> {
  const response = await fetch(payment.url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': payment.idempotencyKey },
    body: JSON.stringify(payment.arguments),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) {
    throw new Error(`the payment API answered ${response.status}`);
  }
  return response.status;
}
