// Send one SMS through ovh-sms-worker from Node (ioredis), wait for its result, then read the
// events published on its own results queue. The queue layout is contracts/QUEUES.md's; this
// file is run by tests/test_other_languages.py.
//
//   npm install ioredis@5
//   REDIS_URL=redis://localhost:6379/0 node producer.js +33612345678 'Your code is 1234' order-7-code
//
// Prints one JSON line {"result": SendResult, "events": [kind, ...]} and exits 0; exits 2 when no
// result came within WAIT_S seconds (the request stays queued: resending the same id is safe).
"use strict";
const crypto = require("node:crypto");
const Redis = require("ioredis");

const NAMESPACE = "dramatiq";
const REPLY_TO = process.env.REPLY_TO || "node-results"; // a queue of this service's own

async function send(redis, request) {
  const lane = request.priority;
  const queue = `sms.${lane}`;
  const messageId = crypto.randomUUID();
  const envelope = {
    queue_name: queue,
    actor_name: `sms_accept_${lane}`,
    args: [request], // one request (an object), or a pack of them (an array)
    kwargs: {},
    options: { redis_message_id: messageId },
    message_id: messageId,
    message_timestamp: Date.now(),
  };
  // the body into the queue's hash, then its id on the list, in one transaction
  await redis
    .multi()
    .hset(`${NAMESPACE}:${queue}.msgs`, messageId, JSON.stringify(envelope))
    .rpush(`${NAMESPACE}:${queue}`, messageId)
    .exec();
}

async function waitForResult(redis, requestId, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const result = await redis.get(`sms-worker:result:{${requestId}}`);
    if (result !== null) return JSON.parse(result);
    if (Date.now() >= deadline) return null;
    await redis.blpop(`sms-worker:ready:{${requestId}}`, 1); // woken when the result is written
  }
}

// Take every event waiting on a results queue. Each is moved to a list of this consumer's own
// before it is read, and deleted only once handled: a consumer that dies mid-way finds it there.
async function takeEvents(redis, queue, handle) {
  const pending = `${queue}.taken-by-${process.pid}`;
  for (;;) {
    const id = await redis.lmove(`${NAMESPACE}:${queue}`, pending, "LEFT", "RIGHT");
    if (id === null) return;
    const body = await redis.hget(`${NAMESPACE}:${queue}.msgs`, id);
    if (body !== null) handle(JSON.parse(body).args[0]);
    await redis.multi().hdel(`${NAMESPACE}:${queue}.msgs`, id).lrem(pending, 1, id).exec();
  }
}

async function main() {
  const [to, text, requestId = crypto.randomUUID()] = process.argv.slice(2);
  const redis = new Redis(process.env.REDIS_URL || "redis://127.0.0.1:6379/0");
  try {
    await send(redis, {
      request_id: requestId, // the idempotency key: a repeat changes nothing
      receivers: [to],
      message: text,
      priority: process.env.LANE || "high",
      no_stop_clause: true, // not commercial: no STOP mention
      reply_to: REPLY_TO,
    });
    const result = await waitForResult(redis, requestId, Number(process.env.WAIT_S || 30));
    if (result === null) {
      console.error(`no result for ${requestId}: it stays queued`);
      process.exitCode = 2;
      return;
    }
    const events = [];
    await takeEvents(redis, REPLY_TO, (event) => events.push(event.kind));
    console.log(JSON.stringify({ result, events }));
  } finally {
    redis.disconnect();
  }
}

main().catch((error) => {
  console.error(error.message);
  process.exitCode = 1;
});
